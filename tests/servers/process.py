"""Child processes for the test server launchers: spawn, wait until ready, stop.

Every server runs as a foreground child in a process group of its own, so that stopping it
reaches every process it forked (nginx's workers, for one): SIGTERM to the group, a grace
period, then SIGKILL to the group. Its stdout and stderr go to a log file whose tail ends
every start-up error.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.servers.net import ServerStartError, log_tail

__all__ = ["ChildProcess", "Launcher", "stop_and_remove"]

_POLL_INTERVAL = 0.1


class ChildProcess:
    """One running server process, the leader of its own process group.

    Make it with `spawn`; use it from one thread. `stop` is safe to call more than once.
    """

    def __init__(self, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self._popen = popen
        self.log_path = log_path

    @classmethod
    def spawn(
        cls,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ChildProcess:
        """Start *argv* in a new session (so a new process group), its output to *log_path*."""
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
        return cls(popen, log_path)

    @property
    def pid(self) -> int:
        """The process id of the child, which is also its process group id."""
        return self._popen.pid

    @property
    def running(self) -> bool:
        """Whether the child has not exited yet."""
        return self._popen.poll() is None

    def send_signal(self, signum: signal.Signals) -> None:
        """Send *signum* to the child alone (not its group), e.g. SIGHUP to reload."""
        self._popen.send_signal(signum)

    def wait_ready(
        self,
        ready: Callable[[], bool],
        *,
        timeout: float,
        what: str,
        log: Path | None = None,
    ) -> None:
        """Poll *ready* until it is true.

        Raises `ServerStartError` with the tail of *log* (default: the child's own log) if
        the child exits first or *timeout* seconds pass.
        """
        log = self.log_path if log is None else log
        deadline = time.monotonic() + timeout
        while True:
            if ready():
                return
            if not self.running:
                raise ServerStartError(f"{what} exited during start-up{log_tail(log)}")
            if time.monotonic() > deadline:
                raise ServerStartError(f"{what} not ready after {timeout:.0f} s{log_tail(log)}")
            time.sleep(_POLL_INTERVAL)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the child's group, wait up to *grace* seconds, then SIGKILL the group."""
        if not self.running:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self._popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self._popen.wait()

    def _signal_group(self, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
            os.killpg(self._popen.pid, signum)


def stop_and_remove(process: ChildProcess | None, folder: Path | None, *, grace: float) -> None:
    """Stop *process* (see `ChildProcess.stop`), then remove *folder*; either may be None."""
    if process is not None:
        process.stop(grace)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


class Launcher(ABC):
    """Base of the launchers: `start` returns the server, `stop` ends it; a context manager."""

    @abstractmethod
    def start(self) -> Self:
        """Start the server and wait until it answers; raise `ServerStartError` otherwise."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the server and remove its files; safe to call twice."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
