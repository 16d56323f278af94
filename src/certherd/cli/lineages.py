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
    from certherd.cli.progress import Progress
    from certherd.cli.render import outcome_document, print_outcomes

    with Progress(ctx) as progress:
        async with ctx.certherd(concurrency=concurrency, on_event=progress) as certherd:
            outcomes = await certherd.renew(names, force=force, dry_run=dry_run)
    ctx.emit(
        lambda: outcome_document(outcomes, ctx.live_root, ctx.words),
        lambda: print_outcomes(ctx, outcomes),
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
        ctx.say(f"no lineages in {ctx.where}: `certherd issue -d NAME ...` creates one")
        return
    print_lineages(ctx, documents)


async def _documents(ctx: Context, only: str | None) -> list[dict[str, Any]]:
    from certherd.cli.render import (
        damaged_document,
        lease_document,
        lineage_document,
        schedule_document,
    )

    async with ctx.certherd() as certherd:
        if only:
            settings, state = await certherd.load(only)
            documents = [lineage_document(settings, state, ctx.live_root)]
        else:
            documents = []
            for record in await certherd.records():
                if record.settings is not None and record.state is not None:
                    documents.append(lineage_document(record.settings, record.state, ctx.live_root))
                else:
                    # One damaged lineage is a row that says so, never the end of the list.
                    reason = record.error or "cannot be read"
                    documents.append(damaged_document(record.name, reason, ctx.live_root))
                    click.echo(f"certherd: {record.name}: {reason}", err=True)
        if ctx.storage is not None:  # a shared storage: who works on each lineage now
            held = await certherd.leases()
            schedule = await certherd.schedule()
            for document in documents:
                document["lease"] = lease_document(held.get(document["name"]))
                document.update(schedule_document(schedule.get(document["name"])))
        return documents


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

    async def work() -> Any:
        async with ctx.certherd() as certherd:
            return await certherd.revoke(name, RevocationReason.parse(reason), delete=delete_after)

    revocation = run_async(work())
    state, removed = revocation.state, revocation.deleted_files
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


@click.command("delete")
@click.argument("name", shell_complete=complete_lineages)
@pass_context
def delete(ctx: Context, name: str) -> None:
    """Delete a lineage and all its files (revoke it first if it leaked)."""

    async def work() -> int:
        async with ctx.certherd() as certherd:
            deleted: int = await certherd.delete(name)
            return deleted

    removed = run_async(work())
    ctx.emit(
        {"lineage": name, "deleted": True, "files": removed},
        lambda: ctx.result(f"{name}: deleted ({removed} files)"),
    )
