"""``certherd demo``, the README's first command: a real issuance from a Pebble it starts.

Each test runs the command as a user would (a subprocess, its own Pebble) and checks
what it promises: the files, the names and dates it prints, and that no Pebble is left
running afterwards, also when the command is stopped with SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import json
import os
import select
import shlex
import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certherd.testing.pebble import INSTALL_HINT

DEMO_TIMEOUT = 120.0
DEFAULT_NAMES = ["demo.certherd.test", "www.demo.certherd.test"]


def _pebble_pids(token: str | None = None) -> set[int]:
    """Processes named pebble or pebble-challtestsrv (comm is cut at 15 characters).

    With ``token``, only those started by a demo run with ``DEMO_TEST_TOKEN=token`` in its
    environment (Pebble inherits it): other test runs on the machine start Pebbles too.
    """
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            if comm not in ("pebble", "pebble-challtes"):
                continue
            if token is not None:
                environ = (entry / "environ").read_bytes().split(b"\0")
                if f"DEMO_TEST_TOKEN={token}".encode() not in environ:
                    continue
        except OSError:
            continue
        found.add(int(entry.name))
    return found


def _wait_gone(pids: set[int], seconds: float = 10.0) -> set[int]:
    deadline = time.monotonic() + seconds
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive &= _pebble_pids()
        time.sleep(0.05)
    return alive


def _environment(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CERTHERD_")}
    return {**base, "COLUMNS": "200", "NO_COLOR": "1", **extra}


def _run_demo(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """``certherd [GLOBAL ...] demo ...`` (args before "demo" are global options)."""
    return subprocess.run(
        [sys.executable, "-m", "certherd", *args],
        capture_output=True,
        text=True,
        env=_environment(**env),
        cwd=cwd,
        timeout=DEMO_TIMEOUT,
        check=False,
    )


def _leftovers(folder: Path) -> list[str]:
    """Staging or replaced demo folders the demo should have removed."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".certherd-demo"))


def test_demo_issues_a_certificate_and_stops_pebble(tmp_path: Path) -> None:
    token = uuid.uuid4().hex
    out = tmp_path / "demo-out"
    result = _run_demo("--json", "demo", "--out", str(out), DEMO_TEST_TOKEN=token)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert sorted(report["names"]) == sorted(DEFAULT_NAMES)
    assert "Pebble" in report["issuer"]
    assert report["config_dir"] == str(out)
    assert report["lineage"] == "demo.certherd.test"

    files = {name: Path(path) for name, path in report["files"].items()}
    assert set(files) == {"cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"}
    assert all(path.parent == out / "live" / "demo.certherd.test" for path in files.values())
    assert stat.S_IMODE(files["privkey.pem"].stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) & 0o077 == 0, "the demo folder holds keys"

    leaf = x509.load_pem_x509_certificate(files["cert.pem"].read_bytes())
    key = serialization.load_pem_private_key(files["privkey.pem"].read_bytes(), None)
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    assert leaf.public_key().public_bytes(encoding, public) == key.public_key().public_bytes(
        encoding, public
    )
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(DEFAULT_NAMES)
    assert leaf.serial_number == int(report["serial"].replace(":", ""), 16)
    assert leaf.not_valid_after_utc.isoformat() == report["not_after"]
    full = files["fullchain.pem"].read_bytes()
    assert full == files["cert.pem"].read_bytes() + files["chain.pem"].read_bytes()
    assert report["next"] == [
        f"certherd --config-dir {out} list",
        f"certherd --config-dir {out} show demo.certherd.test",
        f"certherd --config-dir {out} renew --dry-run",
    ]

    assert _wait_gone(_pebble_pids(token)) == set(), "demo left Pebble running"
    assert _leftovers(tmp_path) == []


