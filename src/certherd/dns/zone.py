"""Which zone holds a DNS name: certherd's one SOA walk, and how its queries reach a resolver.

Three places need the zone of a record's name: the dns-01 propagation check (to find the
zone's authoritative servers), the RFC 2136 provider (an update names its zone, RFC 2136
§2.3) and the lexicon provider (its DNS host's API is per zone). They differ only in whom
they ask: :func:`find_zone` walks the same way for all of them and takes the sending of a
query as a function, so the RFC 2136 provider signs its queries with TSIG and asks the
primary server, while the others ask a resolver with :func:`ask_in_turn`.

A name reached through a CNAME (``_acme-challenge`` delegated to another zone) is looked
up at the end of its chain by the caller (:meth:`PropagationChecker.follow_cname`): the
walk finds the zone of the name it is given, and never follows a CNAME sideways.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import dns.asyncquery
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver

from certherd.errors import SolverError, safe_text

__all__ = [
    "Ask",
    "DnsTransport",
    "UdpTcpTransport",
    "answer_records",
    "ask_in_turn",
    "describe_failure",
    "find_zone",
    "system_resolvers",
]

Ask = Callable[[dns.message.Message], Awaitable[dns.message.Message]]
"""Sends one query and returns the response; raises its caller's own error if none came."""


class DnsTransport(Protocol):
    """Sends one DNS query to one server and returns its response.

    MUST raise :class:`OSError`, :class:`TimeoutError` or a
    :class:`dns.exception.DNSException` when no usable answer came; MAY be called
    concurrently; cancellation MUST abandon the query.
    """

    async def query(
        self, request: dns.message.Message, address: str, port: int, timeout: float
    ) -> dns.message.Message: ...


class UdpTcpTransport:
    """UDP, and TCP when the answer is truncated (RFC 7766 §1), through dnspython's asyncio."""

    async def query(
        self, request: dns.message.Message, address: str, port: int, timeout: float
    ) -> dns.message.Message:
        response, _ = await dns.asyncquery.udp_with_fallback(
            request, address, timeout=timeout, port=port
        )
        return response


def answer_records(
    response: dns.message.Message, owner: dns.name.Name | str, rdtype: dns.rdatatype.RdataType
) -> list[Any]:
    """The records of type ``rdtype`` owned by ``owner`` in the answer section of ``response``.

    Each is dnspython's class for that type (``.target`` of NS and CNAME, ``.strings`` of
    TXT). Records of other owners (the rest of a CNAME chain a resolver followed) are left
    out.
    """
    name = dns.name.from_text(owner) if isinstance(owner, str) else owner
    return [
        rdata
        for rrset in response.answer
        if rrset.rdtype == rdtype and rrset.name == name
        for rdata in rrset
    ]


def describe_failure(err: BaseException) -> str:
    """A query's failure in a few words, escaped for one line."""
    if isinstance(err, TimeoutError | dns.exception.Timeout):
        return "timed out"
    return safe_text(str(err) or type(err).__name__, 120)


def system_resolvers() -> tuple[tuple[str, int], ...]:
    """The system's resolvers (``/etc/resolv.conf``) as ``(address, port)``; SolverError if none."""
    try:
        system = dns.resolver.Resolver()
    except dns.exception.DNSException as err:
        raise SolverError(f"no system resolver ({describe_failure(err)}); set a resolver") from None
    return tuple((str(address), int(system.port)) for address in system.nameservers)


async def ask_in_turn(
    request: dns.message.Message,
    servers: Sequence[tuple[str, int]],
    transport: DnsTransport,
    timeout: float,
) -> dns.message.Message:
    """Send ``request`` to each of ``servers`` in turn; the first NOERROR or NXDOMAIN answer.

    SolverError naming every server and what it did if none answered so.
    """
    failures: list[str] = []
    for address, port in servers:
        try:
            response = await transport.query(request, address, port, timeout)
        except (OSError, TimeoutError, dns.exception.DNSException) as err:
            failures.append(f"{address}:{port} {describe_failure(err)}")
            continue
        if response.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return response
        failures.append(f"{address}:{port} {dns.rcode.to_text(response.rcode())}")
    question = request.question[0]
    raise SolverError(
        f"no resolver answered {dns.rdatatype.to_text(question.rdtype)} "
        f"{question.name.to_text()}: " + ("; ".join(failures) or "no resolver to ask")
    )


async def find_zone(name: dns.name.Name | str, ask: Ask) -> dns.name.Name | None:
    """The apex of the zone holding ``name``: the nearest of it and its ancestors with an SOA.

    A label at a time upwards (as lego's FindZoneByFqdn and dnspython's ``zone_for_name``
    do), each candidate's SOA is asked for through ``ask``:

    - an answer holding an SOA owned by the candidate: the candidate is the apex;
    - a negative answer about the candidate itself (NXDOMAIN or NOERROR with an empty
      answer section, so no CNAME or DNAME took it elsewhere) whose authority section
      holds the SOA of one of its ancestors: that ancestor, the zone the candidate would
      be in (RFC 2308 §2.1, §2.2, §3), without asking further;
    - anything else (a CNAME or DNAME to elsewhere, REFUSED from an authoritative server
      that does not serve the candidate, ...): its parent is asked next.

    None if neither ``name`` nor any ancestor below the root has one. The walk takes at
    most one query per label (127 at the very most). Errors of ``ask`` pass through;
    cancellable at any await.
    """
    current = dns.name.from_text(name) if isinstance(name, str) else name
    while len(current) > 1:  # stop above the root
        response = await ask(dns.message.make_query(current, dns.rdatatype.SOA))
        rcode = response.rcode()
        if rcode == dns.rcode.NOERROR and answer_records(response, current, dns.rdatatype.SOA):
            return current
        if rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) and not response.answer:
            # A negative answer about the candidate itself (an empty answer section: no
            # CNAME or DNAME took it elsewhere); its SOA is that of the enclosing zone.
            for rrset in response.authority:
                if (
                    rrset.rdtype == dns.rdatatype.SOA
                    and len(rrset.name) > 1
                    and current.is_subdomain(rrset.name)
                    and rrset.name != current
                ):
                    return rrset.name
        current = current.parent()
    return None
