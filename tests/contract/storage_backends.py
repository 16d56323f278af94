"""The storage backends the contract suite runs (tests/contract/test_storage_contract.py).

Each backend is a :class:`Backend`: the store, how to leave what an interrupted write
leaves behind, whether a value is private, and how to run a second lease holder that
can be paused and killed: a child process (``lease_holder.py``) where the store is
shared between processes, a driven object in this process for memory. PostgreSQL joins
by adding a factory to ``BACKENDS`` (and its opening to ``lease_holder.py``).
PostgreSQL runs on the session's test server (tests/servers/postgres.py), a new database
for every test.
"""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from certherd.errors import FencedError, LeaseLostError
from certherd.storage import FilesystemStorage, MemoryStorage, Storage
from certherd.storage.base import Lease
from certherd.storage.postgresql import PostgresStorage

if TYPE_CHECKING:
    from tests.servers.postgres import PostgresServer

HOLDER_SCRIPT = Path(__file__).with_name("lease_holder.py")


class OtherHolder(Protocol):
    """A second holder of leases on the same store, in another process where it can be."""

    async def command(self, line: str) -> str:
        """Run one ``lease_holder.py`` command; its answer."""
        ...

    def pause(self) -> None:
        """Stop it (SIGSTOP): no renewal, no write, until ``resume``."""
        ...

    def resume(self) -> None: ...

    def kill(self) -> None:
        """End it without releasing anything (kill -9)."""
        ...

    def close(self) -> None: ...


class ChildHolder:
    """``lease_holder.py`` in a child process."""

    def __init__(self, kind: str, where: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HOLDER_SCRIPT), kind, where],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        assert self._line() == "ready"

    def _line(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    async def command(self, line: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return await asyncio.wait_for(asyncio.to_thread(self._line), 30)

    def pause(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def close(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.kill()
        self.process.wait(10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


class TaskHolder:
    """The same commands run on a store of this process (memory): it does nothing on its
    own, so "paused" is simply not being asked to renew; "killed" forgets its lease."""

    def __init__(self, store: Storage) -> None:
        self.store = store
        self.lease: Lease | None = None

    async def command(self, line: str) -> str:
        words = line.split()
        if words[0] == "acquire":
            self.lease = await self.store.acquire(words[1], ttl=float(words[2]), wait=10)
            return str(self.lease.token)
        if words[0] == "cycle":
            tokens = []
            for _ in range(int(words[2])):
                taken = await self.store.acquire(words[1], ttl=30, wait=30)
                tokens.append(str(taken.token))
                await self.store.release(taken)
            return " ".join(tokens)
        assert self.lease is not None
        try:
            if words[0] == "renew":
                self.lease = await self.store.renew(self.lease, ttl=30)
            elif words[0] == "write":
                await self.store.write(words[1], words[2].encode(), fence=self.lease)
            elif words[0] == "delete":
                await self.store.delete(words[1], fence=self.lease)
            elif words[0] == "release":
                await self.store.release(self.lease)
        except LeaseLostError:
            return "lost"
        except FencedError:
            return "fenced"
        return "ok"

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def kill(self) -> None:
        self.lease = None

    def close(self) -> None:
        pass


@dataclass
class Backend:
    """A storage under test and what the suite needs to know about it."""

    name: str
    storage: Storage
    leave_debris: Callable[[str], None]
    """Leave what a crash between writing a value and making it visible leaves."""
    is_private: Callable[[str], bool]
    """Whether the value at a key is readable by its owner only."""
    other_holder: Callable[[], OtherHolder]
    """A second lease holder (another process where the backend is shared)."""
    shared: bool
    """Whether other processes see the same store (then ``other_holder`` is one)."""
    frees_dead_holders_at_once: bool
    """Whether a holder that dies frees its lease before it expires."""
    close: Callable[[], Awaitable[None]] | None = None
    """What ends the store's use (a connection pool closed), in the test's event loop."""


def _no_debris(key: str) -> None:
    """A backend with transactions leaves nothing behind a failed write."""


def filesystem_backend(root: Path, postgres: Callable[[], PostgresServer]) -> Backend:
    def leave_debris(key: str) -> None:
        # atomic_write's temp file, as left by a crash between write and rename.
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / f".{path.name}.0123456789abcdef.tmp").write_bytes(b"half")

    def is_private(key: str) -> bool:
        return stat.S_IMODE(os.stat(root / key).st_mode) == 0o600

    return Backend(
        "filesystem",
        FilesystemStorage(root),
        leave_debris,
        is_private,
        lambda: ChildHolder("filesystem", str(root)),
        shared=True,
        frees_dead_holders_at_once=True,
    )


def memory_backend(root: Path, postgres: Callable[[], PostgresServer]) -> Backend:
    store = MemoryStorage()
    return Backend(
        "memory",
        store,
        _no_debris,
        lambda key: key in store.private,
        lambda: TaskHolder(store),
        shared=False,
        frees_dead_holders_at_once=False,
    )


def postgresql_backend(root: Path, postgres: Callable[[], PostgresServer]) -> Backend:
    server = postgres()
    database = server.database()
    url = server.url(database)
    store = PostgresStorage(url)

    def is_private(key: str) -> bool:
        """Whether a role granted SELECT on the values (a monitoring role) cannot see it."""
        assert server.execute(f"SELECT 1 FROM certherd_values WHERE key = '{key}'", database)
        server.execute("GRANT SELECT ON certherd_values TO monitor", database)
        seen = server.execute(
            f"SELECT 1 FROM certherd_values WHERE key = '{key}'", database, role="monitor"
        )
        return not seen

    return Backend(
        "postgresql",
        store,
        _no_debris,
        is_private,
        lambda: ChildHolder("postgresql", url),
        shared=True,
        frees_dead_holders_at_once=False,
        close=store.aclose,
    )


def hostfiles_backend(root: Path, postgres: Callable[[], PostgresServer]) -> Backend:
    """PostgreSQL with this host's live files (what ``--storage`` uses)."""
    from certherd.storage.hostfiles import HostFiles

    shared = postgresql_backend(root, postgres)
    assert isinstance(shared.storage, PostgresStorage)
    store = HostFiles(shared.storage, FilesystemStorage(root))
    return Backend(
        "hostfiles",
        store,
        _no_debris,
        shared.is_private,
        shared.other_holder,
        shared=True,
        frees_dead_holders_at_once=False,
        close=store.aclose,
    )


BACKENDS: dict[str, Callable[[Path, Callable[[], PostgresServer]], Backend]] = {
    "filesystem": filesystem_backend,
    "memory": memory_backend,
    "postgresql": postgresql_backend,
    "postgresql+hostfiles": hostfiles_backend,
}
"""Each factory gets a fresh folder and, on demand, the session's PostgreSQL server."""
