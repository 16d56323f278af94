"""Running a user's hook command with an explicit, prefixed environment and a timeout.

A hook never inherits certherd's environment: it gets ``PATH``, ``HOME``, ``LANG`` and
``TZ`` from the parent (when set there), the ``CERTHERD_*`` variables that describe the
lineage, and for deploy hooks the ``RENEWED_LINEAGE`` / ``RENEWED_DOMAINS`` pair that
Certbot users' deploy hooks read. Certbot instead changes ``os.environ`` before running a
hook (STYLE.md habit 14); certherd never changes ``os.environ``, so secrets in it (DNS
provider tokens, database passwords) do not leak into hooks.

Values that come from a CA (names, file paths derived from them) reach a hook only through
the environment, never its command line, so they are never parsed by a shell (acme.sh's
CVE-2023-38198 came from server data reaching ``eval``; FIELD.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from certherd.errors import ConfigError, HookError, safe_text

__all__ = ["HOOK_KINDS", "HookEnvironment", "HookResult", "run_hook"]

HOOK_KINDS: Final = ("pre", "post", "deploy", "failure")
"""``pre`` runs before an order, ``post`` after it (success or not), ``deploy`` after a
success, ``failure`` after a failure (with ``CERTHERD_ERROR`` and ``CERTHERD_FAILURES``)."""

PASSED_THROUGH: Final = ("PATH", "HOME", "LANG", "TZ")
"""The only variables a hook inherits from certherd's own environment."""

FILE_VARIABLES: Final = {
    "cert": "CERTHERD_CERT_PATH",
    "chain": "CERTHERD_CHAIN_PATH",
    "fullchain": "CERTHERD_FULLCHAIN_PATH",
    "privkey": "CERTHERD_KEY_PATH",
}

OUTPUT_LIMIT: Final = 1 << 20
"""Bytes kept of each of stdout and stderr; the rest is read and dropped."""

STDERR_SHOWN: Final = 2000
"""Characters of stderr (its end, where errors usually are) shown in a HookError."""

TERMINATE_GRACE: Final = 2.0
"""Seconds between SIGTERM and SIGKILL to the process group of a hook that timed out."""

OUTPUT_GRACE: Final = 2.0
"""Seconds to wait for the output pipes to close after the hook exits.

A hook that starts a daemon without redirecting its output leaves our pipes open; we stop
reading after this grace instead of waiting for the daemon.
"""

_EXTRA_NAME = re.compile(r"^CERTHERD_[A-Z0-9_]+$")


