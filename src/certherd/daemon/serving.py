"""Serving a :class:`~certherd.daemon.loop.Daemon` as ``certherd run`` does: the open
file limit raised, the metrics endpoint, the stop and reload signals, and the news."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from certherd.challenges.options import parse_listen_address
from certherd.daemon.loop import Daemon, raise_open_file_limit
from certherd.errors import ConfigError

if TYPE_CHECKING:
    from certherd.daemon.web import MetricsServer

__all__ = ["Listener", "serve"]


class Listener(Protocol):
    """Something served beside the daemon (a fleet's challenge listeners)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def serve(
    daemon: Daemon,
    *,
    metrics: str | None = None,
    metrics_auth: Path | None = None,
    status_page: bool = True,
    signals: bool = True,
    notice: Callable[[str], None] = lambda text: None,
    where: str = "storage",
    listeners: Sequence[tuple[Listener, str]] = (),
    on_started: Callable[[], None] = lambda: None,
) -> None:
    """Run ``daemon`` until it is stopped.

    ``metrics``: ``[ADDR:]PORT`` where Prometheus ``/metrics``, ``/healthz`` and (with
    ``status_page``) the status page are served (127.0.0.1 when no address is given);
    ``metrics_auth``: a file of ``user:password`` lines, for HTTP basic auth there.
    With ``signals``, SIGTERM and SIGINT stop the
    daemon and SIGHUP starts a cycle now; the handlers are removed when it returns.
    ``notice`` hears what a log should show; ``where`` names the storage in it.
    ``listeners``: (listener, what it is) started before the daemon, stopped after it.
    ``on_started`` is called once everything listens and the daemon starts; an error
    before that (a port taken, a bad auth file) is raised with nothing left running.
    """
    if signals and threading.current_thread() is not threading.main_thread():
        # An argument of this call, not a setting: no front end has a word for it.
        raise ConfigError(
            "signals=True needs the main thread (only it receives signals): run the daemon "
            "there, or pass signals=False and stop it by calling stop()"
        )
    if metrics_auth is not None and not metrics:
        raise ConfigError(
            "{metrics_auth} guards the metrics listener: give {metrics} too",
            settings=("metrics_auth", "metrics"),
        )
    told: list[str] = []  # told once everything started: a start that fails is one line
    before, after = raise_open_file_limit()
    if after != before:
        told.append(f"open file limit raised from {before} to {after}")
    loop = asyncio.get_running_loop()
    if signals:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, daemon.stop)

        def reload() -> None:
            notice("SIGHUP: reading the configuration again and checking every lineage now")
            daemon.wake()

        loop.add_signal_handler(signal.SIGHUP, reload)
    server: MetricsServer | None = None
    started: list[Listener] = []
    try:
        for listener, what in listeners:
            await listener.start()
            started.append(listener)
            told.append(what)
        if metrics:
            from certherd.daemon.page import BasicAuth, read_users
            from certherd.daemon.status import StatusSource
            from certherd.daemon.web import MetricsServer  # aiohttp: only when serving

            try:
                host, port = parse_listen_address(metrics, default_host="127.0.0.1")
            except ConfigError as exc:
                raise ConfigError(f"{{metrics}}: {exc}", settings=("metrics",)) from None
            auth = BasicAuth(read_users(metrics_auth)) if metrics_auth is not None else None
            server = MetricsServer(
                host,
                port,
                daemon.metrics,
                health=daemon.health,
                collectors=[*daemon.collectors(), *_collectors(started)],
                status=StatusSource(daemon) if status_page else None,
                auth=auth,
            )
            await server.start()
            shown = f"http://{host or '*'}:{server.port}"
            told.append(f"metrics on {shown}/metrics")
            if status_page:
                told.append(f"status page on {shown}/")
        for text in told:
            notice(text)
        notice(f"certherd daemon started ({where})")
        on_started()
        await daemon.run()
    finally:
        if server is not None:
            await server.stop()
        for listener in reversed(started):
            await listener.stop()
        if signals:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)


def _collectors(listeners: Sequence[Listener]) -> list[Any]:
    """The listeners that count what they answered (``collect()``), for ``/metrics``."""
    return [listener for listener in listeners if hasattr(listener, "collect")]
