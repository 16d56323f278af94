"""The one runner of users' programs: hooks, the hook solver and the exec DNS provider.

Every program certherd starts for its user goes through :func:`run_program`, with one
policy:

- **Environment**: nothing is inherited but what :func:`program_environment` copies from
  certherd's own environment (``PATH``, ``HOME``, ``LANG``, ``TZ`` and names a caller
  lists), plus the caller's variables. ``os.environ`` is only read, never changed
  (Certbot changes it before running a hook; STYLE.md habit 14), so secrets in it (DNS
  provider tokens, database passwords) do not leak into programs. Values from a CA reach
  a program only through its environment, never its argument vector, and never a shell
  (acme.sh's CVE-2023-38198 came from server data reaching ``eval``; FIELD.md).
- **Process group**: stdin is ``/dev/null`` and the program leads a new session. On its
  time-out the whole group gets SIGTERM and, :data:`TERMINATE_GRACE` seconds later,
  SIGKILL; when the caller is cancelled it gets SIGKILL at once. Nothing it started
  outlives certherd's interest in it.
- **Output**: stdout and stderr are read through pipes as they come, keeping the first and
  last halves of :data:`OUTPUT_LIMIT` bytes of each (the middle is dropped and counted), so
  a chatty program cannot fill memory or block on a full pipe. Certherd stops reading
  :data:`OUTPUT_GRACE` seconds after the program exits: something it left running in the
  background MUST send its output elsewhere (``>/dev/null 2>&1``), as writes to the closed
  pipes then fail.
- **Failure**: :func:`run_checked` turns a non-zero exit, a death by signal, a time-out or a
  program that cannot be started into one :class:`HookError` line: the caller's name for
  the run, what happened, and the end of stderr (or of stdout when stderr is empty), its
  lines joined by `` | `` and control characters escaped. Nothing is logged here.

- **Trust**: run as root, a program is started only when no other user could have changed
  it: the file, and every folder on its path (symbolic links included), belong to root
  and are not writable by group or others (:func:`untrusted_program`). A deploy hook in
  ``/home/alice/bin`` run by root's daemon would otherwise be a way for alice to become
  root. ConfigError names the file or folder at fault.

Imports nothing but the standard library, certherd's errors and its symlink-safe walk,
so ``hooks``, ``challenges`` and ``dns`` all build on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import stat
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from certherd._nofollow import untrusted_reason
from certherd.errors import ConfigError, HookError, safe_text

__all__ = [
    "DEFAULT_PATH",
    "PASSED_THROUGH",
    "ProgramResult",
    "program_environment",
    "run_checked",
    "run_program",
    "untrusted_program",
]

PASSED_THROUGH: Final = ("PATH", "HOME", "LANG", "TZ")
"""The variables every program inherits from certherd's own environment (when set there)."""

DEFAULT_PATH: Final = "/usr/local/bin:/usr/bin:/bin"
"""A program's ``PATH`` when certherd's own environment has none."""

OUTPUT_LIMIT: Final = 1 << 20
"""Bytes kept of each of stdout and stderr (the first and the last half); the rest is dropped."""

EXCERPT_SHOWN: Final = 1000
"""Characters of output (its end, where errors usually are) shown in a failure."""

TERMINATE_GRACE: Final = 2.0
"""Seconds between SIGTERM and SIGKILL to the process group of a program that timed out."""

