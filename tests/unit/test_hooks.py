"""Hooks: the exact environment a hook sees, timeouts, failures and untrusted names."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
import time
from pathlib import Path

import pytest

import certherd.hooks
from certherd import programs
from certherd.errors import ConfigError, HookError
from certherd.hooks import HookEnvironment, run_hook

NAMES = ["example.com", "www.example.com"]

COMMON = {
    "CERTHERD_HOOK",
    "CERTHERD_LINEAGE",
    "CERTHERD_LIVE_DIR",
    "CERTHERD_DOMAINS",
    "CERTHERD_CERT_PATH",
    "CERTHERD_CHAIN_PATH",
    "CERTHERD_FULLCHAIN_PATH",
    "CERTHERD_KEY_PATH",
}


@pytest.fixture
def live(tmp_path: Path) -> Path:
    folder = tmp_path / "live" / "example.com"
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def files(live: Path) -> dict[str, Path]:
    return {
        "cert": live / "cert.pem",
        "chain": live / "chain.pem",
        "fullchain": live / "fullchain.pem",
        "privkey": live / "privkey.pem",
    }


def script(folder: Path, name: str, body: str) -> Path:
    """An executable Python script ``folder/name`` running ``body``."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\n{body}\n")
    path.chmod(0o755)
    return path


def env_dumper(folder: Path) -> Path:
    return script(
        folder, "dump-env", "import json, os, sys\njson.dump(dict(os.environ), sys.stdout)"
    )


def is_gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


async def wait_gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if is_gone(pid):
            return True
        await asyncio.sleep(0.05)
    return is_gone(pid)


async def wait_for_file(path: Path, within: float = 5.0) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


def test_public_names_are_exported_and_documented() -> None:
    assert set(certherd.hooks.__all__) == {
        "HOOK_KINDS",
        "HookEnvironment",
        "ProgramResult",
        "run_hook",
    }
    for name in ("HookEnvironment", "ProgramResult", "run_hook"):
        assert (getattr(certherd.hooks, name).__doc__ or "").strip()


def test_environment_is_built_from_an_explicit_parent(files: dict[str, Path], live: Path) -> None:
    parent = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "AWS_SECRET_ACCESS_KEY": "do-not-leak",
        "LD_PRELOAD": "/evil.so",
    }
    env = HookEnvironment(
        kind="deploy", lineage="example.com", names=NAMES, files=files, extra={"CERTHERD_X": "1"}
    ).variables(parent)
    assert env == {
        "PATH": "/usr/bin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "CERTHERD_HOOK": "deploy",
        "CERTHERD_LINEAGE": "example.com",
        "CERTHERD_LIVE_DIR": str(live),
        "CERTHERD_DOMAINS": "example.com www.example.com",
        "CERTHERD_CERT_PATH": str(live / "cert.pem"),
        "CERTHERD_CHAIN_PATH": str(live / "chain.pem"),
        "CERTHERD_FULLCHAIN_PATH": str(live / "fullchain.pem"),
        "CERTHERD_KEY_PATH": str(live / "privkey.pem"),
        "RENEWED_LINEAGE": str(live),
        "RENEWED_DOMAINS": "example.com www.example.com",
        "CERTHERD_X": "1",
    }


@pytest.mark.parametrize("kind", ["pre", "post"])
def test_renewed_variables_are_for_deploy_hooks_only(kind: str, files: dict[str, Path]) -> None:
    env = HookEnvironment(kind=kind, lineage="example.com", names=NAMES, files=files).variables({})
    assert set(env) == COMMON | {"PATH"}
    assert env["PATH"] == programs.DEFAULT_PATH  # a parent without PATH: the default one
    assert env["CERTHERD_HOOK"] == kind


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"FOO": "1"}, "must be named CERTHERD_"),
        ({"CERTHERD_lower": "1"}, "must be named CERTHERD_"),
        ({"CERTHERD_HOOK": "pre"}, "set by certherd"),
        ({"CERTHERD_X": "a\0b"}, "NUL"),
    ],
)
def test_extra_variables_are_checked(
    extra: dict[str, str], message: str, files: dict[str, Path]
) -> None:
    environment = HookEnvironment(
        kind="post", lineage="example.com", names=NAMES, files=files, extra=extra
    )
    with pytest.raises(ConfigError, match=message):
        environment.variables({})


def test_bad_kind_and_files_are_refused(files: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="hook kind"):
        HookEnvironment(kind="renew", lineage="x", names=NAMES, files=files)
    with pytest.raises(ValueError, match="hook files"):
        HookEnvironment(kind="pre", lineage="x", names=NAMES, files={"key": files["privkey"]})


