"""ACME accounts kept in storage: the key and the URL, so later runs send no newAccount.

An account is named per CA (``default`` unless told otherwise). Its key is written
0600 before the first request that uses it, so a crash never loses an account the CA
already knows.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from certherd.acme.client import AcmeClient
from certherd.acme.jws import ExternalAccountBinding
from certherd.acme.messages import Account
from certherd.crypto.keys import PrivateKey, generate_key, load_private_key, private_key_to_pem
from certherd.errors import (
    AccountDoesNotExistError,
    ConfigError,
    NotFoundError,
    ProblemError,
    StorageError,
)
from certherd.key_types import KeyType
from certherd.manager.hygiene import STARTED
from certherd.storage.base import Lease, Leftovers, Storage, has_value
from certherd.storage.layout import (
    account_json,
    account_key,
    account_key_next,
    account_lock,
    ca_id,
)
from certherd.storage.leases import held_lease, holding

if TYPE_CHECKING:
    from certherd.settings import CaSettings, LineageSettings

__all__ = [
    "AccountRecord",
    "CaOptions",
    "Rollover",
    "ca_options",
    "ca_options_all",
    "finish_rollover",
    "load_account",
    "open_client",
    "register",
    "rollover",
    "save_account",
]

ACCOUNT_KEY_TYPE = KeyType.EC256
"""The type of a new account key (and of one made by a key rollover): its JWS algorithm,
ES256, is the one every ACME server MUST implement (RFC 8555 §6.2)."""


@dataclass(frozen=True)
class CaOptions:
    """Which CA to talk to, with which account, and how: the CA and account part of a
    certificate's settings with its secrets read (:func:`ca_options`), or the CA flags
    of the ``account`` commands."""

    directory_url: str
    ca_bundle: str | None = None
    email: str | None = None
    agree_tos: bool = False
    eab: ExternalAccountBinding | None = None
    allow_http: bool = False
    account: str = "default"
    read_eab: Callable[[], ExternalAccountBinding] | None = field(
        default=None, compare=False, repr=False
    )
    """Reads the EAB when an account is created (the key's file may be gone once it
    has been: a CA accepts an EAB key once), for ``eab`` not given."""

    @property
    def ca_id(self) -> str:
        return ca_id(self.directory_url)

    def binding(self) -> ExternalAccountBinding | None:
        """The External Account Binding to create the account with, if any."""
        if self.eab is None and self.read_eab is not None:
            return self.read_eab()
        return self.eab


def ca_options(
    settings: LineageSettings,
    *,
    ca: CaSettings | None = None,
    environ: Mapping[str, str] | None = None,
    configured: LineageSettings | None = None,
) -> CaOptions:
    """How to reach ``ca`` (one of ``settings.cas``; default the first) with its
    account: the one place a certificate's settings become :class:`CaOptions`
    (:func:`ca_options_all` gives them for every CA of the list, in order).

    The EAB HMAC key is read from where it comes from: ``environ`` (default: this
    process's environment), its file, or ``configured`` (the same certificate as
    certherd.toml gives it now, for a key written in the file: the CA of the same
    directory there), and only when an account is created: a renewal with the account
    stored needs no EAB key. Reading raises ConfigError naming the setting and its
    source, never the key."""
    ca = ca if ca is not None else settings.cas[0]
    read_eab = None
    if ca.eab is not None:
        eab = ca.eab
        twins = configured.cas if configured is not None else ()
        twin = next((c.eab for c in twins if c.directory_url == ca.directory_url), None)
        env = os.environ if environ is None else environ

        def read_eab() -> ExternalAccountBinding:
            return eab.binding(env, twin)

    return CaOptions(
        directory_url=ca.directory_url,
        ca_bundle=ca.ca_bundle,
        email=ca.email,
        agree_tos=ca.agree_tos,
        allow_http=ca.allow_http,
        account=ca.account,
        read_eab=read_eab,
    )


def ca_options_all(
    settings: LineageSettings,
    *,
    environ: Mapping[str, str] | None = None,
    configured: LineageSettings | None = None,
) -> tuple[CaOptions, ...]:
    """:func:`ca_options` of every CA of ``settings``, in the order they are tried."""
    return tuple(
        ca_options(settings, ca=ca, environ=environ, configured=configured) for ca in settings.cas
    )


@dataclass(frozen=True)
class AccountRecord:
    """A stored account: its key, and its URL once the CA has given one."""

    key: PrivateKey
    url: str | None
    contact: tuple[str, ...] = ()


async def load_account(storage: Storage, options: CaOptions) -> AccountRecord:
    """The stored account for ``options``; NotFoundError if there is none."""
    try:
        key_raw = await storage.read(account_key(options.ca_id, options.account))
    except NotFoundError:
        raise NotFoundError(
            f"no account for {options.directory_url} in this storage: register one with "
            "{agree_tos} and the same CA settings (`certherd account register`)",
            settings=("agree_tos",),
        ) from None
    try:
        meta: dict[str, Any] = json.loads(
            await storage.read(account_json(options.ca_id, options.account))
        )
    except NotFoundError:
        meta = {}
    return AccountRecord(
        key=load_private_key(key_raw),
        url=meta.get("url"),
        contact=tuple(meta.get("contact", ())),
    )


async def save_account(storage: Storage, options: CaOptions, record: AccountRecord) -> None:
    """Store the key (0600) and the account URL and contact; the writes carry the
    account's lease when this task holds it (a rollover)."""
    fence = held_lease(account_lock(options.ca_id, options.account))
    await storage.write(
        account_key(options.ca_id, options.account),
        private_key_to_pem(record.key),
        private=True,
        fence=fence,
    )
    meta = {
        "url": record.url,
        "contact": list(record.contact),
        "directory_url": options.directory_url,
    }
    await storage.write(
        account_json(options.ca_id, options.account),
        json.dumps(meta, indent=2, sort_keys=True).encode() + b"\n",
        fence=fence,
    )


