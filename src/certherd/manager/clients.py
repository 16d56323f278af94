"""The pool of ACME clients a manager talks to: one per CA and account.

One client means one connection pool, one directory fetch and one nonce supply per CA
and account, however many lineages use it concurrently. Clients are opened on first use
by a factory (by default :func:`~certherd.manager.accounts.open_client`, which reads or
registers the stored account) and all closed by :meth:`ClientPool.aclose`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from certherd.acme.client import AcmeClient
from certherd.manager.accounts import CaOptions, open_client
from certherd.storage.base import Storage

__all__ = ["ClientFactory", "ClientPool"]

ClientFactory = Callable[[Storage, CaOptions], Awaitable[AcmeClient]]
"""Opens the client of a CA and account from storage (``open_client`` by default)."""


class ClientPool:
    """One shared :class:`AcmeClient` per (directory URL, account name).

    Safe for concurrent tasks on one event loop: tasks asking for the same CA and account
    at once wait for the one that opens it, and get the same client. A factory that fails
    leaves nothing behind: the next request tries again.
    """

    def __init__(self, storage: Storage, factory: ClientFactory | None = None) -> None:
        self.storage = storage
        self._factory = factory or open_client
        self._clients: dict[tuple[str, str], AcmeClient] = {}
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        """How many clients are open."""
        return len(self._clients)

    async def client(self, ca: CaOptions) -> AcmeClient:
        """The client of ``ca``'s directory and account, opened on first use."""
        key = (ca.directory_url, ca.account)
        async with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = await self._factory(self.storage, ca)
                self._clients[key] = client
            return client

    async def aclose(self) -> None:
        """Close every client opened so far; the pool can be used again afterwards."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
