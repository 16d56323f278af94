"""``certherd run``: the renewal daemon's scheduler loop and its HTTP surface (metrics, health).

:class:`Daemon` renews every lineage when it is due and sleeps until the next one;
:class:`MetricsServer` serves what the last cycle learned to Prometheus. The daemon sits
above :mod:`certherd.manager` (it drives a ``Manager``), never below it.
"""

import typing as _typing

from certherd import _lazy

__all__ = [
    "Daemon",
    "DaemonStatus",
    "LineageMetrics",
    "MetricsServer",
    "raise_open_file_limit",
    "render_metrics",
    "serve",
]

if _typing.TYPE_CHECKING:
    from certherd.daemon.loop import Daemon, DaemonStatus, raise_open_file_limit
    from certherd.daemon.metrics import LineageMetrics, render_metrics
    from certherd.daemon.serving import serve
    from certherd.daemon.web import MetricsServer
else:
    __getattr__ = _lazy.exports_getattr(__name__)  # the imports above, on first use
