"""ACME accounts kept in storage: the key and the URL, so later runs send no newAccount.

An account is named per CA (``default`` unless told otherwise). Its key is written
0600 before the first request that uses it, so a crash never loses an account the CA
already knows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from certherd.acme.client import AcmeClient
from certherd.acme.jws import ExternalAccountBinding
from certherd.acme.messages import Account
from certherd.crypto.keys import PrivateKey, generate_key, load_private_key, private_key_to_pem
from certherd.errors import ConfigError, NotFoundError
from certherd.storage.base import Storage
from certherd.storage.layout import account_json, account_key, account_key_next, ca_id

__all__ = [
    "AccountRecord",
    "CaOptions",
    "load_account",
    "open_client",
    "register",
    "rollover",
    "save_account",
]


@dataclass(frozen=True)
class CaOptions:
    """Which CA to talk to and how: the global CA options of the CLI, as data."""

    directory_url: str
    ca_bundle: str | None = None
    email: str | None = None
    agree_tos: bool = False
    eab: ExternalAccountBinding | None = None
    allow_http: bool = False
    account: str = "default"

    @property
    def ca_id(self) -> str:
        return ca_id(self.directory_url)


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
            f"no account for {options.directory_url} in this config dir: run "
            "`certherd account register --agree-tos` (with the same CA options)"
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
    """Store the key (0600) and the account URL and contact."""
    await storage.write(
        account_key(options.ca_id, options.account), private_key_to_pem(record.key), private=True
    )
    meta = {
        "url": record.url,
        "contact": list(record.contact),
        "directory_url": options.directory_url,
    }
    await storage.write(
        account_json(options.ca_id, options.account),
        json.dumps(meta, indent=2, sort_keys=True).encode() + b"\n",
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
    """Create (or find, for a stored key) the account and store its URL."""
    try:
        record = await load_account(storage, options)
    except NotFoundError:
        record = AccountRecord(key=generate_key("ec256"), url=None)
        await save_account(storage, options, record)  # the key is safe before any request
    client = _client(options, record)
    try:
        contact = [options.email] if options.email else list(record.contact)
        account = await client.register(
            contact=contact, agree_tos=options.agree_tos, eab=options.eab
        )
    except BaseException:
        await client.aclose()
        raise
    await save_account(
        storage, options, AccountRecord(key=record.key, url=account.url, contact=account.contact)
    )
    return client, account


async def open_client(storage: Storage, options: CaOptions) -> AcmeClient:
    """A client for the stored account, registering it first if there is none yet.

    With a stored URL no newAccount request is sent (the protocol minimum per run).
    """
    try:
        record = await load_account(storage, options)
    except NotFoundError:
        record = None
    if record is not None and record.url is not None:
        return _client(options, record)
    if not options.agree_tos:
        raise ConfigError(
            f"no account yet at {options.directory_url}: read the CA's terms of service and "
            "pass --agree-tos (with --email for expiry and problem notices)"
        )
    client, _account = await register(storage, options)
    return client


async def rollover(storage: Storage, options: CaOptions, client: AcmeClient) -> Account:
    """Replace the account key (RFC 8555 §7.3.5) without ever risking the account.

    The new key is written (0600) before the CA is asked, so a crash or a full disk
    after the CA agreed still leaves the key that now controls the account on disk.
    """
    new_key = generate_key("ec256")
    pending = account_key_next(options.ca_id, options.account)
    await storage.write(pending, private_key_to_pem(new_key), private=True)
    account = await client.change_key(new_key)
    await save_account(storage, options, AccountRecord(new_key, account.url, account.contact))
    await storage.delete(pending)
    return account
