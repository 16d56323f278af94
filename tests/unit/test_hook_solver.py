"""HookSolver: the exact environment, no shell, stderr in errors, timeouts that kill."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Protocol

import pytest

from certherd.acme.messages import Challenge, Identifier, Status
from certherd.challenges.base import ChallengeTask, Solver
from certherd.challenges.hook import HookSolver, hook_environment
from certherd.errors import ConfigError, HookError, UnsafeResponseError
from certherd.programs import DEFAULT_PATH

TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
THUMBPRINT = "nP1qzpXGymHBrUEepNY9HCsQk7K8KhOypzEY2j5TnR8"
KEY_AUTHORIZATION = f"{TOKEN}.{THUMBPRINT}"


class HookFactory(Protocol):
    def __call__(self, body: str = "", name: str = "hook") -> Path: ...


def task(
    value: str = "www.example.test",
    challenge_type: str = "http-01",
    token: str | None = TOKEN,
    identifier_type: str = "dns",
) -> ChallengeTask:
    challenge = Challenge("https://ca.test/chall/1", challenge_type, Status.PENDING, token=token)
    return ChallengeTask(Identifier(identifier_type, value), challenge, KEY_AUTHORIZATION)


@pytest.fixture
def record(tmp_path: Path) -> Path:
    """The file each hook run appends one JSON line to: its argv and initial environment."""
    return tmp_path / "runs.jsonl"


@pytest.fixture
def make_hook(tmp_path: Path, record: Path) -> HookFactory:
    """``make_hook(python_body)``: an executable Python hook that records each run first.

    The environment is read from /proc/self/environ, as the process received it: Python
    itself may add LC_CTYPE to ``os.environ`` (PEP 538) under a C locale.
    """

    def make(body: str = "", name: str = "hook") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"#!{sys.executable} -IS\n"
            "import json, os, sys, time\n"
            "raw = open('/proc/self/environ', 'rb').read().split(b'\\0')\n"
            "env = dict(e.decode().split('=', 1) for e in raw if e)\n"
            f"with open({str(record)!r}, 'a') as out:\n"
            "    out.write(json.dumps({'argv': sys.argv, 'env': env}) + '\\n')\n"
            f"{body}\n"
        )
        path.chmod(0o755)
        return path

    return make


def runs(record: Path) -> list[dict[str, Any]]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines()]


@pytest.fixture
def parent_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """certherd's own environment: three of the inherited variables (no TZ) and a secret."""
    monkeypatch.setenv("PATH", "/usr/local/bin:/usr/bin:/bin")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.delenv("TZ", raising=False)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "must-not-leak")
    monkeypatch.setenv("CERTHERD_INJECTED", "must-not-leak")


def test_a_hook_solver_is_a_solver() -> None:
    assert isinstance(HookSolver("dns-01", "/bin/true"), Solver)


@pytest.mark.usefixtures("parent_env")
async def test_http01_hook_gets_exactly_the_documented_environment(
    make_hook: HookFactory, record: Path, tmp_path: Path
) -> None:
    hook = make_hook()
    solver = HookSolver("http-01", hook)
    before = dict(os.environ)
    handle = await solver.present(task())
    await solver.cleanup(handle)
    assert dict(os.environ) == before  # never changed

    present, cleanup = runs(record)
    assert present["argv"] == [str(hook), "present"]
    assert cleanup["argv"] == [str(hook), "cleanup"]
    expected = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "CERTHERD_CHALLENGE_TYPE": "http-01",
        "CERTHERD_IDENTIFIER": "www.example.test",
        "CERTHERD_IDENTIFIER_TYPE": "dns",
        "CERTHERD_TOKEN": TOKEN,
        "CERTHERD_KEY_AUTHORIZATION": KEY_AUTHORIZATION,
    }
    assert present["env"] == expected
    assert cleanup["env"] == expected


