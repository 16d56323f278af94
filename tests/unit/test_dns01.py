"""dns-01 (RFC 8555 §8.4): the TXT value, the record name, wildcards, CNAME delegation and
the present/cleanup lifecycle, against a memory provider and a scripted DNS."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import pytest
from dns_fakes import NS1, NS2, RESOLVER, FakeDns, MemoryProvider, example_zone
from fakes import FakeClock

from certherd.acme.messages import Challenge, Identifier, Status
from certherd.challenges.base import ChallengeTask, Solver
from certherd.challenges.dns01 import (
    Dns01Handle,
    Dns01Solver,
    dns01_record_name,
    dns01_txt_value,
)
from certherd.challenges.propagation import PropagationChecker
from certherd.errors import (
    ConfigError,
    DnsProviderError,
    PropagationTimeoutError,
    SolverError,
    UnsafeResponseError,
)

TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"  # RFC 8555 §8.3's example token
THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"  # RFC 7638 §3.1's example
KEY_AUTHORIZATION = f"{TOKEN}.{THUMBPRINT}"  # RFC 8555 §8.1: token || '.' || thumbprint
# SHA-256 of KEY_AUTHORIZATION is 653471d42925d7eb4cd39a39cda8b34d3034c94cb90067ab78c8123560ba2e5f
# (openssl dgst -sha256); base64url of those 32 bytes without '=' padding:
TXT_VALUE = "ZTRx1Ckl1-tM05o5zaizTTA0yUy5AGereMgSNWC6Ll8"


def task(
    name: str, token: str = TOKEN, key_authorization: str = KEY_AUTHORIZATION
) -> ChallengeTask:
    challenge = Challenge("https://ca.test/chall/1", "dns-01", Status.PENDING, token)
    return ChallengeTask(Identifier.dns(name), challenge, key_authorization)


def no_check() -> PropagationChecker:
    return PropagationChecker(timeout=0)


# -- RFC 8555 §8.4 -------------------------------------------------------------------------


def test_txt_value_is_base64url_of_sha256_of_the_key_authorization() -> None:
    digest = hashlib.sha256(KEY_AUTHORIZATION.encode("ascii")).digest()
    assert digest.hex() == "653471d42925d7eb4cd39a39cda8b34d3034c94cb90067ab78c8123560ba2e5f"
    assert base64.urlsafe_b64encode(digest).decode().rstrip("=") == TXT_VALUE
    assert dns01_txt_value(KEY_AUTHORIZATION) == TXT_VALUE
    assert len(TXT_VALUE) == 43  # 32 bytes, unpadded
    assert not set(TXT_VALUE) & set("+/=")


@pytest.mark.parametrize(
    ("name", "record"),
    [
        ("example.com", "_acme-challenge.example.com."),
        ("WWW.Example.COM.", "_acme-challenge.www.example.com."),
        ("*.example.com", "_acme-challenge.example.com."),  # §8.4 with §7.1.3: '*.' removed
        ("*.x.certherd.test", "_acme-challenge.x.certherd.test."),
        ("xn--bcher-kva.example", "_acme-challenge.xn--bcher-kva.example."),
    ],
)
def test_record_name(name: str, record: str) -> None:
    assert dns01_record_name(name) == record
    assert dns01_record_name(Identifier.dns(name)) == record


@pytest.mark.parametrize("name", ["a.*.example.com", "*", "*.", "."])
def test_misplaced_wildcards_are_refused(name: str) -> None:
    with pytest.raises(ConfigError):
        dns01_record_name(name)


def test_ip_identifiers_have_no_dns01_record() -> None:
    with pytest.raises(ConfigError, match="DNS names only"):
        dns01_record_name(Identifier.ip("192.0.2.7"))


def test_supports_dns_names_and_wildcards_but_not_ip_addresses() -> None:
    solver = Dns01Solver(MemoryProvider(), no_check())
    assert isinstance(solver, Solver)
    assert solver.challenge_type == "dns-01"
    assert solver.supports(Identifier.dns("example.com"))
    assert solver.supports(Identifier.dns("*.example.com"))
    assert not solver.supports(Identifier.ip("192.0.2.7"))
    assert not solver.supports(Identifier.ip("2001:db8::1"))


# -- lifecycle -----------------------------------------------------------------------------


async def test_present_adds_the_value_and_cleanup_removes_exactly_it() -> None:
    provider = MemoryProvider()
    solver = Dns01Solver(provider, no_check(), follow_cnames=False)
    handle = await solver.present(task("www.example.com"))
    assert isinstance(handle, Dns01Handle)
    assert handle.record.name == "_acme-challenge.www.example.com."
    assert handle.record.value == TXT_VALUE
    assert handle.record.domain == "www.example.com"
    assert provider.records == {"_acme-challenge.www.example.com.": [TXT_VALUE]}
    await solver.cleanup(handle)
    assert provider.records == {}
    await solver.cleanup(handle)  # already gone: no error
    await solver.cleanup(object())  # not ours: ignored


async def test_wildcard_and_base_name_share_one_txt_name_with_two_values() -> None:
    provider = MemoryProvider()
    solver = Dns01Solver(provider, no_check(), follow_cnames=False)
    other_key_authorization = f"{TOKEN[::-1]}.{THUMBPRINT}"
    wildcard, base = await asyncio.gather(
        solver.present(task("*.x.certherd.test")),
        solver.present(task("x.certherd.test", TOKEN[::-1], other_key_authorization)),
    )
    name = "_acme-challenge.x.certherd.test."
    assert sorted(provider.records[name]) == sorted(
        [TXT_VALUE, dns01_txt_value(other_key_authorization)]
    )
    assert isinstance(wildcard, Dns01Handle)
    assert wildcard.record.domain == "x.certherd.test"
    await solver.cleanup(wildcard)
    assert provider.records[name] == [dns01_txt_value(other_key_authorization)]
    await solver.cleanup(base)
    assert provider.records == {}


async def test_a_token_that_is_not_base64url_never_reaches_the_provider() -> None:
    provider = MemoryProvider()
    solver = Dns01Solver(provider, no_check())
    with pytest.raises(UnsafeResponseError):
        await solver.present(task("example.com", token="$(touch /tmp/pwned)"))
    assert provider.calls == []


async def test_a_failed_add_is_undone_and_the_error_kept() -> None:
    provider = MemoryProvider(fail_add=DnsProviderError("memory: the zone is read-only"))
    solver = Dns01Solver(provider, no_check(), follow_cnames=False)
    with pytest.raises(DnsProviderError, match="read-only"):
        await solver.present(task("example.com"))
    assert [call[0] for call in provider.calls] == ["add", "remove"]


async def test_a_value_that_never_propagates_is_removed_before_the_error() -> None:
    fake, clock = FakeDns(), FakeClock()
    example_zone(fake)
    checker = PropagationChecker(timeout=6, clock=clock, recursive=[(RESOLVER, 53)], transport=fake)
    provider = MemoryProvider()  # writes nowhere the fake DNS serves
    solver = Dns01Solver(provider, checker, follow_cnames=False)
    with pytest.raises(PropagationTimeoutError, match=r"_acme-challenge\.www\.example\.com\."):
        await solver.present(task("www.example.com"))
    assert provider.records == {}
    assert clock.elapsed == 6


async def test_present_waits_until_every_authoritative_server_serves_it() -> None:
    fake, clock = FakeDns(), FakeClock()
    example_zone(fake)
    name = "_acme-challenge.www.example.com."
    fake.add_txt(NS1, name, TXT_VALUE)

    def on_progress(_: str, ok: int, total: int) -> None:
        progress.append((ok, total))
        fake.add_txt(NS2, name, TXT_VALUE)

    progress: list[tuple[int, int]] = []
    checker = PropagationChecker(
        clock=clock, on_progress=on_progress, recursive=[(RESOLVER, 53)], transport=fake
    )
    handle = await Dns01Solver(MemoryProvider(), checker, follow_cnames=False).present(
        task("www.example.com")
    )
    assert isinstance(handle, Dns01Handle)
    assert progress == [(1, 2), (2, 2)]


async def test_cancelled_present_still_removes_its_value() -> None:
    provider = MemoryProvider(add_delay=0.05)
    solver = Dns01Solver(provider, no_check(), follow_cnames=False)
    running = asyncio.ensure_future(solver.present(task("example.com")))
    await asyncio.sleep(0.01)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert [call[0] for call in provider.calls] == ["add", "remove"]
    assert provider.records == {}


async def test_a_batch_of_presents_runs_concurrently() -> None:
    provider = MemoryProvider(add_delay=0.05)
    solver = Dns01Solver(provider, no_check(), follow_cnames=False)
    loop = asyncio.get_running_loop()
    began = loop.time()
    handles = await asyncio.gather(
        *(
            solver.present(task(f"h{n}.example.com", key_authorization=f"{TOKEN}.{n}"))
            for n in range(20)
        )
    )
    assert loop.time() - began < 0.5  # 20 x 50 ms one after another would be 1 s
    assert len(provider.records) == 20
    await asyncio.gather(*(solver.cleanup(handle) for handle in handles))
    assert provider.records == {}


# -- CNAME delegation (acme-dns style) -----------------------------------------------------


async def test_the_record_is_written_at_the_end_of_a_cname_chain() -> None:
    fake = FakeDns()
    fake.add(RESOLVER, "_acme-challenge.d.example.com.", "CNAME", "hop.example.net.")
    fake.add(RESOLVER, "hop.example.net.", "CNAME", "f00d.auth.acme-dns.test.")
    checker = PropagationChecker(timeout=0, recursive=[(RESOLVER, 53)], transport=fake)
    provider = MemoryProvider()
    solver = Dns01Solver(provider, checker)
    handle = await solver.present(task("*.d.example.com"))
    assert isinstance(handle, Dns01Handle)
    assert handle.record.name == "f00d.auth.acme-dns.test."
    assert handle.record.domain == "d.example.com"
    assert provider.records == {"f00d.auth.acme-dns.test.": [TXT_VALUE]}
    await solver.cleanup(handle)
    assert provider.records == {}


async def test_a_cname_loop_is_refused_before_anything_is_written() -> None:
    fake = FakeDns()
    fake.add(RESOLVER, "_acme-challenge.loop.example.com.", "CNAME", "a.example.net.")
    fake.add(RESOLVER, "a.example.net.", "CNAME", "_acme-challenge.loop.example.com.")
    checker = PropagationChecker(timeout=0, recursive=[(RESOLVER, 53)], transport=fake)
    provider = MemoryProvider()
    with pytest.raises(SolverError, match="CNAME loop"):
        await Dns01Solver(provider, checker).present(task("loop.example.com"))
    assert provider.calls == []


async def test_follow_cnames_off_asks_no_dns() -> None:
    fake = FakeDns()
    checker = PropagationChecker(timeout=0, recursive=[(RESOLVER, 53)], transport=fake)
    await Dns01Solver(MemoryProvider(), checker, follow_cnames=False).present(task("a.test"))
    assert fake.queries == []
