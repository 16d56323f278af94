"""The ``certherd`` program's exit: codes kept, atexit handlers run, output flushed."""

from __future__ import annotations

import subprocess
import sys

import pytest

_PROGRAM = """
import atexit, sys
from certherd.cli.main import entry
atexit.register(lambda: print("atexit ran", flush=True))
sys.stdout.write("buffered, not flushed\\n")
sys.argv = ["certherd", *sys.argv[1:]]
entry()
"""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _PROGRAM, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_success_runs_atexit_and_flushes() -> None:
    result = _run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["buffered, not flushed", "certherd 0.1.0", "atexit ran"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("no-such-command",), 2, "No such command"),
        (("--config-dir", "/proc/certherd-cannot-exist", "show", "nosuch"), 2, "no lineage"),
    ],
)
def test_failures_keep_their_exit_code(args: tuple[str, ...], code: int, message: str) -> None:
    result = _run(*args)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert result.stdout.endswith("atexit ran\n")


def test_python_dash_m_certherd() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "certherd", "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("certherd ")
