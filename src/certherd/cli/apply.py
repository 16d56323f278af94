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
@concurrency_option
@pass_context
def apply(ctx: Context, config_path: Path | None, concurrency: int) -> None:
    """Obtain what certherd.toml lists and is missing or changed; leave the rest alone."""
    from certherd.config import CONFIG_FILE, load_config_file

    path = config_path or ctx.config_dir / CONFIG_FILE
    config = load_config_file(path)
    ctx.warn(config.warnings)
    outcomes = run_async(_apply(ctx, config, concurrency))
    exit_for(any(o.failed or o.hook_errors for o in outcomes))


async def _apply(ctx: Context, config: Any, concurrency: int) -> Any:
    from certherd.cli.progress import tracked_manager
    from certherd.cli.render import outcome_document, print_outcomes
    from certherd.manager.apply import apply_config

    manager, progress = tracked_manager(
        ctx, ctx.storage(), concurrency, total=len(config.certificates)
    )
    try:
        with progress:
            outcomes = await apply_config(manager, config)
    finally:
        await manager.aclose()
    ctx.emit(
        lambda: outcome_document(outcomes, ctx.config_dir), lambda: print_outcomes(ctx, outcomes)
    )
    ctx.report_failures(outcomes)
    return outcomes