@dataclass(frozen=True)
class HookResult:
    """How a hook ended: exit status, its output (decoded, capped) and how long it ran."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float


@dataclass(frozen=True)
class HookEnvironment:
    """The complete environment of one hook run, built without touching ``os.environ``.

    ``files`` maps some or all of ``cert``, ``chain``, ``fullchain`` and ``privkey`` to
    their paths in the live folder (they need not exist yet for a pre hook); another key
    is a ValueError. ``live_dir`` defaults to the folder of the first given file. A path
    that is not known (storage without local files) leaves its variable, and for the live
    folder ``RENEWED_LINEAGE`` too, unset rather than empty. ``extra`` adds variables
    from the user's own configuration; their names MUST start with ``CERTHERD_`` and MUST
    NOT replace one of the variables set here (ConfigError otherwise).
    """

    kind: str
    lineage: str
    names: Sequence[str]
    files: Mapping[str, Path]
    live_dir: Path | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in HOOK_KINDS:
            raise ValueError(f"hook kind {self.kind!r} is not one of {', '.join(HOOK_KINDS)}")
        unknown = set(self.files) - set(FILE_VARIABLES)
        if unknown:
            raise ValueError(
                f"hook files are named {', '.join(FILE_VARIABLES)}; got {sorted(unknown)}"
            )

    def variables(self, parent: Mapping[str, str] | None = None) -> dict[str, str]:
        """The hook's whole environment, as a new dict.

        ``parent`` (default ``os.environ``, only read) supplies PATH, HOME, LANG and TZ.
        ConfigError names a variable whose name or value cannot go into an environment.
        """
        source = os.environ if parent is None else parent
        live_dir = self.live_dir
        if live_dir is None:
            given = [self.files[key] for key in FILE_VARIABLES if key in self.files]
            live_dir = given[0].parent if given else None
        domains = " ".join(self.names)
        env = {name: source[name] for name in PASSED_THROUGH if name in source}
        env["CERTHERD_HOOK"] = self.kind
        env["CERTHERD_LINEAGE"] = self.lineage
        if live_dir is not None:
            env["CERTHERD_LIVE_DIR"] = str(live_dir.absolute())
        env["CERTHERD_DOMAINS"] = domains
        for key, variable in FILE_VARIABLES.items():
            if key in self.files:
                env[variable] = str(self.files[key].absolute())
        if self.kind == "deploy":
            # Certbot sets these two for deploy hooks only ("renewed" means just issued).
            if live_dir is not None:
                env["RENEWED_LINEAGE"] = env["CERTHERD_LIVE_DIR"]
            env["RENEWED_DOMAINS"] = domains
        for name, value in self.extra.items():
            if not _EXTRA_NAME.match(name):
                raise ConfigError(
                    f"hook variable {safe_text(name, 100)!r}: extra variables must be named "
                    "CERTHERD_ followed by capital letters, digits or '_'"
                )
            if name in env:
                raise ConfigError(f"hook variable {name} is set by certherd and cannot be replaced")
            env[name] = value
        for name, value in env.items():
            if "\0" in value:
                raise ConfigError(f"hook variable {name} contains a NUL character")
        return env


def _argv(command: str | Sequence[str], shell: bool) -> tuple[str, ...]:
    """The command as an argument vector (or one shell line); ConfigError if unusable."""
    if shell:
        if not isinstance(command, str):
            raise ValueError("shell=True needs the command as one string")
        if not command.strip():
            raise ConfigError("the hook command is empty")
        return (command,)
    if isinstance(command, str):
        try:
            argv = tuple(shlex.split(command))
        except ValueError as exc:
            raise ConfigError(f"hook command {safe_text(command, 300)!r}: {exc}") from None
    else:
        argv = tuple(command)
    if not argv or not argv[0]:
        raise ConfigError("the hook command is empty")
    return argv


def _display(command: str | Sequence[str]) -> str:
    text = command if isinstance(command, str) else shlex.join(command)
    return safe_text(text, 300)


def _stderr_excerpt(stderr: str) -> str:
    text = stderr.strip()
    if not text:
        return "(no output on stderr)"
    if len(text) > STDERR_SHOWN:
        text = "..." + text[-STDERR_SHOWN:]
    return safe_text(text, STDERR_SHOWN + 3)


class _Collector(asyncio.SubprocessProtocol):
    """Keeps the first OUTPUT_LIMIT bytes of stdout and stderr and notes exit and EOFs."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.output = {1: bytearray(), 2: bytearray()}
        self.exited: asyncio.Future[None] = loop.create_future()
        self.pipes_closed: asyncio.Future[None] = loop.create_future()
        self._open = {1, 2}

    def pipe_data_received(self, fd: int, data: bytes | bytearray) -> None:
        buffer = self.output.get(fd)
        if buffer is not None and len(buffer) < OUTPUT_LIMIT:
            buffer += data[: OUTPUT_LIMIT - len(buffer)]

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._open.discard(fd)
        if not self._open and not self.pipes_closed.done():
            self.pipes_closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def text(self, fd: int) -> str:
        return bytes(self.output[fd]).decode("utf-8", errors="replace")


