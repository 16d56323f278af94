"""Test doubles for dns-01: a scripted DNS (a :class:`DnsTransport`) and a memory provider.

``FakeDns`` answers queries from per-address record tables, the way a recursive resolver
and authoritative servers would, and records every query; ``MemoryProvider`` keeps TXT
values in a dict and records every call. Nothing touches the network.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from certherd.dns.base import ProviderInfo, TxtRecord

RESOLVER = "10.0.0.53"
NS1 = "192.0.2.1"
NS2 = "192.0.2.2"


@dataclass(frozen=True)
class Query:
    address: str
    name: str
    rdtype: str
    recursion_desired: bool


@dataclass
class FakeDns:
    """Per-address tables ``{(name, TYPE): [zone-file rdata]}``; unknown names are NXDOMAIN."""

    tables: dict[str, dict[tuple[str, str], list[str]]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    down: set[str] = field(default_factory=set)
    rcodes: dict[str, dns.rcode.Rcode] = field(default_factory=dict)
    queries: list[Query] = field(default_factory=list)

    def add(self, address: str, name: str, rdtype: str, *values: str) -> None:
        self.tables[address].setdefault((name, rdtype), []).extend(values)

    def add_txt(self, address: str, name: str, *values: str) -> None:
        self.add(address, name, "TXT", *(f'"{value}"' for value in values))

    async def query(
        self, request: dns.message.Message, address: str, port: int, timeout: float
    ) -> dns.message.Message:
        question = request.question[0]
        name = question.name.to_text().lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        rd = bool(request.flags & dns.flags.RD)
        self.queries.append(Query(address, name, rdtype, rd))
        await asyncio.sleep(0)
        if address in self.down:
            raise dns.exception.Timeout(timeout=timeout)
        response = dns.message.make_response(request)
        if address in self.rcodes:
            response.set_rcode(self.rcodes[address])
            return response
        table = self.tables.get(address, {})
        values = table.get((name, rdtype))
        if values:
            response.answer.append(dns.rrset.from_text_list(name, 60, "IN", rdtype, values))
        elif not any(owner == name for owner, _ in table):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response

    def asked(self, address: str | None = None, rdtype: str | None = None) -> list[Query]:
        return [
            q
            for q in self.queries
            if (address is None or q.address == address) and (rdtype is None or q.rdtype == rdtype)
        ]


def example_zone(fake: FakeDns, zone: str = "example.com.") -> None:
    """``zone`` with SOA, two name servers (ns1/ns2 at NS1/NS2) as the resolver sees it."""
    fake.add(RESOLVER, zone, "SOA", f"ns1.{zone} hostmaster.{zone} 1 3600 600 86400 60")
    fake.add(RESOLVER, zone, "NS", f"ns1.{zone}", f"ns2.{zone}")
    fake.add(RESOLVER, f"ns1.{zone}", "A", NS1)
    fake.add(RESOLVER, f"ns2.{zone}", "A", NS2)
    for address in (NS1, NS2):
        fake.add(address, zone, "SOA", f"ns1.{zone} hostmaster.{zone} 1 3600 600 86400 60")


@dataclass
class MemoryProvider:
    """A DnsProvider keeping TXT sets in memory; ``fail_add`` makes adds raise."""

    records: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    fail_add: Exception | None = None
    add_delay: float = 0.0
    info: ProviderInfo = field(
        default_factory=lambda: ProviderInfo("memory", "TXT values in a dict", {})
    )

    async def add_txt(self, record: TxtRecord) -> None:
        self.calls.append(("add", record.name, record.value))
        if self.add_delay:
            await asyncio.sleep(self.add_delay)
        if self.fail_add is not None:
            raise self.fail_add
        if record.value not in self.records[record.name]:
            self.records[record.name].append(record.value)

    async def remove_txt(self, record: TxtRecord) -> None:
        self.calls.append(("remove", record.name, record.value))
        values = self.records.get(record.name, [])
        if record.value in values:
            values.remove(record.value)
        if not values:
            self.records.pop(record.name, None)
