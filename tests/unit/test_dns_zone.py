"""The one zone finder (certherd.dns.zone.find_zone) against scripted DNS answers.

Each answer is a real dnspython message, shaped as BIND9 or a recursive resolver shapes
it; the integration tests (tests/integration/dns) run the same walk against BIND9.
"""

from __future__ import annotations

from collections.abc import Callable

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from dns_fakes import RESOLVER, FakeDns

from certherd.dns.zone import ask_in_turn, find_zone
from certherd.errors import SolverError

SOA = "ns1.{zone} hostmaster.{zone} 1 3600 600 86400 60"
Script = dict[str, Callable[[dns.message.Message], dns.message.Message]]


def apex(zone: str) -> Callable[[dns.message.Message], dns.message.Message]:
    """The answer at a zone apex: its SOA in the answer section."""

    def answer(query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.answer.append(dns.rrset.from_text(zone, 60, "IN", "SOA", SOA.format(zone=zone)))
        return response

    return answer


def negative(
    rcode: dns.rcode.Rcode, zone: str | None, cname: str | None = None
) -> Callable[[dns.message.Message], dns.message.Message]:
    """NXDOMAIN or NODATA, with ``zone``'s SOA in the authority section (RFC 2308 §3);
    with ``cname``, the chain a resolver followed from the name asked for first."""

    def answer(query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.set_rcode(rcode)
        if cname is not None:
            owner = query.question[0].name.to_text()
            response.answer.append(dns.rrset.from_text(owner, 60, "IN", "CNAME", cname))
        if zone is not None:
            soa = dns.rrset.from_text(zone, 60, "IN", "SOA", SOA.format(zone=zone))
            response.authority.append(soa)
        return response

    return answer


def refused(query: dns.message.Message) -> dns.message.Message:
    response = dns.message.make_response(query)
    response.set_rcode(dns.rcode.REFUSED)
    return response


class Scripted:
    """An ``ask`` answering from ``script`` by the name asked for; NXDOMAIN otherwise."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.asked: list[str] = []

    async def __call__(self, query: dns.message.Message) -> dns.message.Message:
        question = query.question[0]
        assert question.rdtype == dns.rdatatype.SOA
        name = question.name.to_text()
        self.asked.append(name)
        return self.script.get(name, negative(dns.rcode.NXDOMAIN, None))(query)


async def test_the_walk_goes_up_a_label_at_a_time_to_the_apex() -> None:
    ask = Scripted({"example.com.": apex("example.com.")})
    zone = await find_zone("_acme-challenge.www.example.com.", ask)
    assert zone == dns.name.from_text("example.com.")
    assert ask.asked == ["_acme-challenge.www.example.com.", "www.example.com.", "example.com."]


async def test_the_soa_of_a_negative_answer_names_the_zone_at_once() -> None:
    """RFC 2308 §3: BIND9 puts the zone's SOA beside NXDOMAIN and NODATA answers."""
    for rcode in (dns.rcode.NXDOMAIN, dns.rcode.NOERROR):
        ask = Scripted({"_acme-challenge.a.b.example.com.": negative(rcode, "b.example.com.")})
        zone = await find_zone("_acme-challenge.a.b.example.com.", ask)
        assert zone == dns.name.from_text("b.example.com.")
        assert ask.asked == ["_acme-challenge.a.b.example.com."]


async def test_a_cname_is_not_an_apex_even_when_its_target_is_one() -> None:
    """A resolver follows the CNAME: the SOA in the answer is the target's, not the name's."""
    ask = Scripted(
        {
            "_acme-challenge.example.com.": lambda query: _cname_to_apex(query, "acme.test."),
            "example.com.": apex("example.com."),
        }
    )
    assert await find_zone("_acme-challenge.example.com.", ask) == dns.name.from_text(
        "example.com."
    )
    assert ask.asked == ["_acme-challenge.example.com.", "example.com."]


async def test_a_negative_answer_at_the_end_of_a_cname_says_nothing_of_the_name() -> None:
    """``_acme-challenge.a.example.com`` (zone ``a.example.com``) points into the parent
    zone: the SOA beside the NXDOMAIN is the target's zone, an ancestor by chance."""
    ask = Scripted(
        {
            "_acme-challenge.a.example.com.": negative(
                dns.rcode.NXDOMAIN, "example.com.", cname="gone.example.com."
            ),
            "a.example.com.": apex("a.example.com."),
        }
    )
    zone = await find_zone("_acme-challenge.a.example.com.", ask)
    assert zone == dns.name.from_text("a.example.com.")


async def test_an_soa_of_another_branch_is_ignored() -> None:
    ask = Scripted(
        {
            "x.example.com.": negative(dns.rcode.NXDOMAIN, "example.net."),
            "example.com.": apex("example.com."),
        }
    )
    assert await find_zone("x.example.com.", ask) == dns.name.from_text("example.com.")
    assert ask.asked == ["x.example.com.", "example.com."]


async def test_a_refusal_goes_up_and_no_zone_at_all_is_none() -> None:
    """An authoritative server refuses names outside its zones (RFC 2136's primary)."""
    ask = Scripted({"b.test.": refused, "test.": refused})
    assert await find_zone("a.b.test", ask) is None
    assert ask.asked == ["a.b.test.", "b.test.", "test."]  # never the root


async def test_errors_of_the_sender_pass_through() -> None:
    async def broken(query: dns.message.Message) -> dns.message.Message:
        raise SolverError("no resolver answered")

    with pytest.raises(SolverError, match="no resolver answered"):
        await find_zone("example.com.", broken)


async def test_ask_in_turn_tries_each_server_and_names_every_failure() -> None:
    fake = FakeDns()
    fake.down.add("10.0.0.1")
    fake.rcodes["10.0.0.2"] = dns.rcode.SERVFAIL
    fake.add(RESOLVER, "example.com.", "SOA", SOA.format(zone="example.com."))
    query = dns.message.make_query("example.com.", "SOA")
    servers = [("10.0.0.1", 53), ("10.0.0.2", 53), (RESOLVER, 53)]
    response = await ask_in_turn(query, servers, fake, 1.0)
    assert response.answer[0].rdtype == dns.rdatatype.SOA
    with pytest.raises(SolverError) as caught:
        await ask_in_turn(query, servers[:2], fake, 1.0)
    assert str(caught.value) == (
        "no resolver answered SOA example.com.: 10.0.0.1:53 timed out; 10.0.0.2:53 SERVFAIL"
    )


def _cname_to_apex(query: dns.message.Message, target: str) -> dns.message.Message:
    response = dns.message.make_response(query)
    owner = query.question[0].name.to_text()
    response.answer.append(dns.rrset.from_text(owner, 60, "IN", "CNAME", target))
    response.answer.append(dns.rrset.from_text(target, 60, "IN", "SOA", SOA.format(zone=target)))
    return response
