"""``certherd run``: the daemon. Renews on time, serves metrics, stops on SIGTERM;
SIGHUP reads the configuration again and checks every lineage at once."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from certherd.app.running import MIN_LEASE_TTL
from certherd.cli.common import Context, concurrency_option, pass_context, run_async
from certherd.storage.leases import LEASE_TTL

if TYPE_CHECKING:
    from certherd.app import Event
    from certherd.manager.outcome import Outcome

__all__ = ["run"]


@click.command("run")
@click.option(
    "--metrics",
    "metrics_address",
    metavar="ADDR:PORT",
    help="Serve Prometheus /metrics, /healthz and the status page (/) here (e.g. 127.0.0.1:9469).",
)
@click.option(
    "--metrics-auth",
    "metrics_auth",
    metavar="FILE",
    help="Ask for HTTP basic auth on --metrics (all but /healthz): user:password lines "
    "in FILE, readable by its owner only.",
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
@click.option(
    "--node",
    metavar="NAME",
    help="Run as this node of a fleet sharing --storage: claim due lineages from the "
    "shared schedule, keep this host's live files and deploy hooks current.",
)
@click.option(
    "--lease-ttl",
    type=click.FloatRange(MIN_LEASE_TTL),
    default=LEASE_TTL,
    show_default=True,
    help="With --node: seconds a claimed lineage's lease lasts unless renewed "
    "(a node that stops is replaced this long after).",
)
@click.option(
    "--http-serve",
    metavar="[ADDR:]PORT",
    help="Answer http-01 here for every pending order of the fleet (solver kind fleet: "
    "key authorizations in --storage); put it behind the site's load balancer.",
)
@click.option(
    "--tls-alpn-serve",
    metavar="[ADDR:]PORT",
    help="Answer tls-alpn-01 here for every pending order of the fleet (solver kind fleet).",
)
@concurrency_option
@pass_context
def run(
    ctx: Context,
    metrics_address: str | None,
    metrics_auth: str | None,
    min_interval: float,
    max_interval: float,
    node: str | None,
    lease_ttl: float,
    concurrency: int,
    http_serve: str | None,
    tls_alpn_serve: str | None,
) -> None:
    """Run until SIGTERM: renew each lineage when it is due, run its hooks.

    SIGHUP reads certherd.toml again and checks every lineage at once.
    """
    if node is not None and not ctx.storage:
        raise click.UsageError("--node needs --storage URL (the database the fleet shares)")
    if node is not None:
        from certherd.errors import ConfigError
        from certherd.storage.layout import check_name

        try:
            check_name(node, "node name")
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="--node") from None
    if metrics_auth is not None and metrics_address is None:
        raise click.UsageError("--metrics-auth guards the --metrics listener: give --metrics too")
    run_async(
        _run(
            ctx,
            metrics_address,
            min_interval,
            max_interval,
            concurrency,
            node,
            lease_ttl,
            metrics_auth=metrics_auth,
            serving={"http_serve": http_serve, "tls_alpn_serve": tls_alpn_serve},
        )
    )


async def _run(
    ctx: Context,
    metrics_address: str | None,
    min_interval: float,
    max_interval: float,
    concurrency: int,
    node: str | None = None,
    lease_ttl: float = LEASE_TTL,
    *,
    metrics_auth: str | None = None,
    serving: dict[str, str | None] | None = None,
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

    certherd = ctx.certherd(concurrency=concurrency, on_event=tell, node=node)
    await certherd.run(
        metrics=metrics_address,
        metrics_auth=metrics_auth,
        min_interval=min_interval,
        max_interval=max_interval,
        on_cycle=report,
        node=node is not None,
        lease_ttl=lease_ttl,
        http_serve=(serving or {}).get("http_serve"),
        tls_alpn_serve=(serving or {}).get("tls_alpn_serve"),
    )
