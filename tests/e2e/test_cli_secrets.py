"""DNS credentials never land where another user can read them, nor in any output
(issue 9, item 2).

One config dir holds three lineages, each proven by dns-01 through a real BIND9 (or
trying to, through dns-lexicon):

- ``flag.certherd.test``: the TSIG secret given on the command line (``--dns-opt
  key_secret=...``): a warning, and the secret kept only in the lineage's own settings
  file, 0600 in a 0700 folder;
- ``toml.certherd.test``: the TSIG secret written in certherd.toml (mode 0600): the
  lineage's settings keep a reference to the file, never a copy;
- ``lex``: a dns-lexicon provider (cloudflare) with an ``auth_token`` in certherd.toml;
  no network here, so every attempt fails, and its error must not show the token.

Every command is run at the highest verbosity (``-vv``) and its stdout and stderr are
searched for both secrets; then a process running as ``nobody`` reads every file under
the config dir it can reach.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
from e2e_runner import Certherd, PebbleFactory, Result
from tests.servers.bind9 import Bind9Server
from tests.servers.fixtures import start_or_fail
from tests.servers.net import free_port

from certherd.testing.pebble import PebbleServer

ZONE = "certherd.test."
LEXICON_TOKEN = "lexicon-token-" + secrets.token_hex(12)


class Servers(NamedTuple):
    bind9: Bind9Server
    pebble: PebbleServer


@pytest.fixture(scope="module")
def servers(pebble_factory: PebbleFactory) -> Iterator[Servers]:
    bind9 = start_or_fail(Bind9Server((ZONE,)))
    try:
        host, port = bind9.address
        pebble = pebble_factory(
            dns_server=f"{host}:{port}", start_challtestsrv=False, authz_reuse_percent=0
        )
        yield Servers(bind9, pebble)
    finally:
        bind9.stop()


@pytest.fixture
def certherd(servers: Servers) -> Iterator[Certherd]:
    """A config dir other users could reach (a 0755 parent, not pytest's 0700 tmp)."""
    base = Path(tempfile.mkdtemp(prefix="certherd-secrets-"))
    base.chmod(0o755)
    scratch = base / "runs"
    scratch.mkdir(mode=0o700)
    runner = Certherd(base / "config", servers.pebble, scratch)
    yield runner
    runner.stop_all()
    shutil.rmtree(base)


def _rfc2136(bind9: Bind9Server) -> dict[str, str | int]:
    host, port = bind9.address
    return {
        "server": host,
        "port": port,
        "zone": ZONE,
        "key_name": bind9.tsig_key_name,
        "algorithm": bind9.tsig_algorithm,
    }


def _toml(servers: Servers, runner: Certherd) -> str:
    host, port = servers.bind9.address
    rfc2136 = ", ".join(f"{k} = {json.dumps(v)}" for k, v in _rfc2136(servers.bind9).items())
    return f"""
[defaults]
server = "{servers.pebble.directory_url}"
ca_bundle = "{servers.pebble.ca_bundle}"
email = "secrets@example.com"
agree_tos = true

[[certificate]]
domains = ["toml.certherd.test"]
solver = "dns"
solver_options = {{ provider = "rfc2136", {rfc2136}, key_secret = "{servers.bind9.tsig_secret}", resolver = "{host}:{port}" }}

[[certificate]]
name = "lex"
domains = ["lex.certherd.test"]
solver = "dns"
solver_options = {{ provider = "lexicon:cloudflare", zone = "certherd.test", auth_token = "{LEXICON_TOKEN}", propagation_timeout = 0 }}
"""  # noqa: E501


def _run_everything(servers: Servers, runner: Certherd) -> list[tuple[list[str], Result]]:
    """Every command that reads or writes lineages, at the highest verbosity."""
    host, port = servers.bind9.address
    flag_options = [
        f"--dns-opt={key}={value}" for key, value in _rfc2136(servers.bind9).items()
    ] + [f"--dns-opt=key_secret={servers.bind9.tsig_secret}"]
    config = runner.config_dir / "certherd.toml"
    runner.config_dir.mkdir(parents=True, exist_ok=True)
    config.write_text(_toml(servers, runner))
    config.chmod(0o600)
    commands: list[list[str]] = [
        [
            "issue", "-d", "flag.certherd.test", "--dns", "rfc2136", *flag_options,
            "--dns-resolver", f"{host}:{port}", *runner.ca,
        ],
        ["renew", "--dry-run"],
        ["apply"],
        ["renew"],
        ["--json", "renew", "--dry-run"],
        ["renew", "--force", "flag.certherd.test", "toml.certherd.test"],
        ["list"],
        ["--json", "list"],
        *(
            [*json_flag, "show", name]
            for name in ("flag.certherd.test", "toml.certherd.test", "lex")
            for json_flag in ([], ["--json"])
        ),
        ["account", "show", *runner.ca],
        ["--json", "account", "show", *runner.ca],
        ["revoke", "toml.certherd.test"],
        ["--json", "revoke", "flag.certherd.test"],
        ["delete", "lex"],
        ["--json", "delete", "toml.certherd.test"],
    ]  # fmt: skip
    results = []
    for args in commands:
        if args[0] == "revoke":  # before the lineages go: the daemon, and what it serves
            results.append(_daemon(runner))
        result = runner("-vv", *args, check=False)
        results.append((args, result))
    return results


def _daemon(runner: Certherd) -> tuple[list[str], Result]:
    """``certherd -vv run`` for a few cycles (lex fails in each), its metrics and status
    pages, then SIGTERM; everything it printed and served as one result."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    daemon = runner.start("-vv", "run", "--min-interval", "0.5", "--metrics", f"127.0.0.1:{port}")
    served = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (served and "lex" in served[0]):
        time.sleep(1)
        try:
            served = [
                httpx.get(base + page, timeout=2, trust_env=False).text
                for page in ("/metrics", "/health", "/", "/status.json")
            ]
        except httpx.HTTPError:
            served = []
    time.sleep(1.5)  # a few more cycles
    daemon.process.send_signal(signal.SIGTERM)
    stopped = daemon.wait(timeout=30)
    assert served, f"the daemon served nothing: {stopped.describe()}"
    assert "lex" in served[0], "the metrics name the lineages"
    shown = Result(
        0 if stopped.code == -signal.SIGTERM else stopped.code,
        stopped.stdout + "\n".join(served),
        stopped.stderr,
    )
    return ["run"], shown


NOBODY_READER = r"""
import os, sys
secrets = [s.encode() for s in sys.argv[2:]]
found = []
readable = 0
for folder, dirs, files in os.walk(sys.argv[1]):
    for name in files + dirs:
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            continue
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError:
            continue
        readable += 1
        found += [path for secret in secrets if secret in data]
print(readable)
print("\n".join(found))
"""


def _read_as_nobody(root: Path, *secret_values: str) -> tuple[int, list[str]]:
    """How many files ``nobody`` can read under ``root``, and those holding a secret."""
    if os.geteuid() != 0:
        pytest.fail("reading as nobody needs root: run the suite as root (CI does)")
    nobody = pwd.getpwnam("nobody")
    done = subprocess.run(
        ["/usr/bin/python3", "-c", NOBODY_READER, str(root), *secret_values],
        user=nobody.pw_uid,
        group=nobody.pw_gid,
        extra_groups=[],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd="/",
    )
    count, *found = done.stdout.splitlines()
    return int(count), [line for line in found if line]


def test_no_secret_in_any_output_nor_any_file_another_user_can_read(
    certherd: Certherd, servers: Servers
) -> None:
    tsig = servers.bind9.tsig_secret
    results = _run_everything(servers, certherd)
    issued = results[0][1]
    assert issued.code == 0, issued.describe()
    assert "--dns-opt key_secret=... is visible to other users" in issued.stderr
    assert "key_secret:file=PATH" in issued.stderr
    apply_run = results[2][1]
    assert apply_run.code == 1, apply_run.describe()  # lex fails: no network here
    assert "lex" in apply_run.stdout + apply_run.stderr
    forced = results[5][1]
    assert forced.code == 0, forced.describe()
    assert forced.stdout.count("renewed") == 2, forced.stdout
    for args, result in results:
        expected = 1 if args in (["apply"], ["renew"]) else 0  # lex fails: no network
        assert result.code == expected, f"{args}: {result.describe()}"
    for args, result in results:
        shown = result.stdout + result.stderr
        assert tsig not in shown, f"the TSIG secret in the output of {args}"
        assert LEXICON_TOKEN not in shown, f"the lexicon token in the output of {args}"

    readable, leaks = _read_as_nobody(certherd.config_dir, tsig, LEXICON_TOKEN)
    assert leaks == [], f"nobody can read a secret in {leaks}"
    assert readable > 0, "nobody reads the public parts (live certificates, index)"

    # What the lineages keep: a reference to certherd.toml, or (given on a command
    # line) the value in a file only its owner reads.
    renewal = certherd.config_dir / "renewal"
    assert oct(renewal.stat().st_mode & 0o777) == "0o700"
    kept = json.loads((renewal / "flag.certherd.test.json").read_text())
    assert kept["solvers"][0]["options"]["key_secret"] == {"value": tsig}
    assert oct((renewal / "flag.certherd.test.json").stat().st_mode & 0o777) == "0o600"
    assert not (renewal / "toml.certherd.test.json").exists(), "deleted above"


def test_a_dry_run_keeps_references_not_copies(certherd: Certherd, servers: Servers) -> None:
    """``renew --dry-run`` writes the settings certherd.toml gives: with a reference to
    the file where a secret is, never the secret itself."""
    certherd.config_dir.mkdir(parents=True)
    config = certherd.config_dir / "certherd.toml"
    config.write_text(_toml(servers, certherd))
    config.chmod(0o600)
    result = certherd("-vv", "renew", "--dry-run", check=False)
    assert servers.bind9.tsig_secret not in result.stdout + result.stderr
    for name in ("toml.certherd.test", "lex"):
        text = (certherd.config_dir / "renewal" / f"{name}.json").read_text()
        assert servers.bind9.tsig_secret not in text
        assert LEXICON_TOKEN not in text
    kept = json.loads((certherd.config_dir / "renewal" / "lex.json").read_text())
    assert kept["solvers"][0]["options"]["auth_token"] == {"config": str(config)}
    assert _read_as_nobody(certherd.config_dir, servers.bind9.tsig_secret, LEXICON_TOKEN)[1] == []


def test_a_secret_by_file_reference_from_the_command_line(
    certherd: Certherd, servers: Servers, tmp_path: Path
) -> None:
    """``--dns-opt key_secret:file=PATH``: no warning, the settings keep the path, and a
    renewal reads the file again."""
    host, port = servers.bind9.address
    secret_file = tmp_path / "tsig.secret"
    secret_file.write_text(servers.bind9.tsig_secret + "\n")
    secret_file.chmod(0o600)
    options = [f"--dns-opt={k}={v}" for k, v in _rfc2136(servers.bind9).items()]
    issued = certherd(
        "-vv", "issue", "-d", "file.certherd.test", "--dns", "rfc2136", *options,
        f"--dns-opt=key_secret:file={secret_file}", "--dns-resolver", f"{host}:{port}",
        *certherd.ca,
    )  # fmt: skip
    assert "warning" not in issued.stderr
    kept = json.loads((certherd.config_dir / "renewal" / "file.certherd.test.json").read_text())
    assert kept["solvers"][0]["options"]["key_secret"] == {"file": str(secret_file)}
    renewed = certherd("-vv", "--json", "renew", "--force")
    assert [r["action"] for r in renewed.json()["results"]] == ["renewed"]
    secret_file.unlink()
    failed = certherd("--json", "renew", "--force", check=False)
    assert failed.code == 1
    assert f"key_secret comes from the file {secret_file}, which cannot be read" in failed.stderr
    for result in (issued, renewed, failed):
        assert servers.bind9.tsig_secret not in result.stdout + result.stderr


def test_the_daemon_warns_of_a_readable_secret_once_not_every_cycle(
    certherd: Certherd, tmp_path: Path
) -> None:
    closed = free_port()  # nothing listens: every cycle's renewal fails at once
    certherd.config_dir.mkdir(parents=True, exist_ok=True)
    config = certherd.config_dir / "certherd.toml"
    config.write_text(
        f'[defaults]\nserver = "https://127.0.0.1:{closed}/dir"\nagree_tos = true\n\n'
        '[[certificate]]\ndomains = ["warn-once.test"]\nsolver = "dns"\n'
        'solver_options = { provider = "rfc2136", server = "127.0.0.1", key_name = "k", '
        'key_secret = "c2VjcmV0c2VjcmV0" }\n'
    )
    config.chmod(0o644)
    running = certherd.start("run", "--min-interval", "0.2", "--max-interval", "1")
    deadline = time.monotonic() + 60
    cycles = 0
    while time.monotonic() < deadline and cycles < 3 and running.process.poll() is None:
        time.sleep(0.2)
        cycles = running.stderr_so_far().count("renewal failed")
    running.process.send_signal(signal.SIGTERM)
    result = running.wait()
    assert result.stderr.count("renewal failed") >= 3, result.describe()
    assert result.stderr.count("holds secrets") == 1, result.describe()
    assert "c2VjcmV0c2VjcmV0" not in result.stdout + result.stderr
