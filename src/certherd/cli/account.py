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
    ca = build_ca(params)
    _show(ctx, "account", _document(ca, _call(ctx, "register_account", ca)))


def _call(ctx: Context, method: str, ca: Any) -> Any:
    """One account call of the entry point on this config dir."""

    async def work() -> Any:
        async with ctx.certherd() as certherd:
            return await getattr(certherd, method)(ca)

    return run_async(work())


@account.command("show")
@ca_options
@pass_context
def show(ctx: Context, /, **params: Any) -> None:
    """Fetch the account from the CA."""
    ca = build_ca(params)
    _show(ctx, "account", _document(ca, _call(ctx, "fetch_account", ca)))


@account.command("update")
@ca_options
@pass_context
def update(ctx: Context, /, **params: Any) -> None:
    """Replace the account's contacts with --email."""
    from certherd.errors import ConfigError

    ca = build_ca(params)
    if not ca.email:
        raise ConfigError("account update needs --email ADDRESS")
    _show(ctx, "account updated", _document(ca, _call(ctx, "update_account", ca)))


@account.command("rollover")
@ca_options
@pass_context
def rollover(ctx: Context, /, **params: Any) -> None:
    """Replace the account key (RFC 8555 §7.3.5); run again after a failure, it finishes
    the interrupted rollover with the key the CA accepted."""
    ca = build_ca(params)
    result = _call(ctx, "rollover_account", ca)
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
    _show(ctx, "account deactivated", _document(ca, _call(ctx, "deactivate_account", ca)))
