"""The one runner of users' programs: environment, time-out, process-group kill, output cap.

Real processes throughout (Python scripts and /bin/sh); nothing is mocked.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest

from certherd import programs
from certherd.errors import ConfigError, HookError
from certherd.programs import (
    DEFAULT_PATH,
    ProgramResult,
    program_environment,
    run_checked,
    run_program,
)

ENV = {"PATH": os.environ.get("PATH", DEFAULT_PATH)}


def python(body: str) -> list[str]:
    """The argument vector running ``body`` in a fresh, isolated Python."""
    return [sys.executable, "-I", "-c", "import os, sys, time, subprocess\n" + body]


def state(pid: int) -> str | None:
    """The process state letter of ``pid``, None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


async def gone(pid: int, within: float = 5.0) -> bool:
    """Whether ``pid`` has ended (a zombie counts: nothing may reap it in a container)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if state(pid) in (None, "Z", "X"):
            return True
        await asyncio.sleep(0.02)
    return False


async def read_pids(path: Path, count: int, within: float = 10.0) -> list[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists():
            words = path.read_text().split()
            if len(words) == count:
                return [int(word) for word in words]
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never held {count} pids")


def family(pid_file: Path, leader_ignores_term: bool = True) -> list[str]:
    """A program that starts a grandchild ignoring SIGTERM, writes both pids, and sleeps."""
    ignore = "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    return python(
        (ignore if leader_ignores_term else "")
        + "child = subprocess.Popen(['/bin/sh', '-c', \"trap '' TERM; sleep 60 & wait\"])\n"
        + f"open({str(pid_file)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}} ')\n"
        + "sys.stderr.write('waiting...\\n'); sys.stderr.flush()\n"
        + "time.sleep(60)\n"
    )


def test_the_environment_is_the_policy_plus_the_callers_variables() -> None:
    parent = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "LC_ALL": "C",
        "AWS_SECRET_ACCESS_KEY": "do-not-leak",
        "CERTHERD_RFC2136_KEY_SECRET": "do-not-leak",
        "LD_PRELOAD": "/evil.so",
        "ASKED_FOR": "yes",
    }
    env = program_environment({"CERTHERD_X": "1"}, inherit=("ASKED_FOR", "UNSET"), parent=parent)
    assert env == {
        "PATH": "/usr/bin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "ASKED_FOR": "yes",
        "CERTHERD_X": "1",
    }
    assert program_environment({}, parent={}) == {"PATH": DEFAULT_PATH}


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"A": "x\0y"}, "NUL"),
        ({"A=B": "1"}, "a name is letters"),
        ({"": "1"}, "a name is letters"),
        ({"1A": "1"}, "a name is letters"),
    ],
)
def test_variables_that_cannot_go_into_an_environment_are_refused(
    variables: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        program_environment(variables, parent={})


async def test_the_program_gets_exactly_its_environment_and_argv_unparsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    monkeypatch.chdir(tmp_path)
    before = dict(os.environ)
    env = program_environment({"CERTHERD_VALUE": "$(touch pwned)"}, parent={"PATH": "/bin"})
    dump = (
        "raw = open('/proc/self/environ', 'rb').read().split(b'\\0')\n"
        "env = dict(e.decode().split('=', 1) for e in raw if e)\n"
        "import json\nprint(json.dumps({'argv': sys.argv[1:], 'env': env}))"
    )
    hostile = ["$(touch pwned)", "`touch pwned`;touch pwned", "a b", "*"]
    result = await run_program([*python(dump), *hostile], env=env, timeout=30)
    assert dict(os.environ) == before  # only read, never changed
    seen = json.loads(result.stdout)
    assert seen == {"argv": hostile, "env": env}
    assert not list(tmp_path.glob("pwned*"))
    assert result.succeeded
    assert not result.truncated
    assert not result.timed_out


async def test_time_out_stops_the_whole_group_even_children_ignoring_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(programs, "TERMINATE_GRACE", 0.3)
    pid_file = tmp_path / "pids"
    started = time.monotonic()
    result = await run_program(family(pid_file), env=ENV, timeout=1.5)
    assert time.monotonic() - started < 10
    assert result.timed_out
    assert not result.succeeded
    assert result.returncode == -9  # it ignored SIGTERM: SIGKILL ended it
    assert "waiting..." in result.stderr  # output before the time-out is kept
    leader, grandchild = await read_pids(pid_file, 2)
    assert await gone(leader)
    assert await gone(grandchild), "a grandchild outlived its program's time-out"
    assert result.failure() == ("did not finish within 1.5 s and was stopped; stderr: waiting...")


async def test_sigkill_follows_even_when_the_leader_obeys_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The leader exits on SIGTERM; its grandchild ignoring SIGTERM must not be left."""
    monkeypatch.setattr(programs, "TERMINATE_GRACE", 0.3)
    pid_file = tmp_path / "pids"
    result = await run_program(family(pid_file, leader_ignores_term=False), env=ENV, timeout=1.5)
    assert result.timed_out
    leader, grandchild = await read_pids(pid_file, 2)
    assert await gone(leader)
    assert await gone(grandchild), "a grandchild ignoring SIGTERM outlived the time-out"


