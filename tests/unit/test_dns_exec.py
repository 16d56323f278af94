"""The exec DNS provider runs real hook programs: argv, environment, errors, timeouts."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from certherd.dns.base import DnsProvider, TxtRecord
from certherd.dns.exec import ExecConfig, ExecProvider
from certherd.errors import ConfigError, DnsProviderError, HookError

RECORD = TxtRecord(
    name="_acme-challenge.x.certherd.test.",
    value="ZTRx1Ckl1-tM05o5zaizTTA0yUy5AGereMgSNWC6Ll8",
    domain="x.certherd.test",
)
PARENT_ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "HOME": "/home/certherd-test",
    "LANG": "C.UTF-8",
    "CERTHERD_EXEC_COMMAND": "/should/not/leak",
    "CERTHERD_RFC2136_KEY_SECRET": "c2VjcmV0",
    "AWS_SECRET_ACCESS_KEY": "also-secret",
    "MY_HOOK_TOKEN": "passed-on-request",
}


def write_hook(path: Path, body: str) -> Path:
    """A Python hook program (run directly, no shell) with ``body`` after the imports."""
    path.write_text(f"#!{sys.executable}\nimport json, os, sys, time\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def dump_hook(tmp_path: Path) -> Path:
    """Appends {argv, env} as one JSON line per run to ``runs.jsonl`` beside it."""
    out = tmp_path / "runs.jsonl"
    return write_hook(
        tmp_path / "hook.py",
        f"with open({str(out)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv, 'env': dict(os.environ)}) + '\\n')",
    )


def runs(hook: Path) -> list[dict[str, object]]:
    lines = (hook.parent / "runs.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


async def test_hook_gets_action_and_an_explicit_minimal_environment(dump_hook: Path) -> None:
    before = dict(os.environ)
    provider = ExecProvider(ExecConfig(str(dump_hook)), PARENT_ENV)
    assert isinstance(provider, DnsProvider)
    await provider.add_txt(RECORD)
    await provider.remove_txt(RECORD)
    assert dict(os.environ) == before  # certherd's own environment is never changed
    present, cleanup = runs(dump_hook)
    assert present["argv"] == [str(dump_hook), "present"]
    assert cleanup["argv"] == [str(dump_hook), "cleanup"]
    env = present["env"]
    assert isinstance(env, dict)
    assert env["CERTHERD_DNS_NAME"] == "_acme-challenge.x.certherd.test."
    assert env["CERTHERD_DNS_VALUE"] == RECORD.value
    assert env["CERTHERD_DNS_DOMAIN"] == "x.certherd.test"
    assert {k for k in env if k.startswith("CERTHERD_")} == {
        "CERTHERD_DNS_NAME",
        "CERTHERD_DNS_VALUE",
        "CERTHERD_DNS_DOMAIN",
    }
    assert env["HOME"] == "/home/certherd-test"
    assert env["LANG"] == "C.UTF-8"
    # Python may add LC_CTYPE itself (PEP 538); nothing else is there.
    assert set(env) - {"LC_CTYPE"} == {
        "PATH",
        "HOME",
        "LANG",
        "CERTHERD_DNS_NAME",
        "CERTHERD_DNS_VALUE",
        "CERTHERD_DNS_DOMAIN",
    }
    assert cleanup["env"] == env


async def test_pass_env_hands_on_only_the_names_asked_for(dump_hook: Path) -> None:
    settings = {"command": str(dump_hook), "pass_env": "MY_HOOK_TOKEN, NOT_SET_ANYWHERE"}
    provider = ExecProvider.from_settings(settings, PARENT_ENV)
    await provider.add_txt(RECORD)
    (run,) = runs(dump_hook)
    env = run["env"]
    assert isinstance(env, dict)
    assert env["MY_HOOK_TOKEN"] == "passed-on-request"
    assert "NOT_SET_ANYWHERE" not in env
    assert "AWS_SECRET_ACCESS_KEY" not in env


async def test_values_reach_the_hook_verbatim_with_no_shell_in_between(
    dump_hook: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    hostile = f"$(touch {marker}); `touch {marker}` | touch {marker} && echo '\"*"
    provider = ExecProvider(ExecConfig(str(dump_hook)), PARENT_ENV)
    await provider.add_txt(TxtRecord(RECORD.name, RECORD.value, hostile))
    (run,) = runs(dump_hook)
    env = run["env"]
    assert isinstance(env, dict)
    assert env["CERTHERD_DNS_DOMAIN"] == hostile
    assert not marker.exists()


async def test_a_command_line_is_not_split_into_words(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not an executable program"):
        ExecProvider(ExecConfig(f"{sys.executable} -c 'print(1)'"), PARENT_ENV)


async def test_control_characters_are_refused_before_running(dump_hook: Path) -> None:
    provider = ExecProvider(ExecConfig(str(dump_hook)), PARENT_ENV)
    with pytest.raises(DnsProviderError, match=r"CERTHERD_DNS_DOMAIN='a\\x0ab'"):
        await provider.add_txt(TxtRecord(RECORD.name, RECORD.value, "a\nb"))
    assert not (dump_hook.parent / "runs.jsonl").exists()


async def test_non_zero_exit_names_the_hook_and_shows_escaped_stderr(tmp_path: Path) -> None:
    hook = write_hook(
        tmp_path / "failing.py",
        "sys.stderr.write('x' * 5000 + '\\nzone is locked \\x1b[31mred\\x1b[0m\\nsecond line')\n"
        "sys.exit(3)",
    )
    provider = ExecProvider(ExecConfig(str(hook)), PARENT_ENV)
    with pytest.raises(HookError) as caught:
        await provider.add_txt(RECORD)
    message = str(caught.value)
    assert str(hook) in message
    assert "present" in message
    assert RECORD.name in message
    assert "exited with status 3" in message
    # The end of stderr, where errors usually are: lines joined, control characters escaped.
    assert "; stderr: ...xxx" in message
    assert message.endswith(" | zone is locked \\x1b[31mred\\x1b[0m | second line")
    assert "\x1b" not in message
    assert "\n" not in message
    assert len(message) < 1400


async def test_stdout_is_shown_when_stderr_is_empty(tmp_path: Path) -> None:
    hook = write_hook(tmp_path / "quiet.py", "print('API said 403'); sys.exit(1)")
    with pytest.raises(HookError, match="stdout: API said 403"):
        await ExecProvider(ExecConfig(str(hook)), PARENT_ENV).remove_txt(RECORD)


async def test_a_hook_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    hook = write_hook(
        tmp_path / "slow.py",
        "import subprocess\n"
        "child = subprocess.Popen(['sleep', '60'])\n"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "time.sleep(60)",
    )
    # 3 s, not 1: a loaded machine may need a second just to start the hook's Python.
    provider = ExecProvider(ExecConfig(str(hook), timeout=3.0), PARENT_ENV)
    with pytest.raises(HookError, match=r"did not finish within 3 s and was stopped"):
        await provider.add_txt(RECORD)
    for pid in map(int, pids.read_text().split()):
        assert gone_soon(pid), f"process {pid} outlived its hook's timeout"


def gone_soon(pid: int, seconds: float = 3.0) -> bool:
    """Whether ``pid`` is dead within ``seconds`` (signals land asynchronously)."""
    deadline = time.monotonic() + seconds
    while running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def running(pid: int) -> bool:
    """Whether ``pid`` is alive; a zombie (killed, waiting for a reaper) is not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_settings_and_their_environment_fallbacks(dump_hook: Path) -> None:
    env = {**PARENT_ENV, "CERTHERD_EXEC_COMMAND": str(dump_hook), "CERTHERD_EXEC_TIMEOUT": "5"}
    provider = ExecProvider.from_settings({}, env)
    assert provider.command == str(dump_hook)
    assert provider.config.timeout == 5.0
    assert ExecProvider.from_settings({"timeout": "7.5"}, env).config.timeout == 7.5
    with pytest.raises(ConfigError, match="set 'command'"):
        ExecProvider.from_settings({}, PARENT_ENV | {"CERTHERD_EXEC_COMMAND": ""})
    with pytest.raises(ConfigError, match="unknown settings comand"):
        ExecProvider.from_settings({"comand": "x"}, env)
    with pytest.raises(ConfigError, match="number of seconds"):
        ExecProvider.from_settings({"timeout": "soon"}, env)
    with pytest.raises(ConfigError, match="timeout must be > 0"):
        ExecConfig(str(dump_hook), timeout=0)


