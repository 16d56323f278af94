"""A fleet node's own families in ``/metrics``: whether it reaches the shared storage,
how often it could not, when it last could, and how many lineages it works on now::

    certherd_storage_up 1
    certherd_storage_errors_total 0
    certherd_storage_last_success_timestamp_seconds 1.7649e+09
    certherd_fleet_lineages_in_hand 3

An alert on ``certherd_storage_up == 0`` (or on the last success growing old) tells that a
node lost its database: it keeps serving the files on its disk and claims nothing until
the database is back.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from certherd.daemon.loop import Daemon

__all__ = ["StorageCollector"]


class StorageCollector:
    """A ``prometheus_client`` collector reading a daemon's counters (a fleet node's, or a
    lone daemon's on a database; kept in memory: a scrape never touches the database)."""

    def __init__(self, node: Daemon) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        node = self._node
        if node.storage_up is not None:
            yield GaugeMetricFamily(
                "certherd_storage_up",
                "Whether this daemon's last round reached the shared storage (1) or not (0).",
                value=1.0 if node.storage_up else 0.0,
            )
        yield CounterMetricFamily(
            "certherd_storage_errors_total",
            "Rounds of this daemon that could not reach the shared storage.",
            value=float(node.storage_errors),
        )
        if node.storage_ok_at is not None:
            yield GaugeMetricFamily(
                "certherd_storage_last_success_timestamp_seconds",
                "When this daemon last reached the shared storage, in Unix seconds.",
                value=node.storage_ok_at,
            )
        working = getattr(node, "working", None)
        if working is not None:
            yield GaugeMetricFamily(
                "certherd_fleet_lineages_in_hand",
                "Lineages this fleet node holds a lease on and works on now.",
                value=float(len(working)),
            )
