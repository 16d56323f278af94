"""PropagationChecker against a scripted DNS and a fake clock: no network, no sleeping."""

from __future__ import annotations

import dns.rcode
import pytest
from dns_fakes import NS1, NS2, RESOLVER, FakeDns, example_zone
from fakes import FakeClock

from certherd.challenges.propagation import PropagationChecker, normalize_name
from certherd.errors import ConfigError, PropagationTimeoutError, SolverError

NAME = "_acme-challenge.www.example.com."
VALUE = "ZTRx1Ckl1-tM05o5zaizTTA0yUy5AGereMgSNWC6Ll8"


@pytest.fixture
def fake() -> FakeDns:
    fake = FakeDns()
    example_zone(fake)
    return fake


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def checker(fake: FakeDns, clock: FakeClock, **options: object) -> PropagationChecker:
    progress: list[tuple[str, int, int]] = []
    made = PropagationChecker(
        timeout=options.pop("timeout", 30.0),  # type: ignore[arg-type]
        interval=options.pop("interval", 2.0),  # type: ignore[arg-type]
        clock=clock,
        on_progress=lambda name, ok, total: progress.append((name, ok, total)),
        recursive=[(RESOLVER, 53)],
        transport=fake,
        **options,  # type: ignore[arg-type]
    )
    made.progress = progress  # type: ignore[attr-defined]
    return made


async def test_walk_finds_the_zone_a_label_at_a_time(fake: FakeDns, clock: FakeClock) -> None:
    assert await checker(fake, clock).find_zone(NAME) == "example.com."
    asked = [q.name for q in fake.asked(RESOLVER, "SOA")]
    assert asked == [NAME, "www.example.com.", "example.com."]
    assert all(q.recursion_desired for q in fake.asked(RESOLVER))


async def test_no_zone_at_all_is_a_solver_error(clock: FakeClock) -> None:
    with pytest.raises(SolverError, match="no DNS zone found"):
        await checker(FakeDns(), clock).find_zone("a.b.test.")


async def test_servers_are_the_ns_hosts_with_their_addresses(
    fake: FakeDns, clock: FakeClock
) -> None:
    servers = await checker(fake, clock).servers_for(NAME)
    assert [(s.host, s.addresses, s.port) for s in servers] == [
        ("ns1.example.com.", (NS1,), 53),
        ("ns2.example.com.", (NS2,), 53),
    ]


async def test_servers_of_a_zone_are_looked_up_once_for_a_batch(
    fake: FakeDns, clock: FakeClock
) -> None:
    check = checker(fake, clock)
    for label in ("a", "b", "c"):
        await check.servers_for(f"_acme-challenge.{label}.example.com.")
    assert len(fake.asked(RESOLVER, "NS")) == 1


async def test_served_everywhere_returns_at_once(fake: FakeDns, clock: FakeClock) -> None:
    fake.add_txt(NS1, NAME, "other-value", VALUE)
    fake.add_txt(NS2, NAME, VALUE)
    check = checker(fake, clock)
    await check.wait(NAME, VALUE)
    assert check.progress == [(NAME, 2, 2)]  # type: ignore[attr-defined]
    assert clock.sleeps == []
    # RFC 1035 §4.1.1: the authoritative servers are asked with RD off.
    assert not any(q.recursion_desired for q in fake.asked(NS1) + fake.asked(NS2))


async def test_waits_for_a_slow_secondary_and_reports_progress(
    fake: FakeDns, clock: FakeClock
) -> None:
    fake.add_txt(NS1, NAME, VALUE)
    rounds = 0

    def on_progress(name: str, ok: int, total: int) -> None:
        nonlocal rounds
        rounds += 1
        seen.append((ok, total))
        if rounds == 3:
            fake.add_txt(NS2, NAME, VALUE)  # the secondary catches up

    seen: list[tuple[int, int]] = []
    check = checker(fake, clock)
    check.on_progress = on_progress
    await check.wait(NAME, VALUE)
    assert seen == [(1, 2), (1, 2), (1, 2), (2, 2)]
    assert clock.sleeps == [2.0, 2.0, 2.0]
    # A server that served the value is not asked again.
    assert len(fake.asked(NS1, "TXT")) == 1


async def test_timeout_names_the_record_and_the_servers_lacking_it(
    fake: FakeDns, clock: FakeClock
) -> None:
    fake.add_txt(NS1, NAME, VALUE)
    fake.add_txt(NS2, NAME, "an-old-value")
    check = checker(fake, clock, timeout=10.0, interval=3.0)
    with pytest.raises(PropagationTimeoutError) as caught:
        await check.wait(NAME, VALUE)
    message = str(caught.value)
    assert NAME in message
    assert VALUE in message
    assert "by 1 of 2 name servers" in message
    assert "ns2.example.com. (192.0.2.2): 1 other TXT value(s), not this one" in message
    assert "ns1.example.com" not in message
    assert clock.sleeps == [3.0, 3.0, 3.0, 1.0]  # the last sleep is cut to the deadline
    assert check.progress[-1] == (NAME, 1, 2)  # type: ignore[attr-defined]