def test_demo_text_output_names_the_files(tmp_path: Path) -> None:
    out = tmp_path / "text-out"
    result = _run_demo("demo", "-d", "try.certherd.test", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "try.certherd.test" in result.stdout
    assert str(out / "live" / "try.certherd.test" / "fullchain.pem") in result.stdout
    assert f"Wrote the lineage try.certherd.test to {out}" in result.stdout
    assert "Pebble stopped" in result.stdout
    assert "Starting a local Pebble" in result.stderr  # progress: stderr, results: stdout
    leaf = x509.load_pem_x509_certificate((out / "live/try.certherd.test/cert.pem").read_bytes())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["try.certherd.test"]


def _next_commands(stdout: str) -> list[list[str]]:
    """The commands printed under "Next, try:", as argument lists."""
    lines = stdout.splitlines()
    start = lines.index("Next, try:") + 1
    commands = [shlex.split(line) for line in lines[start:] if line.startswith("  certherd ")]
    assert len(commands) == 3, stdout
    return commands


def test_demo_is_a_lineage_the_printed_commands_work_on(tmp_path: Path) -> None:
    """Issue 10.12: `certherd list` after the demo used to say "no lineages"."""
    token = uuid.uuid4().hex
    result = _run_demo("demo", cwd=tmp_path, DEMO_TEST_TOKEN=token)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "certherd-demo"
    assert f"to {folder}," in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["certherd-demo"]
    assert _wait_gone(_pebble_pids(token)) == set()  # the commands run without the CA

    listed, shown, renewed = (
        _run_demo(*command[1:], cwd=tmp_path) for command in _next_commands(result.stdout)
    )
    assert listed.returncode == 0, listed.stderr
    assert "demo.certherd.test" in listed.stdout, listed.stdout
    assert shown.returncode == 0, shown.stderr
    assert "www.demo.certherd.test" in shown.stdout, shown.stdout
    assert renewed.returncode == 0, renewed.stderr
    assert "demo.certherd.test" in renewed.stdout, renewed.stdout
    assert "not-due" in renewed.stdout, renewed.stdout
    verbose = _run_demo("-v", *_next_commands(result.stdout)[2][1:], cwd=tmp_path)
    assert verbose.returncode == 0, verbose.stderr
    assert "unavailable" not in verbose.stderr, "renew --dry-run called the stopped demo CA"

    as_json = _run_demo("--config-dir", str(folder), "--json", "list")
    assert as_json.returncode == 0, as_json.stderr
    (lineage,) = json.loads(as_json.stdout)["lineages"]
    assert lineage["name"] == "demo.certherd.test"
    assert sorted(lineage["names"]) == sorted(DEFAULT_NAMES)


def test_demo_refuses_to_overwrite_an_earlier_demo_without_force(tmp_path: Path) -> None:
    out = tmp_path / "certherd-demo"
    first = _run_demo("--json", "demo", "--out", str(out))
    assert first.returncode == 0, first.stderr
    serial = json.loads(first.stdout)["serial"]
    cert = out / "live" / "demo.certherd.test" / "cert.pem"
    kept = cert.read_bytes()

    again = _run_demo("demo", "--out", str(out))
    assert again.returncode == 2, again.stderr
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1, again.stderr
    assert "--force" in lines[0], again.stderr
    assert str(out) in lines[0], again.stderr
    assert "Pebble" not in again.stderr, "refused only after starting Pebble"
    assert cert.read_bytes() == kept

    forced = _run_demo("--json", "demo", "--out", str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    replaced = json.loads(forced.stdout)
    assert replaced["serial"] != serial
    assert cert.read_bytes() != kept
    assert not (out / "archive/demo.certherd.test/cert2.pem").exists(), "renewed, not replaced"
    assert _leftovers(tmp_path) == []


def test_demo_never_writes_into_a_folder_that_is_not_a_demo(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me\n")
    for extra in ((), ("--force",)):
        result = _run_demo("demo", "--out", str(out), *extra)
        assert result.returncode == 2, result.stderr
        assert "not a certherd demo folder" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_demo_stopped_midway_leaves_no_pebble(tmp_path: Path, stop: signal.Signals) -> None:
    out = tmp_path / "stopped"
    demo = subprocess.Popen(
        [sys.executable, "-m", "certherd", "demo", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_environment(),
    )
    try:
        assert demo.stderr is not None
        # "  directory https://..." is printed (progress: on stderr) once Pebble answers.
        deadline = time.monotonic() + 60
        seen = b""
        while b"directory" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([demo.stderr], [], [], 1.0)
            if ready:
                chunk = os.read(demo.stderr.fileno(), 4096)
                if not chunk:
                    break
                seen += chunk
        assert b"directory" in seen, seen
        # Held still while we look (the issuance takes well under a second, and a loaded
        # machine could let it finish first); the signal is then taken as it continues.
        demo.send_signal(signal.SIGSTOP)
        children = {int(p) for p in _children(demo.pid)}
        assert children & _pebble_pids(), "Pebble is not a child of the demo"
        demo.send_signal(stop)
        demo.send_signal(signal.SIGCONT)
        _, stderr = demo.communicate(timeout=30)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == -stop, stderr  # cleaned up, then ended by the signal itself
    assert f"certherd: interrupted ({stop.name})".encode() in stderr
    assert _wait_gone(children) == set(), "Pebble outlived the demo"
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a stopped demo left files"


def _children(pid: int) -> list[str]:
    tasks = Path(f"/proc/{pid}/task")
    found: list[str] = []
    for task in tasks.iterdir():
        found += (task / "children").read_text().split()
    return found


def test_demo_without_pebble_says_how_to_install(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    result = _run_demo("demo", "--out", str(tmp_path / "o"), PATH=str(empty))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "apt-get install -y pebble" in lines[0]
    assert "apt-get install -y pebble" in INSTALL_HINT
    assert not (tmp_path / "o").exists()
