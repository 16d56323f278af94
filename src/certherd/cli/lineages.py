"""``certherd renew | list | show | revoke | delete``: working on stored lineages."""

from __future__ import annotations

from typing import Any

import click

from certherd.cli.common import Context, concurrency_option, exit_for, pass_context, run_async
from certherd.cli.completion import complete_lineages

__all__ = ["delete", "list_lineages", "renew", "revoke", "show"]

REASONS = [
    "unspecified",
    "keyCompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
]


@click.command("renew")
@click.argument("names", nargs=-1, metavar="[NAME]...", shell_complete=complete_lineages)
@click.option("--force", is_flag=True, help="Renew even if not due.")
@click.option("--dry-run", is_flag=True, help="Say what is due and why; change nothing.")
@concurrency_option
@pass_context
def renew(
    ctx: Context, names: tuple[str, ...], force: bool, dry_run: bool, concurrency: int
) -> None:
    """Renew the lineages that are due (all, or those named)."""
    outcomes = run_async(_renew(ctx, names, force, dry_run, concurrency))
    exit_for(any(o.failed or o.hook_errors for o in outcomes))


async def _renew(
    ctx: Context, names: tuple[str, ...], force: bool, dry_run: bool, concurrency: int
) -> Any:
    import datetime as dt

    from certherd.cli.render import outcome_document, print_outcomes
    from certherd.config import CONFIG_FILE, load_config_file
    from certherd.manager.index import plan_renewal

    storage = ctx.storage()
    config_path = ctx.config_dir / CONFIG_FILE
    config = load_config_file(config_path) if config_path.exists() else None
    if config is not None:
        from certherd.manager.apply import sync_settings

        ctx.warn(config.warnings)
        await sync_settings(storage, config)
    if not dry_run:  # what runs killed mid-work left (cheap: one small folder listed)
        from certherd.manager.hygiene import clear_interrupted

        for name, removed in (await clear_interrupted(storage)).items():
            if ctx.verbose:
                ctx.say(f"{name}: removed what an interrupted run left: {', '.join(removed)}")
    # The index answers "nothing due" without loading the ACME client at all.
    plan = await plan_renewal(storage, names or None, force=force, now=dt.datetime.now(dt.UTC))
    _check_known(names, plan.index.names)
    if not plan.to_check:
        if not dry_run:  # a dry run writes nothing, not even the index (a cache)
            await plan.index.save()
        outcomes = plan.not_due
    else:
        from certherd.cli.progress import tracked_manager

        manager, progress = tracked_manager(ctx, storage, concurrency, total=len(plan.to_check))
        if config is not None:
            from certherd.manager.apply import ca_options, settings_for

            manager.known_cas.update(ca_options(config))  # the file's email, terms, EAB
            manager.configured.update((e.lineage, settings_for(e)) for e in config.certificates)
        try:
            with progress:
                outcomes = await manager.renew(names or None, force=force, dry_run=dry_run)
        finally:
            await manager.aclose()
    ctx.emit(
        lambda: outcome_document(outcomes, ctx.config_dir), lambda: print_outcomes(ctx, outcomes)
    )
    ctx.report_failures(outcomes)
    return outcomes


@click.command("list")
@pass_context
def list_lineages(ctx: Context) -> None:
    """Every lineage: names, expiry, next renewal, last error."""
    documents = run_async(_documents(ctx, None))
    ctx.emit({"lineages": documents}, lambda: _print_list(ctx, documents))


def _print_list(ctx: Context, documents: list[dict[str, Any]]) -> None:
    from certherd.cli.render import print_lineages

    if not documents:
        ctx.say(f"no lineages in {ctx.config_dir}: `certherd issue -d NAME ...` creates one")
        return
    print_lineages(ctx, documents)


