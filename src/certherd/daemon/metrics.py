"""What ``/metrics`` says, in the Prometheus text format written by ``prometheus_client``.

Since Let's Encrypt stopped sending expiry emails (June 2025, FIELD.md), the client is the
only one who notices a renewal that keeps failing; these metrics let an alert fire on it::

    certherd_certificate_expiry_timestamp_seconds{lineage="example.com"}
    certherd_certificate_next_renewal_timestamp_seconds{lineage="example.com"}
    certherd_renewal_failures_total{lineage="example.com"}
    certherd_last_renewal_success_timestamp_seconds{lineage="example.com"}
    certherd_up
    certherd_http_connections_refused_total

The names are those of the hand-written exposition before (one addition: the refused
connections). The body is the text format, version 0.0.4, as ``prometheus_client``
writes it (values such as ``1.7960832e+09`` and ``3.0``: the same numbers, spelled as
Go's ``ParseFloat`` reads them). Each scrape asks :class:`LineageCollector` afresh; other
parts of certherd add their own ``prometheus_client`` collectors beside it (see
:class:`~certherd.daemon.web.MetricsServer`'s ``collectors``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector

__all__ = [
    "CONTENT_TYPE",
    "HealthCheck",
    "LineageCollector",
    "LineageMetrics",
    "render_metrics",
]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The text format ``prometheus_client.generate_latest`` writes (Prometheus 0.0.4)."""

HealthCheck = Callable[[], str | None]
"""Returns None when healthy, else the reason (the body of a 503 answer)."""


@dataclass(frozen=True)
class LineageMetrics:
    """What the metrics say about one lineage; None means unknown (the sample is left out).

    ``failures`` counts failed renewal attempts and, being a counter, SHOULD only grow
    (it may restart from zero with the process). Naive datetimes are taken as UTC.
    """

    lineage: str
    not_after: dt.datetime | None
    next_renewal: dt.datetime | None
    failures: int
    last_success: dt.datetime | None


def _timestamp(moment: dt.datetime | None) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


_GAUGES: Final[tuple[tuple[str, str, Callable[[LineageMetrics], dt.datetime | None]], ...]] = (
    (
        "certherd_certificate_expiry_timestamp_seconds",
        "When the live certificate of the lineage expires (notAfter), in Unix seconds.",
        lambda item: item.not_after,
    ),
    (
        "certherd_certificate_next_renewal_timestamp_seconds",
        "When certherd plans to renew the lineage next, in Unix seconds.",
        lambda item: item.next_renewal,
    ),
    (
        "certherd_last_renewal_success_timestamp_seconds",
        "When the lineage was last obtained or renewed successfully, in Unix seconds.",
        lambda item: item.last_success,
    ),
)


class LineageCollector:
    """A ``prometheus_client`` collector of the per-lineage families and ``certherd_up``.

    ``lineages`` is called once per scrape on the event loop: it MUST be quick and MUST
    NOT block (read state kept in memory). A lineage given twice keeps its last entry (a
    series may appear only once); lineages are written sorted by name. ``refused``
    (optional) gives the connections the HTTP server turned away so far.
    """

    def __init__(
        self,
        lineages: Callable[[], Iterable[LineageMetrics]],
        *,
        refused: Callable[[], int] | None = None,
    ) -> None:
        self._lineages = lineages
        self._refused = refused

    def collect(self) -> Iterator[Metric]:
        latest = {item.lineage: item for item in self._lineages()}
        items = [latest[name] for name in sorted(latest)]
        families: list[Metric] = []
        for name, text, moment in _GAUGES:
            family = GaugeMetricFamily(name, text, labels=["lineage"])
            for item in items:
                value = _timestamp(moment(item))
                if value is not None:
                    family.add_metric([item.lineage], value)
            families.append(family)
        failures = CounterMetricFamily(
            "certherd_renewal_failures_total",
            "Failed renewal attempts of the lineage.",
            labels=["lineage"],
        )
        for item in items:
            failures.add_metric([item.lineage], float(item.failures))
        families.insert(2, failures)
        yield from families
        yield GaugeMetricFamily(
            "certherd_up", "Whether certherd's metrics endpoint is serving (always 1).", value=1
        )
        if self._refused is not None:
            yield CounterMetricFamily(
                "certherd_http_connections_refused_total",
                "Connections to this listener turned away at its connection cap (503).",
                value=float(self._refused()),
            )


def registry_of(collectors: Iterable[Collector]) -> CollectorRegistry:
    """A registry of its own (never prometheus_client's global one) holding ``collectors``."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    return registry


def render_metrics(lineages: Iterable[LineageMetrics]) -> str:
    """The ``/metrics`` body for ``lineages`` alone (no refused-connection counter)."""
    items = list(lineages)
    return generate_latest(registry_of([LineageCollector(lambda: items)])).decode("utf-8")
