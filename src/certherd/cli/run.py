"""``certherd run``: the daemon. Renews on time, serves metrics, stops on SIGTERM;
SIGHUP reads the configuration again and checks every lineage at once."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import click

from certherd.cli.common import Context, concurrency_option, pass_context, run_async

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
    from certherd.challenges.options import parse_listen_address
    from certherd.config import CONFIG_FILE, load_config_file
    from certherd.daemon.loop import Daemon, raise_open_file_limit
    from certherd.daemon.metrics import MetricsServer
    from certherd.manager.apply import follow_config
    from certherd.manager.service import Manager, Outcome

    before, after = raise_open_file_limit()
    if after != before:
        ctx.say(f"open file limit raised from {before} to {after}")
    manager = Manager(
        ctx.storage(),
        solvers=ctx.solver_pool(),
        concurrency=concurrency,
        on_event=lambda lineage, text: ctx.say(f"{lineage}: {text}"),
    )
    config_path = ctx.config_dir / CONFIG_FILE
    warned: set[str] = set()  # each warning once per daemon, not once per cycle

    async def before_cycle() -> None:
        if config_path.exists():
            config = load_config_file(config_path)
            ctx.warn([text for text in config.warnings if text not in warned])
            warned.update(config.warnings)
            await follow_config(manager, config)

    def report(outcomes: list[Outcome]) -> None:
        for o in outcomes:
            if o.action in ("renewed", "issued", "deployed"):
                ctx.say(f"{o.lineage}: {o.action} ({o.reason}), version {o.version}")
            elif o.failed:
                click.echo(f"certherd: {o.lineage}: renewal failed: {o.error}", err=True)
            for problem in o.hook_errors:
                click.echo(f"certherd: {o.lineage}: hook failed: {problem}", err=True)

    daemon = Daemon(
        manager,
        min_sleep=min_interval,
        max_sleep=max_interval,
        before_cycle=before_cycle,
        on_outcomes=report,
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, daemon.stop)

    def reload() -> None:
        ctx.say("SIGHUP: reading the configuration again and checking every lineage now")
        daemon.wake()

    loop.add_signal_handler(signal.SIGHUP, reload)
    server: Any = None
    if metrics_address:
        host, port = parse_listen_address(metrics_address, default_host="127.0.0.1")
        server = MetricsServer(host, port, daemon.metrics, health=daemon.health)
        await server.start()
        ctx.say(f"metrics on http://{host or '*'}:{server.port}/metrics")
    ctx.say(f"certherd daemon started (config dir {ctx.config_dir})")
    try:
        await daemon.run()
    finally:
        if server is not None:
            await server.stop()
        await manager.aclose()
        ctx.say("certherd daemon stopped")
