"""Active DNS propagation checks for dns-01: ask the authoritative servers, never sleep blind.

Certbot's answer to "is the TXT record there yet?" is a fixed sleep the user tunes by hand;
lego's is a per-provider timeout that is often too short for slow secondaries (FIELD.md).
:class:`PropagationChecker` instead finds the zone that holds the name (walking up the
labels with SOA queries through a recursive resolver), its name servers (NS, then their
addresses), and then asks *each* authoritative server directly, over UDP with a TCP
fallback, until every one serves the value. Progress goes to a callback; a timeout names
the record and the servers that still lack it, with what each of them answered.

With ``resolver=(address, port)`` the checker asks that one server instead (split-horizon
DNS, a hidden primary, a test server); the walk and CNAME lookups then go there too. If
that server is a caching resolver, it may keep answering "no such record" for up to the
zone's negative TTL (RFC 2308 §5) after the value was added: prefer an authoritative one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from certherd.clock import Clock, SystemClock
from certherd.dns.zone import (
    DnsTransport,
    UdpTcpTransport,
    answer_records,
    ask_in_turn,
    describe_failure,
    find_zone,
    system_resolvers,
)
from certherd.errors import ConfigError, PropagationTimeoutError, SolverError, safe_text

__all__ = [
    "NameServer",
    "ProgressCallback",
    "PropagationChecker",
    "normalize_name",
]

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int], None]
"""``on_progress(name, servers_ok, servers_total)``, called after every round of queries."""

MAX_CNAME_HOPS = 8
SERVER_CACHE_SECONDS = 60.0


def normalize_name(name: str) -> str:
    """A DNS name in lower case with exactly one trailing dot; ConfigError if empty."""
    text = name.strip().lower().rstrip(".")
    if not text:
        raise ConfigError(f"not a DNS name: {name!r}")
    return text + "."


@dataclass(frozen=True)
class NameServer:
    """One server to check: its name (as in the NS record) and where to reach it."""

    host: str
    addresses: tuple[str, ...]
    port: int = 53

    def __str__(self) -> str:
        where = ", ".join(self.addresses) or "no address"
        return self.host if self.host in self.addresses else f"{self.host} ({where})"


@dataclass(frozen=True)
class _Check:
    served: bool
    reason: str


class PropagationChecker:
    """Waits until a TXT value is served by every authoritative server of its zone.

    - ``timeout``: seconds to wait in all (0 skips the check entirely);
    - ``interval``: seconds between rounds of queries;
    - ``resolver``: ``(address, port)`` of the one server to check instead of the
      authoritative set; it also answers the zone walk and CNAME lookups;
    - ``clock``: the time source (tests inject a fake one and never sleep);
    - ``on_progress``: ``(name, servers_ok, servers_total)`` after every round;
    - ``recursive``: resolvers for the walk when ``resolver`` is unset (default: the
      system's, from /etc/resolv.conf);
    - ``nameserver_port``: where authoritative servers listen (53; tests use another);
    - ``transport``: how queries are sent, a :class:`certherd.dns.zone.DnsTransport`
      (tests inject a scripted one).

    One checker may serve many concurrent waits; it caches the servers of a zone for a
    minute so a batch of names in one zone costs one NS lookup.
    """

    def __init__(
        self,
        timeout: float = 120.0,
        interval: float = 2.0,
        resolver: tuple[str, int] | None = None,
        clock: Clock | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        recursive: Sequence[tuple[str, int]] | None = None,
        nameserver_port: int = 53,
        query_timeout: float = 3.0,
        transport: DnsTransport | None = None,
    ) -> None:
        if timeout < 0 or interval <= 0 or query_timeout <= 0:
            raise ConfigError(
                "propagation timeout must be >= 0 and the interval and query timeout > 0"
            )
        self.timeout = float(timeout)
        self.interval = float(interval)
        self.resolver = resolver
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.on_progress = on_progress
        self.nameserver_port = nameserver_port
        self.query_timeout = float(query_timeout)
        self.transport: DnsTransport = transport if transport is not None else UdpTcpTransport()
        self._recursive: tuple[tuple[str, int], ...] | None = (
            (resolver,) if resolver is not None else (tuple(recursive) if recursive else None)
        )
        self._servers: dict[str, tuple[float, tuple[NameServer, ...]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # -- waiting -------------------------------------------------------------------------

    async def wait(self, name: str, value: str) -> None:
        """Return once every server to check serves ``value`` in the TXT set at ``name``.

        Raises :class:`PropagationTimeoutError` naming the record and the servers that
        lack it. Cancellable at any await.
        """
        if self.timeout == 0:
            return
        fqdn = normalize_name(name)
        deadline = self.clock.monotonic() + self.timeout
        servers: tuple[NameServer, ...] = ()
        served: set[NameServer] = set()
        reasons: dict[NameServer, str] = {}
        discovery_error = ""
        while True:
            if not servers:
                try:
                    servers = await self.servers_for(fqdn)
                    log.info(
                        "propagation of TXT %s: checking %s", fqdn, ", ".join(map(str, servers))
                    )
                except SolverError as err:
                    discovery_error = str(err)
                    log.info("propagation of TXT %s: %s", fqdn, err)
            pending = [server for server in servers if server not in served]
            checks = await asyncio.gather(*(self._check(s, fqdn, value) for s in pending))
            for server, check in zip(pending, checks, strict=True):
                if check.served:
                    served.add(server)
                    reasons.pop(server, None)
                else:
                    reasons[server] = check.reason
            if self.on_progress is not None:
                self.on_progress(fqdn, len(served), len(servers))
            log.info(
                "propagation of TXT %s: served by %d of %d name server(s)%s",
                fqdn,
                len(served),
                len(servers),
                "".join(f"; {server}: {why}" for server, why in reasons.items()),
            )
            if servers and len(served) == len(servers):
                return
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                raise PropagationTimeoutError(
                    self._timeout_message(fqdn, value, servers, reasons, discovery_error)
                )
            await self.clock.sleep(min(self.interval, remaining))

    def _timeout_message(
        self,
        fqdn: str,
        value: str,
        servers: Sequence[NameServer],
        reasons: dict[NameServer, str],
        discovery_error: str,
    ) -> str:
        record = f"TXT {fqdn} value {safe_text(value, 60)!r}"
        if not servers:
            return (
                f"{record}: gave up after {self.timeout:g}s without finding the servers "
                f"to check ({discovery_error or 'no name servers'}); raise the propagation "
                "timeout or set a resolver"
            )
        lacking = "; ".join(f"{server}: {reason}" for server, reason in reasons.items())
        served = len(servers) - len(reasons)
        return (
            f"{record} not served after {self.timeout:g}s by {len(reasons)} of "
            f"{len(servers)} name servers ({served} served it): {lacking}; raise the "
            "propagation timeout if the provider is slow, or check the provider's zone"
        )

    async def _check(self, server: NameServer, fqdn: str, value: str) -> _Check:
        # RFC 1035 §4.1.1: RD off when asking an authoritative server directly.
        flags = dns.flags.RD if self.resolver is not None else 0
        request = dns.message.make_query(fqdn, dns.rdatatype.TXT, flags=flags)
        reason = "no address"
        for address in server.addresses:
            try:
                response = await self.transport.query(
                    request, address, server.port, self.query_timeout
                )
            except (OSError, TimeoutError, dns.exception.DNSException) as err:
                reason = f"no answer from {address} ({describe_failure(err)})"
                continue
            return _served(response, fqdn, value)
        return _Check(False, reason)

    # -- finding the servers -------------------------------------------------------------

    async def servers_for(self, name: str) -> tuple[NameServer, ...]:
        """The servers :meth:`wait` checks for ``name``: the one ``resolver``, or the
        authoritative servers of the zone holding ``name``. SolverError if none found."""
        if self.resolver is not None:
            address, port = self.resolver
            return (NameServer(address, (address,), port),)
        zone = await self.find_zone(name)
        lock = self._locks.setdefault(zone, asyncio.Lock())
        async with lock:  # a batch of names in one zone: one NS lookup
            cached = self._servers.get(zone)
            if cached is not None and cached[0] > self.clock.monotonic():
                return cached[1]
            servers = await self._authoritative_servers(zone)
            self._servers[zone] = (self.clock.monotonic() + SERVER_CACHE_SECONDS, servers)
            return servers

    async def find_zone(self, name: str) -> str:
        """The apex of the zone holding ``name``, found by :func:`certherd.dns.zone.find_zone`
        through the recursive resolvers (or ``resolver``). SolverError if there is none."""
        fqdn = normalize_name(name)

        async def ask(request: dns.message.Message) -> dns.message.Message:
            return await ask_in_turn(
                request, self._recursive_servers(), self.transport, self.query_timeout
            )

        zone = await find_zone(fqdn, ask)
        if zone is None:
            raise SolverError(f"no DNS zone found for {name}: no SOA at any of its parent names")
        return zone.to_text()

    async def _authoritative_servers(self, zone: str) -> tuple[NameServer, ...]:
        response = await self.lookup(zone, dns.rdatatype.NS)
        records = answer_records(response, zone, dns.rdatatype.NS)
        hosts = sorted({rdata.target.to_text().lower() for rdata in records})
        if not hosts:
            raise SolverError(f"the zone {zone} has no NS records")
        glue: dict[str, list[str]] = {}
        for rrset in response.additional:
            if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                glue.setdefault(rrset.name.to_text().lower(), []).extend(r.address for r in rrset)
        resolved = await asyncio.gather(*(self._addresses(h, glue.get(h)) for h in hosts))
        return tuple(
            NameServer(host, addresses, self.nameserver_port)
            for host, addresses in zip(hosts, resolved, strict=True)
        )

    async def _addresses(self, host: str, glue: list[str] | None) -> tuple[str, ...]:
        if glue:
            return tuple(sorted(set(glue), key=lambda a: (":" in a, a)))
        found: list[str] = []
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):  # IPv4 first: it routes more often
            try:
                response = await self.lookup(host, rdtype)
            except SolverError:
                continue
            found.extend(
                rdata.address
                for rrset in response.answer
                if rrset.rdtype == rdtype
                for rdata in rrset
            )
        return tuple(dict.fromkeys(found))

    # -- lookups through the recursive resolver ------------------------------------------

    async def follow_cname(self, name: str, max_hops: int = MAX_CNAME_HOPS) -> str:
        """The end of the CNAME chain starting at ``name`` (``name`` itself if none).

        Each hop is asked for separately so the chain is bounded and loops are refused
        with a SolverError naming the chain.
        """
        current = normalize_name(name)
        chain = [current]
        for _ in range(max_hops + 1):
            response = await self.lookup(current, dns.rdatatype.CNAME)
            records = answer_records(response, current, dns.rdatatype.CNAME)
            if not records:
                return current
            target = records[0].target.to_text().lower()
            if target in chain:
                raise SolverError(f"CNAME loop: {' -> '.join([*chain, target])}")
            chain.append(target)
            current = target
        raise SolverError(f"CNAME chain longer than {max_hops} hops: {' -> '.join(chain)}")

    async def lookup(self, name: str, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
        """Ask the recursive resolver (or ``resolver``) with RD set; try each in turn.

        Returns the first NOERROR or NXDOMAIN response; SolverError if none answered.
        """
        request = dns.message.make_query(normalize_name(name), rdtype)
        return await ask_in_turn(
            request, self._recursive_servers(), self.transport, self.query_timeout
        )

    def _recursive_servers(self) -> tuple[tuple[str, int], ...]:
        if self._recursive is None:
            self._recursive = system_resolvers()
        return self._recursive


def _served(response: dns.message.Message, fqdn: str, value: str) -> _Check:
    """Whether ``response`` holds ``value`` among the TXT strings at ``fqdn``."""
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return _Check(False, "no such name (NXDOMAIN)")
    if rcode != dns.rcode.NOERROR:
        return _Check(False, f"answered {dns.rcode.to_text(rcode)}")
    wanted = value.encode("ascii", "replace")
    others = 0
    for rdata in answer_records(response, fqdn, dns.rdatatype.TXT):
        # RFC 7208 §3.3 style: one TXT value may be split into strings; join them.
        if b"".join(rdata.strings) == wanted:
            return _Check(True, "")
        others += 1
    if others:
        return _Check(False, f"{others} other TXT value(s), not this one")
    return _Check(False, "no TXT record")