async def test_a_silent_server_is_reported_as_such(fake: FakeDns, clock: FakeClock) -> None:
    fake.add_txt(NS1, NAME, VALUE)
    fake.down.add(NS2)
    with pytest.raises(PropagationTimeoutError, match=r"no answer from 192\.0\.2\.2 \(timed out\)"):
        await checker(fake, clock, timeout=4.0).wait(NAME, VALUE)


async def test_nxdomain_and_refusals_are_reported(fake: FakeDns, clock: FakeClock) -> None:
    fake.rcodes[NS2] = dns.rcode.REFUSED
    with pytest.raises(PropagationTimeoutError) as caught:
        await checker(fake, clock, timeout=1.0).wait(NAME, VALUE)
    assert "no such name (NXDOMAIN)" in str(caught.value)
    assert "answered REFUSED" in str(caught.value)


async def test_split_txt_strings_are_joined(fake: FakeDns, clock: FakeClock) -> None:
    for address in (NS1, NS2):
        fake.add(address, NAME, "TXT", f'"{VALUE[:20]}" "{VALUE[20:]}"')
    await checker(fake, clock).wait(NAME, VALUE)


async def test_timeout_zero_skips_the_check(fake: FakeDns, clock: FakeClock) -> None:
    await checker(fake, clock, timeout=0).wait(NAME, VALUE)
    assert fake.queries == []


async def test_no_resolver_answers_ends_in_a_clear_timeout(clock: FakeClock) -> None:
    fake = FakeDns(down={RESOLVER})
    with pytest.raises(PropagationTimeoutError) as caught:
        await checker(fake, clock, timeout=5.0).wait(NAME, VALUE)
    assert "without finding the servers to check" in str(caught.value)
    assert "10.0.0.53:53 timed out" in str(caught.value)


async def test_zone_found_late_is_still_checked(fake: FakeDns, clock: FakeClock) -> None:
    fake.down.add(RESOLVER)
    for address in (NS1, NS2):
        fake.add_txt(address, NAME, VALUE)
    check = checker(fake, clock)
    check.on_progress = lambda *_: fake.down.discard(RESOLVER)
    await check.wait(NAME, VALUE)
    assert clock.sleeps == [2.0]


async def test_resolver_mode_checks_that_one_server_only(clock: FakeClock) -> None:
    fake = FakeDns()
    fake.add_txt("127.0.0.1", NAME, VALUE)
    check = PropagationChecker(resolver=("127.0.0.1", 5353), clock=clock, transport=fake)
    assert [str(s) for s in await check.servers_for(NAME)] == ["127.0.0.1"]
    await check.wait(NAME, VALUE)
    assert [(q.address, q.rdtype, q.recursion_desired) for q in fake.queries] == [
        ("127.0.0.1", "TXT", True)
    ]


async def test_follow_cname_chain(clock: FakeClock) -> None:
    fake = FakeDns()
    fake.add(RESOLVER, "_acme-challenge.a.test.", "CNAME", "b.test.")
    fake.add(RESOLVER, "b.test.", "CNAME", "c.acme-dns.test.")
    fake.add(RESOLVER, "c.acme-dns.test.", "TXT", '"x"')
    check = checker(fake, clock)
    assert await check.follow_cname("_acme-challenge.A.test") == "c.acme-dns.test."
    assert await check.follow_cname("no-cname.test.") == "no-cname.test."


async def test_cname_loops_and_long_chains_are_refused(clock: FakeClock) -> None:
    fake = FakeDns()
    fake.add(RESOLVER, "a.test.", "CNAME", "b.test.")
    fake.add(RESOLVER, "b.test.", "CNAME", "a.test.")
    for hop in range(20):
        fake.add(RESOLVER, f"h{hop}.test.", "CNAME", f"h{hop + 1}.test.")
    check = checker(fake, clock)
    with pytest.raises(SolverError, match=r"CNAME loop: a\.test\. -> b\.test\. -> a\.test\."):
        await check.follow_cname("a.test.")
    with pytest.raises(SolverError, match="longer than 8 hops"):
        await check.follow_cname("h0.test.")


def test_names_and_settings_are_checked() -> None:
    assert normalize_name("WWW.Example.com") == "www.example.com."
    with pytest.raises(ConfigError):
        normalize_name(" . ")
    with pytest.raises(ConfigError):
        PropagationChecker(timeout=-1)
    with pytest.raises(ConfigError):
        PropagationChecker(interval=0)
