"""A fleet on one machine for the e2e tests: PostgreSQL, one Pebble of its own (so its
log counts only this fleet's finalize requests), a dns-01 hook program that sets the
answer in challtestsrv (every node answers any challenge, no port is shared), and one
config dir per node."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

from e2e_helpers import wait_until
from e2e_runner import Certherd, Running

from certherd.testing.pebble import PebbleServer


def dns_hook(pebble: PebbleServer, folder: Path) -> Path:
    """A solver hook program: ``present`` sets the TXT value in challtestsrv."""
    program = folder / "dns-hook"
    program.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys, urllib.request\n"
        "present = sys.argv[1] == 'present'\n"
        "body = {'host': os.environ['CERTHERD_DNS_NAME']}\n"
        "if present:\n"
        "    body['value'] = os.environ['CERTHERD_DNS_VALUE']\n"
        f"url = {pebble.challtestsrv_url!r} + ('/set-txt' if present else '/clear-txt')\n"
        "urllib.request.urlopen(urllib.request.Request(url, json.dumps(body).encode()))\n"
    )
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return program


def fast_dns_hook(pebble: PebbleServer, folder: Path) -> Path:
    """:func:`dns_hook` in bash (HTTP/1.0 over bash's /dev/tcp): a few milliseconds a
    call instead of a Python start, for the thousand-lineage test."""
    from urllib.parse import urlsplit

    where = urlsplit(pebble.challtestsrv_url)
    program = folder / "fast-dns-hook"
    program.write_text(
        "#!/bin/bash\n"
        'if [ "$1" = present ]; then path=/set-txt\n'
        '  body="{\\"host\\":\\"$CERTHERD_DNS_NAME\\",\\"value\\":\\"$CERTHERD_DNS_VALUE\\"}"\n'
        'else path=/clear-txt; body="{\\"host\\":\\"$CERTHERD_DNS_NAME\\"}"; fi\n'
        f"exec 3<>/dev/tcp/{where.hostname}/{where.port}\n"
        "printf 'POST %s HTTP/1.0\\r\\nHost: x\\r\\nContent-Type: application/json\\r\\n"
        'Content-Length: %d\\r\\n\\r\\n%s\' "$path" "${#body}" "$body" >&3\n'
        "read -r status <&3\n"
        'case "$status" in *" 200"*) exit 0;; *) echo "challtestsrv: $status" >&2; exit 1;; esac\n'
    )
    program.chmod(0o755)
    return program


def fleet_config(
    pebble: PebbleServer, hook: Path, names: list[str], deployed: Path | None = None
) -> str:
    """certherd.toml: one certificate per name, dns-01 through the hook; with
    ``deployed``, a deploy hook appending ``LIVE_DIR VERSION`` to that file."""
    lines = [
        "[defaults]",
        f"server = {json.dumps(pebble.directory_url)}",
        f"ca_bundle = {json.dumps(str(pebble.ca_bundle))}",
        'email = "fleet@example.com"',
        "agree_tos = true",
        'solver = "hook"',
        f'solver_options = {{ challenge = "dns-01", command = {json.dumps(str(hook))} }}',
    ]
    if deployed is not None:
        command = f'echo "$CERTHERD_LIVE_DIR $CERTHERD_VERSION" >> {deployed}'
        lines.append(f"deploy_hooks = [{json.dumps(command)}]")
    for name in names:
        lines += ["", "[[certificate]]", f"domains = [{json.dumps(name)}]"]
    return "\n".join(lines) + "\n"


def deploys(deployed: Path) -> set[tuple[str, int]]:
    """(live dir, version) of every deploy hook run, on any host."""
    if not deployed.exists():
        return set()
    found = set()
    for line in deployed.read_text().splitlines():
        folder, _, version = line.rpartition(" ")
        found.add((folder, int(version)))
    return found


def finalized(pebble: PebbleServer) -> int:
    """Finalize requests Pebble has handled (RFC 8555 §7.4), from its log."""
    return pebble.requests_handled("/finalize-order/")


def issued(pebble: PebbleServer) -> int:
    """Certificates Pebble has issued, from its log (one line each)."""
    return pebble.log_tail(10**7).count("Issued certificate serial ")


def live_names(config_dir: Path) -> set[str]:
    """Lineages whose live files this host holds (all four, readable)."""
    live = config_dir / "live"
    if not live.is_dir():
        return set()
    return {
        folder.name
        for folder in live.iterdir()
        if folder.is_dir() and all((folder / f).is_file() for f in ("cert.pem", "privkey.pem"))
    }


def start_node(node: Certherd, url: str, name: str, *args: str) -> Running:
    return node.start("--storage", url, "run", "--node", name, *args)


def wait_all_live(nodes: list[Certherd], names: set[str], timeout: float) -> None:
    for node in nodes:
        wait_until(
            lambda node=node: names <= live_names(node.config_dir),  # type: ignore[misc]
            timeout,
            f"every lineage live under {node.config_dir}",
        )


def hold_first_present(hook: Path, folder: Path) -> tuple[Path, Path, Path]:
    """Make the first ``present`` of ``hook`` stop: it writes its pid to ``said`` and
    waits until ``go`` exists (forever if it never does); later calls work at once.
    Returns (armed flag, said, go); the flag is armed already."""
    flag, said, go = folder / "hold-once", folder / "holding", folder / "go"
    original = hook.read_text().splitlines()
    hook.write_text(
        "\n".join(
            [
                original[0],
                "import os, pathlib, sys, time",
                f"flag, said = pathlib.Path({str(flag)!r}), pathlib.Path({str(said)!r})",
                f"go = pathlib.Path({str(go)!r})",
                "if sys.argv[1] == 'present' and flag.exists():",
                "    flag.unlink()",
                "    said.write_text(str(os.getpid()))",
                "    while not go.exists():",
                "        time.sleep(0.05)",
                *original[1:],
            ]
        )
        + "\n"
    )
    flag.touch()
    return flag, said, go