async def _documents(ctx: Context, only: str | None) -> list[dict[str, Any]]:
    from certherd.cli.render import damaged_document, lineage_document
    from certherd.errors import CertherdError, NotFoundError, safe_text
    from certherd.manager.service import Manager

    manager = Manager(ctx.storage())
    if only:
        settings, state = await _load(manager, only)
        return [lineage_document(settings, state, ctx.config_dir)]
    documents = []
    for name in await manager.lineages():
        try:
            settings, state = await manager.load(name)
        except NotFoundError:
            continue  # deleted while we listed
        except CertherdError as exc:
            # One damaged lineage is a row that says so, never the end of the whole list.
            reason = safe_text(exc, 500)
            documents.append(damaged_document(name, reason, ctx.config_dir))
            click.echo(f"certherd: {name}: {reason}", err=True)
            continue
        documents.append(lineage_document(settings, state, ctx.config_dir))
    return documents


def _check_known(names: tuple[str, ...], known: list[str]) -> None:
    """A lineage named on the command line that does not exist is a usage error (exit 2),
    as in ``show``, ``revoke`` and ``delete``; nothing is renewed then."""
    from certherd.errors import ConfigError

    unknown = sorted(set(names).difference(known))
    if unknown:
        listed = ", ".join(repr(name) for name in unknown)
        raise ConfigError(f"no lineage named {listed}: see `certherd list`")


async def _load(manager: Any, name: str) -> Any:
    """A lineage named on the command line; a wrong name is a usage error (exit 2)."""
    from certherd.errors import ConfigError, NotFoundError

    try:
        return await manager.load(name)
    except NotFoundError as exc:
        raise ConfigError(str(exc)) from None


@click.command("show")
@click.argument("name", shell_complete=complete_lineages)
@pass_context
def show(ctx: Context, name: str) -> None:
    """Everything about one lineage."""
    document = run_async(_documents(ctx, name))[0]

    def human() -> None:
        from certherd.cli.render import print_table, show_rows

        print_table(ctx, ("field", "value"), show_rows(document))

    ctx.emit(document, human)


@click.command("revoke")
@click.argument("name", shell_complete=complete_lineages)
@click.option(
    "--reason",
    type=click.Choice(REASONS),
    default="unspecified",
    show_default=True,
    help="Why, as RFC 5280 §5.3.1 codes it: keyCompromise if the private key leaked.",
)
@click.option(
    "--delete",
    "delete_after",
    is_flag=True,
    help="Then delete the lineage and its files; without it, the next renew replaces "
    "the revoked certificate.",
)
@pass_context
def revoke(ctx: Context, name: str, reason: str, delete_after: bool) -> None:
    """Revoke a lineage's live certificate; the next renew replaces it (or --delete)."""
    from certherd.acme.client import RevocationReason

    state, removed = run_async(_revoke(ctx, name, RevocationReason.parse(reason), delete_after))
    document: dict[str, Any] = {
        "lineage": name,
        "revoked": True,
        "serial": state.serial,
        "reason": reason,
        "deleted": removed is not None,
    }
    if removed is not None:
        document["files"] = removed
    after = (
        f"lineage deleted ({removed} files)"
        if removed is not None
        else "the next `certherd renew` replaces it"
    )
    ctx.emit(
        document,
        lambda: ctx.result(f"{name}: certificate {state.serial} revoked ({reason}); {after}"),
    )


async def _revoke(ctx: Context, name: str, reason: Any, delete_after: bool) -> Any:
    from certherd.manager.service import Manager

    manager = Manager(ctx.storage())
    try:
        await _load(manager, name)
        state = await manager.revoke(name, reason)
        removed = await manager.delete(name) if delete_after else None
        return state, removed
    finally:
        await manager.aclose()


@click.command("delete")
@click.argument("name", shell_complete=complete_lineages)
@pass_context
def delete(ctx: Context, name: str) -> None:
    """Delete a lineage and all its files (revoke it first if it leaked)."""
    from certherd.manager.service import Manager

    async def work() -> int:
        from certherd.storage.layout import renewal_settings

        manager = Manager(ctx.storage())
        if not await manager.storage.exists(renewal_settings(name)):  # a damaged one goes too
            await _load(manager, name)  # a usage error for an unknown name
        return await manager.delete(name)

    removed = run_async(work())
    ctx.emit(
        {"lineage": name, "deleted": True, "files": removed},
        lambda: ctx.result(f"{name}: deleted ({removed} files)"),
    )
