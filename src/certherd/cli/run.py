"""``certherd run``: the daemon. Renews on time, serves metrics, stops on SIGTERM;
SIGHUP reads the configuration again and checks every lineage at once."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from certherd.cli.common import Context, concurrency_option, pass_context, run_async

if TYPE_CHECKING:
    from certherd.app import Event
    from certherd.manager.outcome import Outcome

__all__ = ["run"]


@click.command("run")
@click.option(
    "--metrics",
    "metrics_address",
    metavar="ADDR:PORT",
    help="Serve Prometheus /metrics and /health here (e.g. 127.0.0.1:9469).",
)
@click.option(
    "--min-interval",
    type=click.FloatRange(0.1),
    default=60.0,
    show_default=True,
    help="Never check more often than this (seconds).",
)
@click.option(
    "--max-interval",
    type=click.FloatRange(1),
    default=6 * 3600.0,
    show_default=True,
    help="Check at least this often (seconds).",
)
@concurrency_option
@pass_context
def run(
    ctx: Context,
    metrics_address: str | None,
    min_interval: float,
    max_interval: float,
    concurrency: int,
) -> None:
    """Run until SIGTERM: renew each lineage when it is due, run its hooks.

    SIGHUP reads certherd.toml again and checks every lineage at once.
    """
    run_async(_run(ctx, metrics_address, min_interval, max_interval, concurrency))


async def _run(
    ctx: Context,
    metrics_address: str | None,
    min_interval: float,
    max_interval: float,
    concurrency: int,
) -> None:
    def tell(event: Event) -> None:
        if event.kind not in ("planned", "started", "finished"):  # the cycle reports those
            ctx.tell(event)

    def report(outcomes: list[Outcome]) -> None:
        for o in outcomes:
            if o.action in ("renewed", "issued", "deployed"):
                reason = ctx.words(o.reason, lineage=o.lineage)
                ctx.say(f"{o.lineage}: {o.action} ({reason}), version {o.version}")
            elif o.failed:
                error = ctx.words(o.error, lineage=o.lineage)
                click.echo(f"certherd: {o.lineage}: renewal failed: {error}", err=True)
            for problem in o.hook_errors:
                click.echo(f"certherd: {o.lineage}: hook failed: {problem}", err=True)

    certherd = ctx.certherd(concurrency=concurrency, on_event=tell)
    await certherd.run(
        metrics=metrics_address,
        min_interval=min_interval,
        max_interval=max_interval,
        on_cycle=report,
    )
