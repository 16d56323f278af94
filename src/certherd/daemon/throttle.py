"""Failed basic-auth attempts, counted per client address, and the address turned away
for a while once there are too many (what ``fail2ban`` would do for a web login).

Without it a client may try passwords as fast as the listener answers: thousands a
second on loopback. With it, an address that sent :data:`MAX_FAILURES` wrong credentials
within :data:`WINDOW` seconds is answered ``429 Too Many Requests`` with ``Retry-After``
for :data:`LOCKOUT` seconds, whatever it sends, right credentials included (else the
guess that hits would still be told). A request without credentials (a browser's first
request, before it asks its user) is not a failure. IPv6 clients are counted per /64,
the block one host is usually given, so rotating addresses within it does not help.

The table is bounded (:data:`MAX_TRACKED` addresses; the one seen longest ago goes
first), so a flood from many addresses costs at most that much memory. Behind a proxy
every client has the proxy's address: the proxy then should do this itself.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import Final

from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric

__all__ = ["LOCKOUT", "MAX_FAILURES", "MAX_TRACKED", "WINDOW", "AuthThrottle"]

MAX_FAILURES: Final = 10
"""Wrong credentials from one address within :data:`WINDOW` before it is turned away."""
WINDOW: Final = 300.0
"""Seconds over which failures are counted."""
LOCKOUT: Final = 300.0
"""Seconds an address is turned away once it reached :data:`MAX_FAILURES`."""
MAX_TRACKED: Final = 4096
"""Addresses remembered at most."""


def client_key(address: str | None) -> str:
    """Who is counted: the IPv4 address, an IPv6 address's /64 (an IPv4-mapped IPv6
    address as IPv4), or the text as given when it is no IP address."""
    if not address:
        return "?"
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class AuthThrottle:
    """Counts failures per client and says when a client must wait. Not thread-safe: used
    on the event loop only. ``clock`` gives monotonic seconds (tests pass their own)."""

    def __init__(
        self,
        *,
        max_failures: int = MAX_FAILURES,
        window: float = WINDOW,
        lockout: float = LOCKOUT,
        max_tracked: int = MAX_TRACKED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or window <= 0 or lockout <= 0 or max_tracked < 1:
            raise ValueError("the auth throttle needs positive bounds")
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self._max_tracked = max_tracked
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._locked: OrderedDict[str, float] = OrderedDict()  # key -> until
        self.failures_total = 0
        self.throttled_total = 0
        self.lockouts_total = 0

    def wait(self, address: str | None) -> float:
        """Seconds ``address`` must still wait (0: it may try). A client told to wait is
        counted in :attr:`throttled_total`."""
        key = client_key(address)
        until = self._locked.get(key)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._locked[key]
            return 0.0
        self.throttled_total += 1
        return left

    def failed(self, address: str | None) -> None:
        """``address`` sent wrong credentials."""
        self.failures_total += 1
        key = client_key(address)
        now = self._clock()
        seen = self._failures.pop(key, None) or deque(maxlen=self.max_failures)
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        seen.append(now)
        if len(seen) >= self.max_failures:
            self._locked[key] = now + self.lockout
            self._locked.move_to_end(key)
            self.lockouts_total += 1
            seen.clear()
        else:
            self._failures[key] = seen  # most recently seen last
        for table in (self._failures, self._locked):
            while len(table) > self._max_tracked:
                table.popitem(last=False)

    @staticmethod
    def retry_after(seconds: float) -> str:
        """The ``Retry-After`` value (RFC 9110 §10.2.3: whole seconds, rounded up)."""
        return str(max(1, math.ceil(seconds)))

    def collect(self) -> Iterator[Metric]:
        """The counters for ``/metrics`` (a ``prometheus_client`` collector)."""
        yield CounterMetricFamily(
            "certherd_http_auth_failures_total",
            "Requests to this listener with wrong basic-auth credentials.",
            value=float(self.failures_total),
        )
        yield CounterMetricFamily(
            "certherd_http_auth_lockouts_total",
            f"Client addresses turned away after {self.max_failures} wrong credentials "
            f"within {self.window:g} s.",
            value=float(self.lockouts_total),
        )
        yield CounterMetricFamily(
            "certherd_http_auth_throttled_total",
            "Requests answered 429 because their address sent too many wrong credentials.",
            value=float(self.throttled_total),
        )
