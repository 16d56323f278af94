"""``certherd demo``: the try-it path. A real lineage from a local Pebble CA, in a folder it names.

It starts Pebble (and its mock DNS), issues a certificate over http-01 with certherd's
own responder exactly as ``certherd issue`` would, into a config dir of its own
(``./certherd-demo`` by default, never the real one), stops Pebble, and prints where it
wrote and the next commands to try on that lineage (``list``, ``show``, ``renew
--dry-run``). No domain, no internet, nothing left running.

The demo is built in a temporary folder beside the target and renamed into place only
once complete, so a failed or interrupted demo leaves nothing behind and an earlier demo
is replaced (with ``--force``) only by a finished one. A folder that is not an earlier
demo is never written into or replaced.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import shlex
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Any

import click

from certherd.cli.common import Context, key_type_option, pass_context

__all__ = ["DEMO_MARKER", "demo"]

DEFAULT_NAMES = ("demo.certherd.test", "www.demo.certherd.test")
DEFAULT_DIRECTORY = Path("certherd-demo")
DEMO_MARKER = "certherd-demo.json"
"""Written last into a finished demo folder: what ``--force`` may replace."""
DEMO_CA_FILE = "demo-ca.pem"
"""The demo Pebble's listener CA, kept so the lineage's ``ca_bundle`` setting resolves."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _check_target(target: Path, force: bool) -> None:
    """Refuse a target we must not write: usage errors (exit 2) before Pebble starts."""
    from certherd.errors import ConfigError

    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ConfigError(f"{target} exists and is not a folder: choose another --out DIR")
    if not target.exists():
        return
    if (target / DEMO_MARKER).is_file():
        if not force:
            raise ConfigError(
                f"{target} holds an earlier demo: pass --force to replace it, "
                "or --out DIR for another folder"
            )
        return
    if any(target.iterdir()):
        raise ConfigError(
            f"{target} exists and is not a certherd demo folder: choose another --out DIR"
        )


async def _issue(
    ctx: Context,
    staging: Path,
    target: Path,
    directory_url: str,
    ca_bundle: Path,
    names: tuple[str, ...],
    http_port: int,
    key_type: str,
) -> str:
    """Issue the demo lineage into ``staging`` as ``certherd issue`` would; its name."""
    from certherd.app import Certherd
    from certherd.challenges.spec import SolverSpec
    from certherd.settings import LineageSettings
    from certherd.storage.layout import lineage_for

    # The lineage names the folder's copy of the CA (by its final path), so ``renew``
    # trusts the demo CA's HTTPS and never the system roots for it; until the folder is
    # in place, the copy in the staging folder.
    shutil.copyfile(ca_bundle, staging / DEMO_CA_FILE)
    settings = LineageSettings(
        name=lineage_for(names[0]),
        names=names,
        directory_url=directory_url,
        solvers=(SolverSpec("http", {"listen": f"127.0.0.1:{http_port}"}),),
        ca_bundle=str(target / DEMO_CA_FILE),
        key_type=key_type,
        email="demo@certherd.test",
        agree_tos=True,
    )
    async with Certherd(staging, on_event=ctx.tell) as certherd:
        staged = dataclasses.replace(settings, ca_bundle=str(staging / DEMO_CA_FILE))
        await certherd.issue_lineage(staged)
        # One renew check while the CA is up, as a scheduled `renew` would make: it learns
        # that Pebble has no ARI and records when to look again, so the `renew --dry-run`
        # suggested below answers from the index instead of calling a CA that is gone.
        await certherd.renew([settings.name])
        await settings.save(certherd.storage)  # the CA's copy where the folder will be
    return settings.name


def _put_in_place(staging: Path, target: Path) -> None:
    """Rename the finished demo to ``target``; an earlier demo there is removed after.

    Stop signals wait until both renames are done, so ``target`` is never left missing.
    """
    stops = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    old = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    try:
        if target.exists():
            target.rename(old)
        staging.rename(target)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
    shutil.rmtree(old, ignore_errors=True)


