"""``certherd apply``: make storage match certherd.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from certherd.cli.common import Context, concurrency_option, exit_for, pass_context, run_async

__all__ = ["apply"]


@click.command("apply")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The config file (default: certherd.toml in the config dir).",
)
@click.option(
    "--defer",
    is_flag=True,
    help="Only store what the file wants in --storage, for the fleet's nodes "
    "(run --node) to obtain; order nothing here.",
)
@concurrency_option
@pass_context
def apply(ctx: Context, config_path: Path | None, defer: bool, concurrency: int) -> None:
    """Obtain what certherd.toml lists and is missing or changed; leave the rest alone."""
    outcomes = run_async(_apply(ctx, config_path, concurrency, defer))
    exit_for(any(o.failed or o.hook_errors for o in outcomes))


async def _apply(
    ctx: Context, config_path: Path | None, concurrency: int, defer: bool = False
) -> Any:
    from certherd.cli.progress import Progress
    from certherd.cli.render import outcome_document, print_outcomes
    from certherd.config_dir import CONFIG_FILE

    if config_path is None and ctx.storage is not None:  # the file stays on this host
        config_path = ctx.config_dir / CONFIG_FILE

    with Progress(ctx) as progress:
        async with ctx.certherd(concurrency=concurrency, on_event=progress) as certherd:
            outcomes = await certherd.apply(config_path, defer=defer)
    ctx.emit(
        lambda: outcome_document(outcomes, ctx.live_root, ctx.words),
        lambda: print_outcomes(ctx, outcomes),
    )
    ctx.report_failures(outcomes)
    return outcomes