OUTPUT_GRACE: Final = 2.0
"""Seconds to wait for the output pipes to close after the program exits.

A program that starts a daemon without redirecting its output leaves our pipes open; we
stop reading after this grace instead of waiting for the daemon.
"""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def program_environment(
    variables: Mapping[str, str],
    *,
    inherit: Iterable[str] = (),
    parent: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A program's whole environment, as a new dict: inherited names, then ``variables``.

    :data:`PASSED_THROUGH` and the names in ``inherit`` are copied from ``parent``
    (default ``os.environ``, only read) when set there; ``PATH`` falls back to
    :data:`DEFAULT_PATH`. ``variables`` are added on top. ConfigError names a variable
    whose name or value cannot go into an environment (NUL, ``=``, not a shell name).
    """
    source = os.environ if parent is None else parent
    env = {name: source[name] for name in (*PASSED_THROUGH, *inherit) if name in source}
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(variables)
    for name, value in env.items():
        if not _NAME.match(name):
            raise ConfigError(
                f"environment variable {safe_text(name, 100)!r}: a name is letters, digits "
                "and '_', not starting with a digit"
            )
        if "\0" in value:
            raise ConfigError(f"environment variable {name} contains a NUL character")
    return env


@dataclass(frozen=True)
class ProgramResult:
    """How a program ended: exit status, its output (decoded, capped) and how long it ran.

    ``returncode`` is negative (``-N``) for a program killed by signal ``N``.
    ``timed_out``: it ran past ``timeout`` seconds and its process group was stopped.
    ``truncated``: bytes were dropped from the middle of stdout or stderr (a line
    ``[... N bytes left out ...]`` stands where they were).
    """

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    timeout: float
    timed_out: bool = False
    truncated: bool = False

    @property
    def succeeded(self) -> bool:
        """Whether the program finished in time with exit status 0."""
        return self.returncode == 0 and not self.timed_out

    def failure(self) -> str:
        """What went wrong, one escaped line: ``exited with status 3; stderr: ...``."""
        if self.timed_out:
            how = f"did not finish within {self.timeout:g} s and was stopped"
        elif self.returncode < 0:
            how = f"was killed by signal {-self.returncode}"
            with contextlib.suppress(ValueError):
                how += f" ({signal.Signals(-self.returncode).name})"
        elif self.returncode:
            how = f"exited with status {self.returncode}"
        else:
            return "succeeded"
        return f"{how}; {_excerpt(self.stderr, self.stdout)}"


def _excerpt(stderr: str, stdout: str) -> str:
    """The end of stderr, else of stdout, as one safe line of about EXCERPT_SHOWN characters."""
    for name, text in (("stderr", stderr), ("stdout", stdout)):
        lines = " | ".join(line.strip() for line in text.splitlines() if line.strip())
        if lines:
            if len(lines) > EXCERPT_SHOWN:
                lines = "..." + lines[-EXCERPT_SHOWN:]
            return f"{name}: {safe_text(lines, EXCERPT_SHOWN + 3)}"
    return "no output"


class _Capped:
    """The first and last halves of ``limit`` bytes of a stream, and how many came."""

    def __init__(self, limit: int) -> None:
        self._tail_size = limit // 2
        self._head_size = limit - self._tail_size
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes | bytearray) -> None:
        self.total += len(data)
        room = self._head_size - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > 2 * self._tail_size:  # trimmed now and then, not per chunk
                del self.tail[: len(self.tail) - self._tail_size]

    def text(self) -> tuple[str, bool]:
        """The kept bytes, decoded, with a marker where bytes were dropped; and whether."""
        tail = self.tail[len(self.tail) - self._tail_size :] if self._tail_size else b""
        dropped = self.total - len(self.head) - len(tail)
        head_text = bytes(self.head).decode("utf-8", errors="replace")
        tail_text = bytes(tail).decode("utf-8", errors="replace")
        if dropped <= 0:
            return head_text + tail_text, False
        return f"{head_text}\n[... {dropped} bytes left out ...]\n{tail_text}", True


class _Collector(asyncio.SubprocessProtocol):
    """Keeps capped stdout and stderr and notes the exit and the pipes' EOFs."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.output = {1: _Capped(limit), 2: _Capped(limit)}
        self.exited: asyncio.Future[None] = loop.create_future()
        self.pipes_closed: asyncio.Future[None] = loop.create_future()
        self._open = {1, 2}

    def pipe_data_received(self, fd: int, data: bytes | bytearray) -> None:
        buffer = self.output.get(fd)
        if buffer is not None:
            buffer.add(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._open.discard(fd)
        if not self._open and not self.pipes_closed.done():
            self.pipes_closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


def _signal_group(pid: int, signum: int) -> None:
    """Send ``signum`` to the program's process group (its pid: it leads a new session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


async def _wait(future: asyncio.Future[None], seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(future), seconds)


async def _stop_group(pid: int, collector: _Collector) -> None:
    """SIGTERM the group, give it TERMINATE_GRACE to exit, then SIGKILL what is left.

    SIGKILL goes to the group even when the leader exited on SIGTERM: a child that
    ignores SIGTERM must not survive its parent's time-out.
    """
    _signal_group(pid, signal.SIGTERM)
    await _wait(collector.exited, TERMINATE_GRACE)
    _signal_group(pid, signal.SIGKILL)
    await _wait(collector.exited, TERMINATE_GRACE)


async def _spawn(
    collector: _Collector, argv: Sequence[str], env: Mapping[str, str]
) -> asyncio.SubprocessTransport:
    """Start the program as the leader of a new session, stdin from /dev/null, output piped."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.subprocess_exec(
        lambda: collector,
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        start_new_session=True,
        close_fds=True,
    )
    return transport


def _abandon(starting: asyncio.Future[asyncio.SubprocessTransport], collector: _Collector) -> None:
    """Stop a program whose start was cancelled, as soon as the start completes.

    The start is shielded: cancelled inside ``subprocess_exec``, asyncio would kill only
    the leader and then wait for the pipes, which the program's children may hold for as
    long as they run. Done in callbacks, this also works if the caller is cancelled again.
    """

    def started(future: asyncio.Future[asyncio.SubprocessTransport]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        transport = future.result()
        _signal_group(transport.get_pid(), signal.SIGKILL)
        collector.exited.add_done_callback(lambda _: transport.close())

    starting.add_done_callback(started)


def untrusted_program(program: str, path: str) -> str | None:
    """Why another user could change what ``program`` (found on ``path``) runs; None if
    only root (or this process's user) can, or if it cannot be found (starting it then
    fails with its own error).

    The folder holding it is walked as :func:`certherd._nofollow.untrusted_reason` walks
    a config dir; a symbolic link at the end is followed and its target's folder walked
    too; the file itself must belong to root (or us) and not be writable by group or
    others.
    """
    found = shutil.which(program, path=path) if os.sep not in program else program
    if found is None:
        return None
    found = os.path.abspath(found)
    seen = 0
    while True:
        reason = untrusted_reason(os.path.dirname(found))
        if reason is not None:
            return reason
        try:
            info = os.lstat(found)
        except OSError:
            return None
        if not stat.S_ISLNK(info.st_mode):
            break
        seen += 1
        if seen > 40:
            return None  # a loop: starting it fails with ELOOP
        found = os.path.join(os.path.dirname(found), os.readlink(found))
        found = os.path.normpath(found)
    if info.st_uid not in (0, os.geteuid()):
        return f"{found} belongs to another user (uid {info.st_uid})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{found} is writable by group or others (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def _check_trusted(argv0: str, env: Mapping[str, str]) -> None:
    """ConfigError if certherd runs as root and another user could change ``argv0``."""
    if os.geteuid() != 0:
        return
    reason = untrusted_program(argv0, env.get("PATH", DEFAULT_PATH))
    if reason is not None:
        raise ConfigError(
            f"program {safe_text(argv0, 200)!r} is not started: {reason}; as root, certherd "
            "runs only programs no other user can change (put it in a root-owned folder "
            "such as /usr/local/bin, owned by root, mode 0755 or stricter)"
        )


async def run_program(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout: float,
    output_limit: int = OUTPUT_LIMIT,
) -> ProgramResult:
    """Run ``argv`` (no shell) with exactly ``env`` and return how it ended.

    ``env`` is the whole environment (build it with :func:`program_environment`).
    On time-out the process group is stopped and the result says ``timed_out``; if the
    caller is cancelled, the group is killed and CancelledError goes on. OSError if the
    program cannot be started (missing, not executable); ConfigError if certherd runs as
    root and another user could change the program (:func:`untrusted_program`);
    ValueError for an empty ``argv``, a ``timeout`` that is not positive or an
    ``output_limit`` below 2.
    """
    argv = tuple(argv)
    if not argv or not argv[0]:
        raise ValueError("a program's argument vector must not be empty")
    if not timeout > 0:
        raise ValueError(f"a program's timeout must be positive, got {timeout!r}")
    if output_limit < 2:
        raise ValueError(f"output_limit must be at least 2 bytes, got {output_limit!r}")
    _check_trusted(argv[0], env)
    collector = _Collector(asyncio.get_running_loop(), output_limit)
    started = time.monotonic()
    starting = asyncio.ensure_future(_spawn(collector, argv, env))
    try:
        transport = await asyncio.shield(starting)
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
        await _wait(collector.pipes_closed, OUTPUT_GRACE)
    except BaseException:
        # Cancelled (or failed) while the program runs: it must not outlive us. Waiting
        # for the exit lets the child watcher reap it before the transport is closed.
        _signal_group(pid, signal.SIGKILL)
        await _wait(collector.exited, TERMINATE_GRACE)
        raise
    finally:
        transport.close()
    returncode = transport.get_returncode()
    stdout, stdout_cut = collector.output[1].text()
    stderr, stderr_cut = collector.output[2].text()
    return ProgramResult(
        returncode=-1 if returncode is None else returncode,
        stdout=stdout,
        stderr=stderr,
        seconds=time.monotonic() - started,
        timeout=timeout,
        timed_out=timed_out,
        truncated=stdout_cut or stderr_cut,
    )


async def run_checked(
    argv: Sequence[str],
    *,
    what: str,
    env: Mapping[str, str],
    timeout: float,
    output_limit: int = OUTPUT_LIMIT,
) -> ProgramResult:
    """:func:`run_program`, raising HookError unless the program succeeded (a program
    refused as untrusted included).

    ``what`` names the run in the error (``deploy hook 'systemctl reload nginx'``); it is
    shown as given, so escape anything in it that came from outside (:func:`safe_text`).
    """
    try:
        result = await run_program(argv, env=env, timeout=timeout, output_limit=output_limit)
    except OSError as exc:
        raise HookError(
            f"{what} could not be started: {exc.strerror or exc} "
            "(check the path and that it is executable)"
        ) from None
    except ConfigError as exc:  # another user could change the program (run as root)
        raise HookError(f"{what}: {exc}") from None
    if not result.succeeded:
        raise HookError(f"{what} {result.failure()}")
    return result