def _document(target: Path, lineage: str, seconds: float, shown: str) -> dict[str, Any]:
    from cryptography import x509

    from certherd.crypto.certs import describe_certificate

    live = target / "live" / lineage
    info = describe_certificate(x509.load_pem_x509_certificate((live / "cert.pem").read_bytes()))
    prefix = f"certherd --config-dir {shlex.quote(shown)}"
    return {
        "config_dir": str(target),
        "lineage": lineage,
        "names": list(info.dns_names + info.ip_addresses),
        "issuer": info.issuer_cn,
        "serial": info.serial_hex,
        "not_before": info.not_before.isoformat(),
        "not_after": info.not_after.isoformat(),
        "files": {
            name: str(live / name)
            for name in ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem")
        },
        "seconds": round(seconds, 3),
        "next": [
            f"{prefix} list",
            f"{prefix} show {shlex.quote(lineage)}",
            f"{prefix} renew --dry-run",
        ],
    }


@click.command("demo")
@click.option(
    "-d",
    "--domain",
    "names",
    multiple=True,
    metavar="NAME",
    help=f"Names to certify (default: {', '.join(DEFAULT_NAMES)}).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=DEFAULT_DIRECTORY,
    show_default=True,
    help="The config dir the demo creates for its lineage (never the real one); it must "
    "not exist, be empty, or hold an earlier demo (with --force).",
)
@click.option("--force", is_flag=True, help="Replace the earlier demo in --out.")
@key_type_option
@pass_context
def demo(ctx: Context, names: tuple[str, ...], out: Path, force: bool, key_type: str) -> None:
    """Issue a real certificate from a local Pebble test CA (needs `apt-get install pebble`)."""
    from certherd.cli.signals import run_async
    from certherd.errors import UnavailableError
    from certherd.names import canonical_names
    from certherd.testing.pebble import INSTALL_HINT, PebbleOptions, PebbleServer

    names = canonical_names(names) if names else DEFAULT_NAMES  # a bad name: exit 2, no Pebble
    target = out.absolute()
    _check_target(target, force)
    if not (shutil.which("pebble") and shutil.which("pebble-challtestsrv")):
        raise UnavailableError(INSTALL_HINT)  # one line, before any progress is shown
    http_port = _free_port()
    ctx.say("Starting a local Pebble ACME CA ...")
    started = time.perf_counter()
    with PebbleServer(PebbleOptions(http_port=http_port, va_nosleep=True)) as pebble:
        ctx.say(f"  directory {pebble.directory_url}")
        ctx.say(f"Issuing a certificate for {', '.join(names)} over http-01 ...")
        target.parent.mkdir(parents=True, exist_ok=True)
        # Named before it is made, so a stop signal at any moment still finds it to remove.
        staging = target.parent / f".{target.name}.new-{secrets.token_hex(4)}"
        try:
            staging.mkdir(mode=0o700)
            lineage = run_async(
                _issue(
                    ctx,
                    staging,
                    target,
                    pebble.directory_url,
                    pebble.ca_bundle,
                    names,
                    http_port,
                    key_type,
                )
            )
            marker = {"lineage": lineage, "directory_url": pebble.directory_url}
            (staging / DEMO_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
            _put_in_place(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    shown = str(out) if out.is_absolute() or str(out).startswith(".") else f"./{out}"
    document = _document(target, lineage, time.perf_counter() - started, shown)
    ctx.emit(document, lambda: _print(ctx, document))


def _print(ctx: Context, document: dict[str, Any]) -> None:
    from certherd.cli.render import print_table

    rows = [
        ("lineage", document["lineage"]),
        ("names", ", ".join(document["names"])),
        ("issuer", str(document["issuer"])),
        ("valid", f"{document['not_before']}  ->  {document['not_after']}"),
        ("serial", document["serial"]),
        *((name, path) for name, path in document["files"].items()),
        ("took", f"{document['seconds']} s"),
    ]
    print_table(ctx, ("certificate issued", ""), rows)
    lines = [
        f"Wrote the lineage {document['lineage']} to {document['config_dir']}, a config dir "
        "of its own (your real one is untouched).",
        "Pebble stopped: this certificate is from a throwaway test CA that is gone now, so",
        "the lineage can be listed, shown and checked, not renewed. For real names, use",
        "`certherd issue`.",
        "",
        "Next, try:",
        *(f"  {command}" for command in document["next"]),
    ]
    click.echo("\n".join(lines))
