"""``certherd run`` as calls of :class:`~certherd.app.entry.Certherd`: the daemon on
its storage, following certherd.toml each cycle, stopped or woken from a signal handler."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from certherd.errors import ConfigError
from certherd.storage.leases import LEASE_TTL

if TYPE_CHECKING:
    from certherd.app.events import EventKind
    from certherd.challenges.factory import SolverPool
    from certherd.config import ConfigFile
    from certherd.manager.outcome import Outcome
    from certherd.manager.service import Manager
    from certherd.storage.base import Storage

__all__ = ["MIN_LEASE_TTL", "DaemonCalls"]

MIN_LEASE_TTL = 3.0
"""Seconds: the shortest lease a node may take (renewed every third of it)."""


class DaemonCalls:
    """Run the renewal daemon until :meth:`stop`; :meth:`wake` starts a cycle now."""

    config_dir: Path | None
    concurrency: int
    storage: Storage
    _daemon: Any
    _stopping: bool

    if TYPE_CHECKING:

        @property
        def manager(self) -> Manager: ...

        @property
        def solvers(self) -> SolverPool: ...

        def read_config(self, path: None = None) -> ConfigFile | None: ...

        async def _follow(self, config: ConfigFile | None) -> None: ...

        def _emit(self, kind: EventKind, text: str = "") -> None: ...

        async def aclose(self) -> None: ...

    async def run(
        self,
        *,
        metrics: str | None = None,
        metrics_auth: Path | str | None = None,
        min_interval: float = 60.0,
        max_interval: float = 6 * 3600.0,
        on_cycle: Callable[[list[Outcome]], None] | None = None,
        signals: bool = True,
        node: bool = False,
        lease_ttl: float = LEASE_TTL,
        http_serve: str | None = None,
        tls_alpn_serve: str | None = None,
    ) -> None:
        """``certherd run``: renew each lineage when it is due until :meth:`stop`.

        Each cycle follows certherd.toml again. ``metrics``: ``[ADDR:]PORT`` for the
        Prometheus ``/metrics``, ``/healthz`` and the status page (``/``);
        ``metrics_auth``: a file of ``user:password`` lines (mode 0600) for HTTP basic
        auth there. ``on_cycle`` gets each cycle's outcomes.
        With ``signals`` (main thread only), SIGTERM and SIGINT stop it and SIGHUP starts a
        cycle now.

        ``node``: run as one node of a fleet on a shared storage (PostgreSQL; the node's
        name is the storage's, ``Certherd(url, node=NAME)``): due lineages are claimed
        from the shared schedule, at most ``concurrency`` at a time, each under a lease of
        ``lease_ttl`` seconds; this host's live files follow every new version, with its
        deploy hooks run here (:mod:`certherd.daemon.node`). certherd.toml is followed at
        start and on :meth:`wake`; ``max_interval`` is then the polling period.

        ``http_serve`` / ``tls_alpn_serve``: ``[ADDR:]PORT`` where http-01 / tls-alpn-01
        are answered for every pending order whose solver is the ``fleet`` kind, from the
        key authorizations in this storage (:mod:`certherd.challenges.shared`)."""
        from certherd.daemon.loop import Daemon
        from certherd.daemon.serving import serve

        async def before_cycle() -> None:
            await self._follow(self.read_config())

        # What would stop every cycle stops run at its start, before anything listens (one
        # line, exit 2): certherd.toml that does not load, a config dir others may change,
        # a bad auth file. Later, a certherd.toml broken by an edit fails its cycles (the
        # daemon keeps the settings it last followed, and health says why).
        self.read_config()
        if self.config_dir is not None:
            await self.manager.lineages()
        if metrics_auth is not None and metrics:
            from certherd.daemon.page import read_users

            read_users(Path(metrics_auth))

        daemon: Daemon
        if node:
            from certherd.daemon.node import FleetNode
            from certherd.storage.fleet import fleet_of

            fleet = fleet_of(self.storage)
            if fleet is None:
                raise ConfigError(
                    "a fleet node needs a shared storage that keeps a schedule "
                    "(a PostgreSQL URL); this storage has none"
                )
            if lease_ttl < MIN_LEASE_TTL:
                raise ConfigError(
                    f"the lease time {lease_ttl:g}s is too short: give at least "
                    f"{MIN_LEASE_TTL:g} seconds (a lease is renewed every third of it)"
                )
            # A database call may take a third of a lease at most: a node whose database
            # hangs notices it while its leases still hold, never hangs with them.
            deadline = getattr(fleet, "deadline", None)
            if isinstance(deadline, float | int):
                fleet.deadline = min(float(deadline), lease_ttl / 3)  # type: ignore[attr-defined]
            daemon = FleetNode(
                self.manager,
                fleet,
                concurrency=self.concurrency,
                lease_ttl=lease_ttl,
                min_sleep=min_interval,
                max_sleep=max_interval,
                before_cycle=before_cycle,
                on_outcomes=on_cycle,
            )
        else:
            daemon = Daemon(
                self.manager,
                min_sleep=min_interval,
                max_sleep=max_interval,
                before_cycle=before_cycle,
                on_outcomes=on_cycle,
            )
        try:
            await self._check_storage()
        except ConfigError:
            await self.aclose()
            raise
        self._daemon = daemon
        if self._stopping:
            daemon.stop()
        started: list[bool] = []  # "stopped" is told only of a daemon that started
        try:
            await serve(
                daemon,
                metrics=metrics,
                metrics_auth=Path(metrics_auth) if metrics_auth is not None else None,
                signals=signals,
                notice=lambda text: self._emit("notice", text),
                where=self._where(daemon),
                listeners=self._challenge_listeners(http_serve, tls_alpn_serve),
                on_started=lambda: started.append(True),
            )
        finally:
            await self.aclose()
            self._daemon = None
            self._stopping = False
            if started:
                self._emit("notice", "certherd daemon stopped")

    async def _check_storage(self) -> None:
        """Before the daemon starts, one cheap call to its storage: a URL, login or
        schema that cannot work (a refused password, a schema newer than this certherd)
        is a configuration error now (``run`` exits 2 in one line), not a daemon
        retrying it for ever; a storage that does not answer (a database down) is
        waited for, with backoff, while what is on disk is served."""
        from certherd.errors import NotFoundError, StorageError
        from certherd.storage.layout import INDEX

        try:
            await self.storage.stat(INDEX)
        except NotFoundError:
            pass
        except StorageError as exc:
            self._emit("notice", f"the storage does not answer yet, waiting for it: {exc}")

    def _challenge_listeners(
        self, http_serve: str | None, tls_alpn_serve: str | None
    ) -> list[tuple[Any, str]]:
        from certherd.challenges.options import parse_listen_address

        listeners: list[tuple[Any, str]] = []
        if not (http_serve or tls_alpn_serve):
            return listeners
        from certherd.challenges.view import ChallengeView

        # One in-memory view for both listeners: a validation request never reads storage.
        view = ChallengeView(self.storage)
        listeners.append((view, "key authorizations of the fleet followed in memory"))
        if http_serve:
            from certherd.challenges.listeners import SharedHttp01Server

            host, port = _listen(parse_listen_address, http_serve, "http_serve")
            http = SharedHttp01Server(self.storage, port=port, host=host, view=view)
            self.solvers.share("http", host, port, http)
            listeners.append((http, f"http-01 answered on {host or '*'}:{port} for the fleet"))
        if tls_alpn_serve:
            from certherd.challenges.listeners import SharedTlsAlpn01Server

            host, port = _listen(parse_listen_address, tls_alpn_serve, "tls_alpn_serve")
            tls = SharedTlsAlpn01Server(self.storage, port=port, host=host, view=view)
            self.solvers.share("tls-alpn", host, port, tls)
            listeners.append((tls, f"tls-alpn-01 answered on {host or '*'}:{port} for the fleet"))
        from certherd.challenges.shared import RecordSweeper

        listeners.append((RecordSweeper(self.storage), "expired key authorizations swept"))
        return listeners

    def _where(self, daemon: Any) -> str:
        if self.config_dir is not None:
            return f"config dir {self.config_dir}"
        fleet = getattr(daemon, "fleet", None)
        return f"fleet node {fleet.node}, {self.storage!r}" if fleet is not None else "storage"

    def stop(self) -> None:
        """Stop :meth:`run` (a renewal under way gets a grace period); signal-safe."""
        self._stopping = True
        if self._daemon is not None:
            self._daemon.stop()

    def wake(self) -> None:
        """Start a daemon cycle now (after the one under way); signal-safe."""
        if self._daemon is not None:
            self._daemon.wake()


def _listen(parse: Callable[[str], tuple[str, int]], text: str, setting: str) -> tuple[str, int]:
    """``[ADDR:]PORT`` of a challenge listener; ConfigError naming ``setting``."""
    try:
        return parse(text)
    except ConfigError as exc:
        if setting == "http_serve":
            raise ConfigError(f"{{http_serve}}: {exc}", settings=("http_serve",)) from None
        raise ConfigError(f"{{tls_alpn_serve}}: {exc}", settings=("tls_alpn_serve",)) from None
