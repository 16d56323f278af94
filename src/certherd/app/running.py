"""``certherd run`` as calls of :class:`~certherd.app.entry.Certherd`: the daemon on
its storage, following certherd.toml each cycle, stopped or woken from a signal handler."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from certherd.app.events import EventKind
    from certherd.config import ConfigFile
    from certherd.manager.outcome import Outcome
    from certherd.manager.service import Manager

__all__ = ["DaemonCalls"]


class DaemonCalls:
    """Run the renewal daemon until :meth:`stop`; :meth:`wake` starts a cycle now."""

    config_dir: Path | None
    _daemon: Any
    _stopping: bool

    if TYPE_CHECKING:

        @property
        def manager(self) -> Manager: ...

        def read_config(self, path: None = None) -> ConfigFile | None: ...

        async def _follow(self, config: ConfigFile | None) -> None: ...

        def _emit(self, kind: EventKind, text: str = "") -> None: ...

        async def aclose(self) -> None: ...

    async def run(
        self,
        *,
        metrics: str | None = None,
        min_interval: float = 60.0,
        max_interval: float = 6 * 3600.0,
        on_cycle: Callable[[list[Outcome]], None] | None = None,
        signals: bool = True,
    ) -> None:
        """``certherd run``: renew each lineage when it is due until :meth:`stop`.

        Each cycle follows certherd.toml again. ``metrics``: ``[ADDR:]PORT`` for the
        Prometheus ``/metrics`` and ``/health``. ``on_cycle`` gets each cycle's outcomes.
        With ``signals`` (main thread only), SIGTERM and SIGINT stop it and SIGHUP starts a
        cycle now."""
        from certherd.daemon.loop import Daemon
        from certherd.daemon.serving import serve

        async def before_cycle() -> None:
            await self._follow(self.read_config())

        daemon = Daemon(
            self.manager,
            min_sleep=min_interval,
            max_sleep=max_interval,
            before_cycle=before_cycle,
            on_outcomes=on_cycle,
        )
        self._daemon = daemon
        if self._stopping:
            daemon.stop()
        try:
            await serve(
                daemon,
                metrics=metrics,
                signals=signals,
                notice=lambda text: self._emit("notice", text),
                where=f"config dir {self.config_dir}" if self.config_dir else "storage",
            )
        finally:
            await self.aclose()
            self._daemon = None
            self._stopping = False
            self._emit("notice", "certherd daemon stopped")

    def stop(self) -> None:
        """Stop :meth:`run` (a renewal under way gets a grace period); signal-safe."""
        self._stopping = True
        if self._daemon is not None:
            self._daemon.stop()

    def wake(self) -> None:
        """Start a daemon cycle now (after the one under way); signal-safe."""
        if self._daemon is not None:
            self._daemon.wake()