def _signal_group(pid: int, signum: int) -> None:
    """Send ``signum`` to the hook's process group (its pid: it leads a new session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


async def _stop_group(pid: int, collector: _Collector) -> None:
    """SIGTERM the group, give it TERMINATE_GRACE to exit, then SIGKILL what is left."""
    _signal_group(pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(collector.exited), TERMINATE_GRACE)
    _signal_group(pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(collector.exited), TERMINATE_GRACE)


async def _spawn(
    collector: _Collector, argv: tuple[str, ...], shell: bool, env: dict[str, str]
) -> asyncio.SubprocessTransport:
    """Start the hook as the leader of a new session, stdin from /dev/null, output piped."""
    loop = asyncio.get_running_loop()
    pipe = asyncio.subprocess.PIPE
    if shell:
        transport, _ = await loop.subprocess_shell(
            lambda: collector,
            argv[0],
            stdin=asyncio.subprocess.DEVNULL,
            stdout=pipe,
            stderr=pipe,
            env=env,
            start_new_session=True,
        )
    else:
        transport, _ = await loop.subprocess_exec(
            lambda: collector,
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=pipe,
            stderr=pipe,
            env=env,
            start_new_session=True,
        )
    return transport


def _abandon(starting: asyncio.Future[asyncio.SubprocessTransport], collector: _Collector) -> None:
    """Stop a hook whose start was cancelled, as soon as the start completes.

    The start is shielded: cancelled inside ``subprocess_exec``, asyncio would kill only
    the leader and then wait for the pipes, which the hook's children may hold for as
    long as they run. Done in callbacks, this also works if the caller is cancelled again.
    """

    def started(future: asyncio.Future[asyncio.SubprocessTransport]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        transport = future.result()
        _signal_group(transport.get_pid(), signal.SIGKILL)
        collector.exited.add_done_callback(lambda _: transport.close())

    starting.add_done_callback(started)


async def run_hook(
    command: str | Sequence[str],
    *,
    kind: str,
    lineage: str,
    names: Sequence[str],
    files: Mapping[str, Path],
    extra: Mapping[str, str] | None = None,
    timeout: float = 300.0,
    shell: bool = False,
    live_dir: Path | None = None,
) -> HookResult:
    """Run one hook and return its result; HookError if it fails or runs too long.

    A string ``command`` is split with :func:`shlex.split` and run without a shell; with
    ``shell=True`` it is given to ``/bin/sh -c`` as written, which is meant for hook lines
    from the user's own configuration only. The environment is :class:`HookEnvironment`'s.
    stdin is ``/dev/null``; the hook leads a new session, and on timeout or cancellation
    its whole process group is stopped (SIGTERM, then SIGKILL). A non-zero exit, a
    timeout or a command that cannot be started raises :class:`HookError`, which names the
    hook kind and command and shows the end of stderr (escaped, about 2,000 characters).
    """
    if not timeout > 0:
        raise ValueError(f"hook timeout must be positive, got {timeout!r}")
    env = HookEnvironment(
        kind=kind,
        lineage=lineage,
        names=tuple(names),
        files=files,
        live_dir=live_dir,
        extra=dict(extra or {}),
    ).variables()
    argv = _argv(command, shell)
    shown = _display(command)
    collector = _Collector(asyncio.get_running_loop())
    started = time.monotonic()
    starting = asyncio.ensure_future(_spawn(collector, argv, shell, env))
    try:
        transport = await asyncio.shield(starting)
    except OSError as exc:
        raise HookError(
            f"{kind} hook {shown!r} could not be started: {exc.strerror or exc}"
        ) from None
    except asyncio.CancelledError:
        _abandon(starting, collector)
        with contextlib.suppress(Exception):  # not BaseException: a second cancel goes on
            await asyncio.wait_for(asyncio.shield(starting), TERMINATE_GRACE)
            await asyncio.wait_for(asyncio.shield(collector.exited), TERMINATE_GRACE)
        raise
    pid = transport.get_pid()
    timed_out = False
    try:
        try:
            await asyncio.wait_for(asyncio.shield(collector.exited), timeout)
        except TimeoutError:
            timed_out = True
            await _stop_group(pid, collector)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(collector.pipes_closed), OUTPUT_GRACE)
    except BaseException:
        # Cancelled (or failed) while the hook runs: it must not outlive us. Waiting for the
        # exit lets the child watcher reap it before the transport is closed.
        _signal_group(pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(collector.exited), TERMINATE_GRACE)
        raise
    finally:
        transport.close()
    seconds = time.monotonic() - started
    returncode = transport.get_returncode()
    result = HookResult(
        returncode=-1 if returncode is None else returncode,
        stdout=collector.text(1),
        stderr=collector.text(2),
        seconds=seconds,
    )
    if timed_out:
        raise HookError(
            f"{kind} hook {shown!r} did not finish within {timeout:g} s and was stopped; "
            f"stderr: {_stderr_excerpt(result.stderr)}"
        )
    if result.returncode != 0:
        if result.returncode < 0:
            how = f"was killed by signal {-result.returncode}"
        else:
            how = f"exited with status {result.returncode}"
        raise HookError(f"{kind} hook {shown!r} {how}; stderr: {_stderr_excerpt(result.stderr)}")
    return result