def test_unknown_paths_are_left_unset_not_empty(files: dict[str, Path], live: Path) -> None:
    """Storage without local files (PostgreSQL) has no live folder to name."""
    env = HookEnvironment(kind="deploy", lineage="l", names=NAMES, files={}).variables({})
    assert set(env) == {
        "PATH",
        "CERTHERD_HOOK",
        "CERTHERD_LINEAGE",
        "CERTHERD_DOMAINS",
        "RENEWED_DOMAINS",
    }
    partial = HookEnvironment(
        kind="deploy", lineage="l", names=NAMES, files={"fullchain": files["fullchain"]}
    ).variables({})
    assert partial["CERTHERD_LIVE_DIR"] == partial["RENEWED_LINEAGE"] == str(live)
    assert "CERTHERD_CERT_PATH" not in partial
    elsewhere = HookEnvironment(
        kind="post", lineage="l", names=NAMES, files={}, live_dir=Path("/srv/live/l")
    ).variables({})
    assert elsewhere["CERTHERD_LIVE_DIR"] == "/srv/live/l"


async def test_hook_sees_exactly_the_documented_environment(
    tmp_path: Path, files: dict[str, Path], live: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    monkeypatch.setenv("CERTHERD_DNS_TOKEN", "do-not-leak-either")
    before = dict(os.environ)
    result = await run_hook(
        str(env_dumper(tmp_path)),
        kind="deploy",
        lineage="example.com",
        names=NAMES,
        files=files,
        extra={"CERTHERD_STAGE": "blue"},
    )
    assert dict(os.environ) == before  # certherd never changes its own environment
    seen = json.loads(result.stdout)
    assert set(seen) == COMMON | {
        "PATH",
        "HOME",
        "LANG",
        "TZ",
        "RENEWED_LINEAGE",
        "RENEWED_DOMAINS",
        "CERTHERD_STAGE",
    }
    assert seen["PATH"] == os.environ["PATH"]
    assert seen["HOME"] == str(tmp_path)
    assert seen["TZ"] == "UTC"
    assert seen["RENEWED_LINEAGE"] == seen["CERTHERD_LIVE_DIR"] == str(live)
    assert seen["RENEWED_DOMAINS"] == seen["CERTHERD_DOMAINS"] == "example.com www.example.com"
    assert seen["CERTHERD_KEY_PATH"] == str(live / "privkey.pem")
    assert seen["CERTHERD_STAGE"] == "blue"
    assert result.returncode == 0
    assert result.stderr == ""
    assert result.seconds >= 0


async def test_parent_variables_missing_are_not_invented(
    tmp_path: Path, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TZ", raising=False)
    monkeypatch.setenv("LANG", "C.UTF-8")
    result = await run_hook(
        [str(env_dumper(tmp_path))], kind="pre", lineage="example.com", names=NAMES, files=files
    )
    assert set(json.loads(result.stdout)) == COMMON | {"PATH", "HOME", "LANG"}


async def test_failure_names_the_hook_and_shows_escaped_stderr(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    hook = script(
        tmp_path,
        "fail",
        "import sys\nsys.stderr.write('reload failed\\n\\x1b[31mred\\x1b[0m\\n')\nsys.exit(3)",
    )
    with pytest.raises(HookError) as caught:
        await run_hook(
            f"{hook} --reload", kind="deploy", lineage="example.com", names=NAMES, files=files
        )
    message = str(caught.value)
    assert message.startswith(f"deploy hook '{hook} --reload' exited with status 3")
    assert message.endswith("; stderr: reload failed | \\x1b[31mred\\x1b[0m")
    assert "\x1b" not in message
    assert "\n" not in message


async def test_long_stderr_is_cut_to_its_end(tmp_path: Path, files: dict[str, Path]) -> None:
    hook = script(
        tmp_path, "noisy", "import sys\nsys.stderr.write('x' * 50000 + 'THE-END')\nsys.exit(1)"
    )
    with pytest.raises(HookError) as caught:
        await run_hook(str(hook), kind="post", lineage="l", names=NAMES, files=files)
    message = str(caught.value)
    assert message.endswith("THE-END")
    assert "..." in message
    assert len(message) < 2500


async def test_killed_by_signal_is_reported(tmp_path: Path, files: dict[str, Path]) -> None:
    with pytest.raises(HookError, match="killed by signal 9"):
        await run_hook(
            "kill -KILL $$", kind="post", lineage="l", names=NAMES, files=files, shell=True
        )


async def test_timeout_kills_the_whole_process_group(
    tmp_path: Path, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(programs, "TERMINATE_GRACE", 0.3)
    pid_file = tmp_path / "grandchild.pid"
    # The shell and its child (which inherits the ignored signal) survive SIGTERM: only the
    # SIGKILL that follows the grace can end them.
    line = f"trap '' TERM; sleep 60 & echo $! > {shlex.quote(str(pid_file))}; "
    line += "echo started >&2; wait"
    started = time.monotonic()
    with pytest.raises(HookError) as caught:
        await run_hook(
            line, kind="pre", lineage="l", names=NAMES, files=files, timeout=0.5, shell=True
        )
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "pre hook" in message
    assert "did not finish within 0.5 s and was stopped" in message
    assert "started" in message  # stderr written before the timeout is shown
    assert await wait_gone(int(pid_file.read_text()))


async def test_cancellation_kills_the_process_group(tmp_path: Path, files: dict[str, Path]) -> None:
    pid_file = tmp_path / "grandchild.pid"
    line = f"sleep 60 & echo $! > {shlex.quote(str(pid_file))}; wait"
    task = asyncio.create_task(
        run_hook(line, kind="post", lineage="l", names=NAMES, files=files, shell=True)
    )
    pid = int(await wait_for_file(pid_file))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_gone(pid)


@pytest.mark.parametrize("yields", [0, 1, 2, 3, 5, 8])
async def test_cancellation_while_starting_does_not_wait_for_children(
    yields: int, tmp_path: Path, files: dict[str, Path]
) -> None:
    """Cancelled inside the start, asyncio alone would wait for the pipes: up to 60 s here."""
    pid_file = tmp_path / "grandchild.pid"
    line = f"sleep 60 & echo $! > {shlex.quote(str(pid_file))}; wait"
    task = asyncio.create_task(
        run_hook(line, kind="post", lineage="l", names=NAMES, files=files, shell=True)
    )
    for _ in range(yields):
        await asyncio.sleep(0)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert time.monotonic() - started < 5
    await asyncio.sleep(0.2)  # a shell killed this late may still have written the file
    if pid_file.exists() and pid_file.read_text().strip():
        assert await wait_gone(int(pid_file.read_text()))


async def test_a_daemon_holding_the_output_open_does_not_block(
    tmp_path: Path, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(programs, "OUTPUT_GRACE", 0.2)
    pid_file = tmp_path / "daemon.pid"
    line = f"echo deployed; sleep 60 & echo $! > {shlex.quote(str(pid_file))}"
    try:
        result = await run_hook(
            line, kind="deploy", lineage="l", names=NAMES, files=files, shell=True, timeout=10
        )
        assert result.returncode == 0
        assert result.stdout == "deployed\n"
        assert result.seconds < 5
    finally:
        os.kill(int(pid_file.read_text()), 9)


async def test_names_with_metacharacters_are_not_interpreted(
    tmp_path: Path, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    names = ["a b.example", "$(touch pwned1)", "`touch pwned2`;touch pwned3", "*", "x\\y'\""]
    result = await run_hook(
        'printf "%s" "$CERTHERD_DOMAINS"; printf "|%s" $RENEWED_DOMAINS',
        kind="deploy",
        lineage="example.com",
        names=names,
        files=files,
        shell=True,
    )
    joined = " ".join(names)
    # Even unquoted expansion only splits words and globs; it never runs anything.
    assert result.stdout.startswith(joined + "|")
    assert not list(tmp_path.glob("pwned*"))


async def test_a_string_command_is_split_without_a_shell(
    tmp_path: Path, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "my hooks"
    hook = script(folder, "echo args", "import json, sys\nprint(json.dumps(sys.argv[1:]))")
    command = f"{shlex.quote(str(hook))} 'two words' ; touch pwned $(id) $HOME"
    result = await run_hook(command, kind="deploy", lineage="l", names=NAMES, files=files)
    assert json.loads(result.stdout) == ["two words", ";", "touch", "pwned", "$(id)", "$HOME"]
    assert not (tmp_path / "pwned").exists()


async def test_a_sequence_command_is_used_as_is(tmp_path: Path, files: dict[str, Path]) -> None:
    hook = script(tmp_path, "args", "import json, sys\nprint(json.dumps(sys.argv[1:]))")
    result = await run_hook(
        [str(hook), "a b", "$X", "'q'"], kind="post", lineage="l", names=NAMES, files=files
    )
    assert json.loads(result.stdout) == ["a b", "$X", "'q'"]


async def test_a_missing_program_is_a_hook_error(tmp_path: Path, files: dict[str, Path]) -> None:
    missing = tmp_path / "no-such-hook"
    with pytest.raises(HookError, match=r"^pre hook .*no-such-hook' could not be started"):
        await run_hook(str(missing), kind="pre", lineage="l", names=NAMES, files=files)


async def test_unusable_commands_are_refused(files: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="empty"):
        await run_hook("  ", kind="pre", lineage="l", names=NAMES, files=files)
    with pytest.raises(ConfigError, match="empty"):
        await run_hook([], kind="pre", lineage="l", names=NAMES, files=files)
    with pytest.raises(ConfigError, match="No closing quotation"):
        await run_hook("echo 'open", kind="pre", lineage="l", names=NAMES, files=files)
    with pytest.raises(ValueError, match="one string"):
        await run_hook(["echo", "x"], kind="pre", lineage="l", names=NAMES, files=files, shell=True)
    with pytest.raises(ValueError, match="positive"):
        await run_hook("true", kind="pre", lineage="l", names=NAMES, files=files, timeout=0)