async def test_cancellation_kills_the_program_and_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    running = asyncio.create_task(run_program(family(pid_file), env=ENV, timeout=60))
    leader, grandchild = await read_pids(pid_file, 2)
    started = time.monotonic()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, 10)
    assert time.monotonic() - started < 5
    assert await gone(leader), "the program outlived its cancelled caller"
    assert await gone(grandchild), "a grandchild outlived its cancelled caller"


async def test_output_keeps_its_first_and_last_part_and_says_what_was_dropped() -> None:
    body = (
        "sys.stdout.write('A' * 1000 + 'm' * 300000 + 'Z' * 1000); sys.stdout.flush()\n"
        "sys.stderr.write('e' * 50000 + 'THE END')\n"
    )
    result = await run_program(python(body), env=ENV, timeout=30, output_limit=2000)
    assert result.truncated
    assert result.stdout == "A" * 1000 + "\n[... 300000 bytes left out ...]\n" + "Z" * 1000
    assert result.stderr.startswith("e" * 1000 + "\n[... 48007 bytes left out ...]\n")
    assert result.stderr.endswith("THE END")
    assert len(result.stderr) < 2100
    small = await run_program(python("print('short')"), env=ENV, timeout=30, output_limit=2000)
    assert (small.stdout, small.truncated) == ("short\n", False)


async def test_a_program_flooding_its_output_is_read_to_the_end_without_blocking() -> None:
    """64 MiB through a 1 MiB cap: the program never blocks on a full pipe."""
    body = "chunk = b'x' * 65536\nfor _ in range(1024): sys.stdout.buffer.write(chunk)\n"
    result = await run_program(python(body), env=ENV, timeout=60)
    assert result.succeeded
    assert result.truncated
    assert f"[... {64 * 2**20 - 2**20} bytes left out ...]" in result.stdout
    assert len(result.stdout) < 2**20 + 100


async def test_a_daemon_left_holding_the_pipes_does_not_hold_up_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(programs, "OUTPUT_GRACE", 0.2)
    pid_file = tmp_path / "pid"
    line = f"echo deployed; sleep 60 & echo $! > {pid_file}"
    try:
        result = await run_program(["/bin/sh", "-c", line], env=ENV, timeout=30)
        assert result.succeeded
        assert result.stdout == "deployed\n"
        assert result.seconds < 5
    finally:
        os.kill(int(pid_file.read_text()), 9)


@pytest.mark.parametrize(
    ("body", "failure"),
    [
        ("sys.stderr.write('one\\n\\n\\x1b[31mtwo\\n'); sys.exit(3)", "exited with status 3; "),
        ("print('only on stdout'); sys.exit(1)", "exited with status 1; stdout: only on stdout"),
        ("sys.exit(4)", "exited with status 4; no output"),
        (
            "import signal; os.kill(os.getpid(), signal.SIGKILL)",
            "was killed by signal 9 (SIGKILL); no output",
        ),
    ],
)
async def test_a_failure_is_one_escaped_line(body: str, failure: str) -> None:
    result = await run_program(python(body), env=ENV, timeout=30)
    assert not result.succeeded
    assert result.failure().startswith(failure)
    with pytest.raises(HookError) as caught:
        await run_checked(python(body), what="deploy hook 'x'", env=ENV, timeout=30)
    assert str(caught.value) == f"deploy hook 'x' {result.failure()}"
    if "one" in body:
        assert result.failure() == "exited with status 3; stderr: one | \\x1b[31mtwo"


async def test_long_output_in_a_failure_is_cut_to_its_end() -> None:
    body = "sys.stderr.write('x' * 200000 + '\\nTHE END'); sys.exit(1)"
    with pytest.raises(HookError) as caught:
        await run_checked(python(body), what="hook", env=ENV, timeout=30)
    message = str(caught.value)
    assert message.startswith("hook exited with status 1; stderr: ...xxx")
    assert message.endswith("x | THE END")
    assert len(message) < 1100


async def test_a_program_that_cannot_start(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await run_program([str(tmp_path / "missing")], env=ENV, timeout=5)
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\n")
    with pytest.raises(HookError, match=r"^dns hook plain could not be started: Permission"):
        await run_checked([str(plain)], what="dns hook plain", env=ENV, timeout=5)


async def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        await run_program([], env=ENV, timeout=5)
    with pytest.raises(ValueError, match="positive"):
        await run_program(["/bin/true"], env=ENV, timeout=0)
    with pytest.raises(ValueError, match="output_limit"):
        await run_program(["/bin/true"], env=ENV, timeout=5, output_limit=1)


def test_a_result_of_success_says_so() -> None:
    result = ProgramResult(returncode=0, stdout="", stderr="", seconds=0.1, timeout=5)
    assert result.succeeded
    assert result.failure() == "succeeded"
