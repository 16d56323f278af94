"""Progress of multi-certificate work: plain lines off a terminal, a live display on one."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import pytest
from e2e_runner import Certherd


def test_plain_lines_when_not_a_terminal(certherd: Certherd) -> None:
    certherd.issue("one.progress.test")
    certherd.issue("two.progress.test")
    result = certherd("renew", "--force")
    lines = [line for line in result.stderr.splitlines() if line.startswith("certherd: [")]
    assert len(lines) == 2, result.describe()
    assert re.fullmatch(
        r"certherd: \[1/2\] (one|two)\.progress\.test: renewed \(done 1, failed 0, left 1\)",
        lines[0],
    )
    assert re.fullmatch(
        r"certherd: \[2/2\] (one|two)\.progress\.test: renewed \(done 2, failed 0, left 0\)",
        lines[1],
    )
    assert "one.progress.test" in result.stdout  # the result table stays on stdout
    assert "[1/2]" not in result.stdout


def test_failures_are_counted(certherd: Certherd, tmp_path: Path) -> None:
    server = certherd.server
    certherd.config_dir.mkdir(parents=True)
    (certherd.config_dir / "certherd.toml").write_text(
        "[defaults]\n"
        f"server = {json.dumps(server.directory_url)}\n"
        f"ca_bundle = {json.dumps(str(server.ca_bundle))}\n"
        'agree_tos = true\nemail = "e2e@example.com"\n'
        "[[certificate]]\n"
        'domains = ["bad.progress.test"]\n'
        'solver = "webroot"\n'
        f"solver_options = {{ path = {json.dumps(str(tmp_path))} }}\n"  # Pebble never looks
    )
    result = certherd("apply", check=False)
    assert result.code == 1, result.describe()
    assert re.search(
        r"^certherd: \[1/1\] bad\.progress\.test: failed: .* \(done 0, failed 1, left 0\)$",
        result.stderr,
        re.MULTILINE,
    ), result.describe()


def test_quiet_and_json_show_no_progress(certherd: Certherd) -> None:
    certherd.issue("silent.progress.test")
    for flags in (["-q"], ["--json"]):
        result = certherd(*flags, "renew", "--force")
        assert "certherd: [" not in result.stderr, result.describe()


@pytest.mark.parametrize("flags", [[], ["-v"]])
def test_live_display_on_a_terminal(certherd: Certherd, flags: list[str]) -> None:
    """stderr a terminal: counts drawn live by rich; stdout (a pipe) keeps the table.
    With -v the log lines scroll above the display."""
    certherd.issue("a.live.test")
    certherd.issue("b.live.test")
    leader, follower = pty.openpty()
    env = certherd.environment({"TERM": "xterm", "COLUMNS": "120", "LINES": "40"})
    process = subprocess.Popen(
        certherd.argv(["renew", "--force", *flags]),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    screen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            screen += chunk
        elif process.poll() is not None:
            break
    os.close(leader)
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 0, screen.decode(errors="replace")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode(errors="replace"))
    assert "done 2" in text, text
    assert "failed 0" in text
    assert "left 0" in text
    assert "certherd: [" not in text  # no plain lines on a terminal
    if flags:
        assert "acme.transport: POST finalize" in text, text  # rich wraps long lines
    assert b"a.live.test" in stdout
    assert b"\x1b[" not in stdout