def _client(options: CaOptions, record: AccountRecord) -> AcmeClient:
    return AcmeClient(
        options.directory_url,
        record.key,
        account_url=record.url,
        ca_bundle=options.ca_bundle,
        allow_http=options.allow_http,
    )


async def register(storage: Storage, options: CaOptions) -> tuple[AcmeClient, Account]:
    """Create (or find, for a stored key) the account and store its URL.

    Under the account's lease: processes that share the storage (fleet nodes started
    at once, a cron run beside a manual one) never each create an account, leaving
    one's key stored beside another's URL. A new key is written (0600) only once the
    CA's directory answered, and before the newAccount request, so a crash never loses
    an account the CA already knows. If the CA then refuses with a problem document, it
    created no account: the new key is removed again, so a failed attempt leaves no
    stub account behind.
    """
    async with _registering(storage, options):
        return await _register(storage, options)


@contextlib.asynccontextmanager
async def _registering(storage: Storage, options: CaOptions) -> AsyncIterator[Lease]:
    """Hold the account's lease while it is registered; in a folder, its lock file is
    removed afterwards (a registration, failed or not, leaves no lock behind)."""
    name = account_lock(options.ca_id, options.account)
    async with holding(storage, name) as lease:
        try:
            yield lease
        finally:
            if isinstance(storage, Leftovers):
                with contextlib.suppress(StorageError):
                    await storage.forget_lock(name, fence=lease)


async def _register(storage: Storage, options: CaOptions) -> tuple[AcmeClient, Account]:
    """:func:`register`, its account's lease held."""
    fence = held_lease(account_lock(options.ca_id, options.account))
    try:
        record = await load_account(storage, options)
        fresh = False
    except NotFoundError:
        record = AccountRecord(key=generate_key(ACCOUNT_KEY_TYPE), url=None)
        fresh = True
    client = _client(options, record)
    try:
        await client.directory()  # an unreachable or wrong server fails here: nothing written
        if fresh:
            await storage.write(
                account_key(options.ca_id, options.account),
                private_key_to_pem(record.key),
                private=True,
                fence=fence,
            )
        contact = [options.email] if options.email else list(record.contact)
        try:
            account = await client.register(
                contact=contact, agree_tos=options.agree_tos, eab=options.binding()
            )
        except (ProblemError, ConfigError):
            if fresh:  # refused before or by the CA: no account holds this key
                await storage.delete(account_key(options.ca_id, options.account), fence=fence)
            raise
    except BaseException:
        await client.aclose()
        raise
    await save_account(
        storage, options, AccountRecord(key=record.key, url=account.url, contact=account.contact)
    )
    return client, account


async def open_client(storage: Storage, options: CaOptions) -> AcmeClient:
    """A client for the stored account, registering it first if there is none yet.

    With a stored URL no newAccount request is sent (the protocol minimum per run),
    unless an interrupted key rollover left a pending key: then the CA is asked which key
    it knows, and that one is used (see :func:`finish_rollover`).
    """
    if await has_value(storage, account_key_next(options.ca_id, options.account)):
        async with holding(storage, account_lock(options.ca_id, options.account)):
            await finish_rollover(storage, options)
    record = await _registered(storage, options)
    if record is not None:
        return _client(options, record)
    if not options.agree_tos:
        raise ConfigError(
            f"no account yet at {options.directory_url}: read the CA's terms of service and "
            "set {agree_tos}, and {email} for expiry and problem notices",
            settings=("agree_tos", "email"),
        )
    async with _registering(storage, options):
        # Another process sharing the storage may have registered while this one waited.
        record = await _registered(storage, options)
        if record is not None:
            return _client(options, record)
        client, _account = await _register(storage, options)
    return client


