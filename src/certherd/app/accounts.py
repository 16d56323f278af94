"""The ``certherd account`` calls of :class:`~certherd.app.entry.Certherd`: the ACME
account of one CA (and account name) in its storage."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from certherd.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    from certherd.acme.client import AcmeClient
    from certherd.acme.messages import Account
    from certherd.manager.accounts import CaOptions, Rollover
    from certherd.storage.base import Storage

__all__ = ["AccountCalls"]


class AccountCalls:
    """Register, fetch, update, roll over and deactivate the account of ``ca`` kept in
    ``storage``; an account named that is not stored is a ConfigError."""

    storage: Storage

    async def register_account(self, ca: CaOptions) -> Account:
        """Create the account of ``ca`` (or find the one of the stored key) and store it."""
        from certherd.manager.accounts import register

        client, account = await register(self.storage, ca)
        await client.aclose()
        return account

    async def fetch_account(self, ca: CaOptions) -> Account:
        """The stored account of ``ca`` as the CA has it now."""
        return await self._with_account(ca, lambda client: client.fetch_account())

    async def update_account(self, ca: CaOptions) -> Account:
        """Replace the account's contacts with ``ca.email``; the stored record follows."""
        from certherd.manager.accounts import AccountRecord, save_account

        if not ca.email:
            raise ConfigError("updating an account needs an email address")

        async def work(client: AcmeClient) -> Account:
            account = await client.update_account([ca.email or ""])
            record = AccountRecord(client.account_key, account.url, account.contact)
            await save_account(self.storage, ca, record)
            return account

        return await self._with_account(ca, work)

    async def rollover_account(self, ca: CaOptions) -> Rollover:
        """Replace the account key (RFC 8555 §7.3.5), or finish an interrupted rollover."""
        from certherd.manager.accounts import rollover

        try:
            return await rollover(self.storage, ca)
        except NotFoundError as exc:
            raise ConfigError.saying(exc) from None

    async def deactivate_account(self, ca: CaOptions) -> Account:
        """Deactivate the account at the CA: it can never be used again."""
        return await self._with_account(ca, lambda client: client.deactivate_account())

    async def _with_account(
        self, ca: CaOptions, work: Callable[[AcmeClient], Awaitable[Account]]
    ) -> Account:
        """``work`` with a client of the stored account; none stored is a ConfigError."""
        from certherd.manager.accounts import load_account, open_client

        try:
            await load_account(self.storage, ca)
        except NotFoundError as exc:
            raise ConfigError.saying(exc) from None
        client = await open_client(self.storage, ca)
        try:
            return await work(client)
        finally:
            await client.aclose()