@pytest.mark.usefixtures("parent_env")
async def test_dns01_hook_gets_the_record_name_and_value(
    make_hook: HookFactory, record: Path
) -> None:
    solver = HookSolver("dns-01", make_hook())
    await solver.cleanup(await solver.present(task("*.example.test", "dns-01")))
    env = runs(record)[0]["env"]
    digest = hashlib.sha256(KEY_AUTHORIZATION.encode()).digest()
    assert env["CERTHERD_IDENTIFIER"] == "*.example.test"
    # RFC 8555 §8.4: no "*." label in the record name; unpadded base64url SHA-256.
    assert env["CERTHERD_DNS_NAME"] == "_acme-challenge.example.test."
    assert env["CERTHERD_DNS_VALUE"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert len(env) == 10


def test_missing_parent_variables_are_not_invented(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.delenv("LANG", raising=False)
    monkeypatch.delenv("PATH", raising=False)
    env = hook_environment(task())
    assert "HOME" not in env
    assert "LANG" not in env
    assert env["PATH"] == DEFAULT_PATH


def test_an_unknown_challenge_type_without_a_token_is_passed_on() -> None:
    env = hook_environment(task(challenge_type="future-01", token=None))
    assert env["CERTHERD_CHALLENGE_TYPE"] == "future-01"
    assert env["CERTHERD_TOKEN"] == ""
    assert "CERTHERD_DNS_NAME" not in env


async def test_shell_metacharacters_are_not_interpreted(
    make_hook: HookFactory, record: Path, tmp_path: Path
) -> None:
    canary = tmp_path / "pwned"
    nasty = f"x$(touch {canary});`touch {canary}`|touch {canary}&&'\"*?"
    hook = make_hook(name=f"dir with space;$(touch {canary.name})/hook 'quoted'")
    solver = HookSolver("future-01", hook)
    await solver.cleanup(await solver.present(task(value=nasty, challenge_type="future-01")))
    assert not canary.exists()
    assert not (hook.parent.parent / canary.name).exists()
    present = runs(record)[0]
    assert present["argv"] == [str(hook), "present"]
    assert present["env"]["CERTHERD_IDENTIFIER"] == nasty


async def test_command_with_fixed_arguments(record: Path, make_hook: HookFactory) -> None:
    hook = make_hook()
    solver = HookSolver("dns-01", [sys.executable, str(hook), "--zone", "a b"])
    await solver.present(task(challenge_type="dns-01"))
    assert runs(record)[0]["argv"] == [str(hook), "--zone", "a b", "present"]


async def test_failure_names_the_hook_and_shows_escaped_stderr(
    make_hook: HookFactory, record: Path
) -> None:
    hook = make_hook(
        "if sys.argv[1] == 'present':\n"
        "    sys.stderr.write('first line\\n\\x1b[31mzone not found\\x1b[0m\\n')\n"
        "    sys.exit(3)\n"
    )
    solver = HookSolver("dns-01", hook)
    with pytest.raises(HookError) as caught:
        await solver.present(task(challenge_type="dns-01"))
    message = str(caught.value)
    assert str(hook) in message
    assert "present for www.example.test exited with status 3; stderr: " in message
    assert "first line | \\x1b[31mzone not found\\x1b[0m" in message
    assert "\n" not in message
    assert "\x1b" not in message
    # The failed present is undone: cleanup ran too (hooks must tolerate that).
    assert [run["argv"][1] for run in runs(record)] == ["present", "cleanup"]


async def test_long_stderr_is_cut_to_its_end(make_hook: HookFactory) -> None:
    hook = make_hook("sys.stderr.write('x' * 200000 + 'THE END')\nsys.exit(1)\n")
    with pytest.raises(HookError) as caught:
        await HookSolver("http-01", hook).present(task())
    message = str(caught.value)
    assert message.endswith("THE END")
    assert len(message) < 1500


async def test_timeout_kills_the_whole_process_group(
    make_hook: HookFactory, tmp_path: Path
) -> None:
    child_pid = tmp_path / "child.pid"
    hook = make_hook(
        "import subprocess\n"
        "if sys.argv[1] == 'present':\n"
        "    child = subprocess.Popen(['sleep', '60'])\n"
        f"    open({str(child_pid)!r}, 'w').write(str(child.pid))\n"
        "    sys.stderr.write('waiting for DNS...\\n'); sys.stderr.flush()\n"
        "    time.sleep(60)\n"
    )
    solver = HookSolver("dns-01", hook, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(HookError, match=r"did not finish within 0\.5 s and was stopped") as caught:
        await solver.present(task(challenge_type="dns-01"))
    assert time.monotonic() - started < 5
    assert "waiting for DNS..." in str(caught.value)
    assert await gone(int(child_pid.read_text()))


async def test_cancelled_present_kills_the_hook_and_cleans_up(
    make_hook: HookFactory, record: Path, tmp_path: Path
) -> None:
    started_flag = tmp_path / "started"
    # The pid is written to a temporary name and renamed: the flag never exists empty
    # (a hook killed between creating and writing it left an empty file: a flaky test).
    hook = make_hook(
        "if sys.argv[1] == 'present':\n"
        f"    open({str(started_flag)!r} + '.new', 'w').write(str(os.getpid()))\n"
        f"    os.rename({str(started_flag)!r} + '.new', {str(started_flag)!r})\n"
        "    time.sleep(60)\n"
    )
    presenting = asyncio.ensure_future(HookSolver("dns-01", hook).present(task("a.test")))
    deadline = time.monotonic() + 30
    while not started_flag.exists():
        assert time.monotonic() < deadline, "the hook's present never started"
        assert not presenting.done(), presenting
        await asyncio.sleep(0.01)
    presenting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await presenting
    assert await gone(int(started_flag.read_text()))
    assert [run["argv"][1] for run in runs(record)] == ["present", "cleanup"]


async def test_a_missing_program_is_a_hook_error(tmp_path: Path) -> None:
    with pytest.raises(HookError, match="could not be started: No such file"):
        await HookSolver("http-01", tmp_path / "nope").present(task())


@pytest.mark.parametrize(
    "token", ["../../etc/passwd", "a/b", "..", None, "x" * 30 + ";rm", "x" * 20 + "\n"]
)
async def test_hostile_tokens_never_reach_the_hook(
    make_hook: HookFactory, record: Path, token: str | None
) -> None:
    with pytest.raises(UnsafeResponseError):
        await HookSolver("dns-01", make_hook()).present(task(challenge_type="dns-01", token=token))
    assert runs(record) == []


def test_control_characters_from_the_ca_are_refused() -> None:
    with pytest.raises(UnsafeResponseError, match="control characters"):
        hook_environment(task(value="evil.test\nINJECTED=1"))


def test_supports_follows_the_challenge_type() -> None:
    name, wildcard, address = (
        Identifier.dns("a.test"),
        Identifier.dns("*.a.test"),
        Identifier.ip("127.0.0.1"),
    )
    dns = HookSolver("dns-01", "/bin/true")
    assert (dns.supports(name), dns.supports(wildcard), dns.supports(address)) == (
        True,
        True,
        False,
    )
    for kind in ("http-01", "tls-alpn-01"):
        solver = HookSolver(kind, "/bin/true")
        assert (solver.supports(name), solver.supports(wildcard), solver.supports(address)) == (
            True,
            False,
            True,
        )
    assert HookSolver("future-01", "/bin/true").supports(wildcard)


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        (("dns-01", ""), "command is empty"),
        (("dns-01", []), "command is empty"),
        (("dns-01", "/bin/true", 0), "timeout must be positive"),
        (("", "/bin/true"), "challenge type"),
    ],
)
def test_bad_settings_are_config_errors(arguments: tuple[Any, ...], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        HookSolver(*arguments)


async def gone(pid: int, within: float = 5.0) -> bool:
    """Whether ``pid`` has exited (a zombie counts: nothing may reap it in a container)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        await asyncio.sleep(0.02)
    return False