def test_a_missing_or_non_executable_program_is_a_config_error(tmp_path: Path) -> None:
    plain = tmp_path / "not-executable.sh"
    plain.write_text("#!/bin/sh\n")
    for command in (str(tmp_path / "missing"), str(plain)):
        with pytest.raises(ConfigError, match="not an executable program"):
            ExecProvider(ExecConfig(command), PARENT_ENV)


async def test_children_ignoring_sigterm_die_with_a_hook_that_obeys_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The leader exits on SIGTERM; SIGKILL must still reach the rest of its group."""
    from certherd import programs

    monkeypatch.setattr(programs, "TERMINATE_GRACE", 0.5)
    pids = tmp_path / "pids"
    hook = write_hook(
        tmp_path / "stubborn-child.py",
        "import subprocess\n"
        "child = subprocess.Popen(['/bin/sh', '-c', \"trap '' TERM; sleep 60 & wait\"])\n"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "time.sleep(60)",
    )
    provider = ExecProvider(ExecConfig(str(hook), timeout=3.0), PARENT_ENV)
    with pytest.raises(HookError):
        await provider.add_txt(RECORD)
    for pid in map(int, pids.read_text().split()):
        assert gone_soon(pid), f"process {pid} outlived its hook's timeout"


async def test_a_daemon_started_by_the_hook_does_not_hold_up_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hook that leaves something running with its output open still ends the run."""
    from certherd import programs

    monkeypatch.setattr(programs, "OUTPUT_GRACE", 0.2)
    pid_file = tmp_path / "daemon.pid"
    hook = tmp_path / "starts-a-daemon"
    hook.write_text(f"#!/bin/sh\necho added\nsleep 60 &\necho $! > {pid_file}\n")
    hook.chmod(0o755)
    provider = ExecProvider(ExecConfig(str(hook), timeout=10.0), PARENT_ENV)
    started = time.monotonic()
    try:
        await provider.add_txt(RECORD)
        assert time.monotonic() - started < 5
    finally:
        os.kill(int(pid_file.read_text()), 9)