async def _registered(storage: Storage, options: CaOptions) -> AccountRecord | None:
    """The stored account if the CA has given it a URL; else None."""
    try:
        record = await load_account(storage, options)
    except NotFoundError:
        return None
    return record if record.url is not None else None


@dataclass(frozen=True)
class Rollover:
    """The result of :func:`rollover`: the account, and whether an interrupted rollover's
    key had already been accepted by the CA (then that key was kept, no new one made)."""

    account: Account
    resumed: bool = False


async def _known_to_ca(options: CaOptions, key: PrivateKey) -> Account | None:
    """RFC 8555 §7.3.1: the account the CA holds for ``key`` (``onlyReturnExisting``), or
    None when the CA answers accountDoesNotExist."""
    async with _client(options, AccountRecord(key=key, url=None)) as client:
        try:
            return await client.find_account()
        except AccountDoesNotExistError:
            return None


async def finish_rollover(storage: Storage, options: CaOptions) -> Account | None:
    """Settle a key rollover that was interrupted (call with the account lock held).

    A rollover writes the new key to ``key-next.pem`` before it asks the CA. If it stopped
    after that, the CA holds either the old key (it was never asked, or refused) or the
    new one (it agreed, and the run died before the key was stored as the account key).
    The CA is asked with each key (``onlyReturnExisting``, §7.3.1); when it knows the new
    one, that key becomes the account key and the account is returned. When it still
    knows the old one, nothing changes and None is returned (the pending key is kept for
    the next rollover). When it knows neither, both files stay and StorageError says so.
    """
    pending_path = account_key_next(options.ca_id, options.account)
    if isinstance(storage, Leftovers):  # temporary files of a run killed mid-write
        for key in (account_key, account_key_next, account_json):
            await storage.clear_temporary(key(options.ca_id, options.account), before=STARTED)
    try:
        pending = load_private_key(await storage.read(pending_path))
    except NotFoundError:
        return None
    record = await load_account(storage, options)
    accepted = await _known_to_ca(options, pending)
    if accepted is not None:
        if record.url is not None and accepted.url != record.url:
            raise StorageError(
                f"the pending key {pending_path} belongs to another account at "
                f"{options.directory_url} ({accepted.url}, not {record.url}): "
                "move it aside by hand and run the rollover again"
            )
        contact = accepted.contact or record.contact
        await save_account(storage, options, AccountRecord(pending, accepted.url, contact))
        lock = account_lock(options.ca_id, options.account)
        await storage.delete(pending_path, fence=held_lease(lock))
        return accepted
    if await _known_to_ca(options, record.key) is None:
        raise StorageError(
            f"the CA at {options.directory_url} knows neither the account key nor the "
            f"pending key {pending_path}: both are kept; restore a backup of the account "
            "key or register a new account"
        )
    return None


async def rollover(storage: Storage, options: CaOptions) -> Rollover:
    """Replace the account key (RFC 8555 §7.3.5) without ever risking the account.

    The new key is written (0600) to ``key-next.pem`` before the CA is asked, so a crash
    or a full disk after the CA agreed still leaves the key that now controls the account
    on disk. A pending key is never overwritten: a rollover run again first settles the
    interrupted one (:func:`finish_rollover`); if the CA had agreed, that is the result,
    else the same pending key is offered to the CA.
    """
    async with holding(storage, account_lock(options.ca_id, options.account)) as lease:
        record = await load_account(storage, options)  # NotFoundError names the account
        pending_path = account_key_next(options.ca_id, options.account)
        settled = await finish_rollover(storage, options)
        if settled is not None:
            return Rollover(settled, resumed=True)
        try:
            new_key = load_private_key(await storage.read(pending_path))
        except NotFoundError:
            new_key = generate_key(ACCOUNT_KEY_TYPE)
            pem = private_key_to_pem(new_key)
            await storage.write(pending_path, pem, private=True, fence=lease)
        async with _client(options, record) as client:
            if record.url is None:
                await client.find_account()  # §7.3.1: the URL the stored key controls
            account = await client.change_key(new_key)
        await save_account(
            storage, options, AccountRecord(new_key, account.url, account.contact or record.contact)
        )
        await storage.delete(pending_path, fence=lease)
        return Rollover(account)
