"""What every installer shares about its server root: one lock for certherd's changes
(an asyncio lock per event loop in this process, a lock file across processes), and
the marks of the processes proving names through the server right now."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

from certherd.errors import ConfigError

__all__ = ["LOCK_WAIT", "ServerRoot"]

_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Path, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)
"""One lock per server root and event loop in this process (the file lock covers other
processes; an asyncio lock belongs to one loop)."""
LOCK_WAIT = 120.0
"""How long to wait for another certherd process changing the same server (seconds)."""


class ServerRoot:
    """Mixed into an installer with ``kind``, ``server_root`` and ``owned`` (the folder
    of everything certherd adds, ``ROOT/certherd``)."""

    kind: str
    server_root: Path

    @property
    def owned(self) -> Path:
        """The folder of everything certherd adds (``ROOT/certherd``)."""
        return self.server_root / "certherd"

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        lock = _LOCKS.setdefault(loop, {}).setdefault(self.server_root.resolve(), asyncio.Lock())
        async with lock:
            self.owned.mkdir(mode=0o755, parents=True, exist_ok=True)
            descriptor = os.open(self.owned / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                deadline = loop.time() + LOCK_WAIT
                while True:
                    try:
                        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if loop.time() > deadline:
                            raise ConfigError(
                                f"another certherd process has been changing {self.kind} for "
                                f"over {LOCK_WAIT:.0f} s ({self.owned / '.lock'}): try again "
                                "later"
                            ) from None
                        await asyncio.sleep(0.05)
                yield
            finally:
                os.close(descriptor)

    def _users(self) -> Path:
        return self.owned / "users"

    def _mark_user(self) -> None:
        self._users().mkdir(mode=0o700, exist_ok=True)
        marker = self._users() / str(os.getpid())
        count = int(marker.read_text() or "0") if marker.exists() else 0
        marker.write_text(str(count + 1))

    def _unmark_user(self, uses: int) -> bool:
        """Drop ``uses`` uses by this process; True while some process (this or another
        living one) still proves names here."""
        marker = self._users() / str(os.getpid())
        if marker.exists():
            count = int(marker.read_text() or "1") - uses
            if count > 0:
                marker.write_text(str(count))
            else:
                marker.unlink()
        others = []
        for entry in self._users().iterdir() if self._users().exists() else ():
            if entry.name.isdigit() and _alive(int(entry.name)):
                others.append(entry)
            else:
                entry.unlink(missing_ok=True)
        return bool(others)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
