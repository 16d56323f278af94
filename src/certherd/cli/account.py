"""``certherd account register | show | update | rollover | deactivate``."""

from __future__ import annotations

from typing import Any

import click

from certherd.cli.common import Context, build_ca, ca_options, pass_context, run_async

__all__ = ["account"]


@click.group("account")
def account() -> None:
    """Manage the ACME account for a CA (stored in the config dir)."""


def _document(ca: Any, acct: Any) -> dict[str, Any]:
    return {
        "ca": ca.directory_url,
        "account": ca.account,
        "url": acct.url,
        "status": str(acct.status),
        "contact": list(acct.contact),
    }


async def _with_client(ctx: Context, ca: Any, work: Any) -> Any:
    from certherd.manager.accounts import load_account, open_client

    storage = ctx.storage()
    await _account_needed(load_account(storage, ca))
    client = await open_client(storage, ca)
    try:
        return await work(client, storage)
    finally:
        await client.aclose()


async def _account_needed(work: Any) -> Any:
    """No account registered here for this CA is a usage error (exit 2), as an unknown
    lineage is (README, exit codes); the message says to register one."""
    from certherd.errors import ConfigError, NotFoundError

    try:
        return await work
    except NotFoundError as exc:
        raise ConfigError(str(exc)) from None


def _show(ctx: Context, title: str, document: dict[str, Any]) -> None:
    def human() -> None:
        ctx.result(f"{title}: {document['url']} ({document['status']})")
        if document["contact"]:
            ctx.result("  contact: " + ", ".join(document["contact"]))

    ctx.emit(document, human)


@account.command("register")
@ca_options
@pass_context
def register(ctx: Context, /, **params: Any) -> None:
    """Create the account (or find the existing one for the stored key) and store its URL."""
    from certherd.manager.accounts import register as do_register

    ca = build_ca(params)

    async def work() -> Any:
        client, acct = await do_register(ctx.storage(), ca)
        await client.aclose()
        return acct

    _show(ctx, "account", _document(ca, run_async(work())))


@account.command("show")
@ca_options
@pass_context
def show(ctx: Context, /, **params: Any) -> None:
    """Fetch the account from the CA."""
    ca = build_ca(params)

    async def work(client: Any, storage: Any) -> Any:
        return await client.fetch_account()

    _show(ctx, "account", _document(ca, run_async(_with_client(ctx, ca, work))))


@account.command("update")
@ca_options
@pass_context
def update(ctx: Context, /, **params: Any) -> None:
    """Replace the account's contacts with --email."""
    from certherd.errors import ConfigError
    from certherd.manager.accounts import AccountRecord, save_account

    ca = build_ca(params)
    if not ca.email:
        raise ConfigError("account update needs --email ADDRESS")

    async def work(client: Any, storage: Any) -> Any:
        acct = await client.update_account([ca.email])
        await save_account(storage, ca, AccountRecord(client.account_key, acct.url, acct.contact))
        return acct

    _show(ctx, "account updated", _document(ca, run_async(_with_client(ctx, ca, work))))


@account.command("rollover")
@ca_options
@pass_context
def rollover(ctx: Context, /, **params: Any) -> None:
    """Replace the account key (RFC 8555 §7.3.5); run again after a failure, it finishes
    the interrupted rollover with the key the CA accepted."""
    from certherd.manager.accounts import rollover as do_rollover

    ca = build_ca(params)
    result = run_async(_account_needed(do_rollover(ctx.storage(), ca)))
    title = "account key replaced"
    if result.resumed:
        title += " (the CA had accepted the key of the interrupted rollover: now stored)"
    _show(ctx, title, {**_document(ca, result.account), "resumed": result.resumed})


@account.command("deactivate")
@ca_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def deactivate(ctx: Context, /, yes: bool, **params: Any) -> None:
    """Deactivate the account at the CA (it can never be used again)."""
    ca = build_ca(params)
    if not yes:
        click.confirm(f"Deactivate the account at {ca.directory_url} for good?", abort=True)

    async def work(client: Any, storage: Any) -> Any:
        return await client.deactivate_account()

    _show(ctx, "account deactivated", _document(ca, run_async(_with_client(ctx, ca, work))))
