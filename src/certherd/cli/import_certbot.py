"""``certherd import-certbot [DIR]``: adopt the lineages and account of a Certbot setup."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from certherd.cli.common import Context, exit_for, pass_context, run_async

__all__ = ["import_certbot"]


@click.command("import-certbot")
@click.argument(
    "directory",
    required=False,
    default="/etc/letsencrypt",
    metavar="[DIR]",
    type=click.Path(file_okay=False, path_type=Path),
)
@click.option(
    "--replace",
    is_flag=True,
    help="Import lineages certherd already has again, dropping certherd's own versions.",
)
@click.option("--dry-run", is_flag=True, help="Read and report everything; write nothing.")
@click.option(
    "--ca-bundle",
    metavar="PEM",
    envvar="CERTHERD_CA_BUNDLE",
    type=click.Path(dir_okay=False, exists=True),
    help="Trust these roots for the CA's HTTPS when renewing (private CAs); saved in "
    "each imported lineage. Env CERTHERD_CA_BUNDLE.",
)
@pass_context
def import_certbot(
    ctx: Context, directory: Path, replace: bool, dry_run: bool, ca_bundle: str | None
) -> None:
    """Adopt a Certbot configuration (default /etc/letsencrypt): its certificates (every
    version), renewal settings, hooks and ACME account. Certbot's files are only read."""

    async def work() -> Any:
        async with ctx.certherd() as certherd:
            return await certherd.import_certbot(
                directory,
                ca_bundle=str(Path(ca_bundle).resolve()) if ca_bundle else None,
                replace=replace,
                dry_run=dry_run,
            )

    results = run_async(work())
    document = {
        "certbot_dir": str(directory),
        "dry_run": dry_run,
        "lineages": [{**r.to_json(), "reason": ctx.words(r.reason) or None} for r in results],
        **{
            status: sum(1 for r in results if r.status == status)
            for status in ("imported", "would-import", "skipped", "failed")
        },
    }
    ctx.emit(document, lambda: _print(ctx, directory, results))
    if ctx.quiet:
        for result in results:
            if result.failed:
                reason = ctx.words(result.reason)
                click.echo(f"certherd: {result.lineage}: import failed: {reason}", err=True)
    exit_for(any(r.failed for r in results))


def _print(ctx: Context, directory: Path, results: list[Any]) -> None:
    from certherd.cli.render import print_table
    from certherd.errors import safe_text

    if not results:
        ctx.say(f"no lineages in {directory}/renewal")
        return
    rows = []
    for r in results:
        names = ", ".join(r.settings.names) if r.settings else ""
        if r.reason:
            notes = ctx.words(r.reason)
        else:
            solvers = ", ".join(s.kind for s in r.settings.solvers) if r.settings else ""
            notes = f"versions {', '.join(map(str, r.versions))} (live {r.live_version}); {solvers}"
        rows.append((r.lineage, r.status, names, notes))
    print_table(ctx, ("lineage", "result", "names", "notes"), rows, status_column=1)
    for r in results:
        for warning in r.warnings:
            click.echo(f"! {safe_text(r.lineage)}: {safe_text(warning, 1000)}", err=True)
