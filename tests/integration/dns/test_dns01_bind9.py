"""dns-01 end to end: real BIND9, real Pebble resolving through it, real providers.

Pebble's validator asks BIND9 (``PebbleOptions.dns_server``) for the TXT records; the
solver publishes them by RFC 2136 (or through an exec hook) and checks propagation by
asking BIND9 itself, found by walking the zones (SOA, then NS ``ns1.<zone>`` -> 127.0.0.1).
Every test ends by reading BIND9 directly: no TXT value may be left behind.

BIND9 runs with ``recursion no``, and an authoritative-only BIND answers a CNAME whose
target is in another zone with the CNAME alone, even when it serves that zone too. A CA
asks a recursive resolver, which follows the chain; :class:`CnameChasingResolver` plays
that part in front of BIND9 for the CNAME-delegation test.
"""

from __future__ import annotations

import asyncio
import secrets
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rdataclass
import dns.rdatatype
import pytest
from acme_helpers import PebbleFactory, registered
from tests.contract.provider_support import write_update_hook
from tests.servers.bind9 import Bind9Server

from certherd.acme.messages import Identifier
from certherd.challenges.base import ChallengeTask
from certherd.challenges.dns01 import Dns01Handle, Dns01Solver, dns01_txt_value
from certherd.challenges.propagation import PropagationChecker
from certherd.crypto.certs import describe_certificate
from certherd.dns.base import DnsProvider, ProviderInfo, TxtRecord
from certherd.dns.exec import ExecConfig, ExecProvider
from certherd.dns.lexicon import LexiconProvider
from certherd.dns.rfc2136 import Rfc2136Config, Rfc2136Provider
from certherd.errors import OrderFailedError, PropagationTimeoutError
from certherd.manager.obtain import obtain_certificate
from certherd.testing.pebble import PebbleServer

pytestmark = pytest.mark.integration

Progress = list[tuple[str, int, int]]


@pytest.fixture(scope="module")
def pebble_on_bind9(bind9: Bind9Server, pebble_factory: PebbleFactory) -> PebbleServer:
    """A Pebble whose validator resolves every name through the session's BIND9."""
    host, port = bind9.address
    return pebble_factory(
        dns_server=f"{host}:{port}", start_challtestsrv=False, authz_reuse_percent=0
    )


@pytest.fixture(scope="module")
def pebble_recursive(
    chasing_resolver: tuple[str, int], pebble_factory: PebbleFactory
) -> PebbleServer:
    """A Pebble resolving through a CNAME-chasing resolver in front of BIND9, as a CA does."""
    host, port = chasing_resolver
    return pebble_factory(
        dns_server=f"{host}:{port}", start_challtestsrv=False, authz_reuse_percent=0
    )


@pytest.fixture
def rfc2136(bind9: Bind9Server) -> Rfc2136Provider:
    host, port = bind9.address
    return Rfc2136Provider(
        Rfc2136Config(
            server=host,
            port=port,
            key_name=bind9.tsig_key_name,
            key_secret=bind9.tsig_secret,
            algorithm=bind9.tsig_algorithm,
        )
    )


def authoritative_checker(
    bind9: Bind9Server, progress: Progress, **options: float
) -> PropagationChecker:
    """The full walk: SOA/NS through BIND9 as the resolver, then every NS asked directly."""
    return PropagationChecker(
        timeout=options.get("timeout", 20.0),
        interval=options.get("interval", 0.2),
        on_progress=lambda *report: progress.append(report),
        recursive=[bind9.address],
        nameserver_port=bind9.address[1],
    )


class CnameChasingResolver(socketserver.ThreadingUDPServer):
    """A tiny recursive resolver on loopback UDP: asks BIND9, follows CNAMEs across zones."""

    daemon_threads = True

    def __init__(self, upstream: tuple[str, int]) -> None:
        super().__init__(("127.0.0.1", 0), _ChaseHandler)
        self.upstream = upstream

    def resolve(self, request: dns.message.Message) -> dns.message.Message:
        host, port = self.upstream
        question = request.question[0]
        response = dns.query.udp(request, host, port=port, timeout=3)
        name = question.name
        for _ in range(8):  # a bounded chain, as real resolvers bound it
            cname = response.get_rrset(
                response.answer, name, dns.rdataclass.IN, dns.rdatatype.CNAME
            )
            if cname is None or question.rdtype == dns.rdatatype.CNAME:
                break
            name = cname[0].target
            if response.get_rrset(response.answer, name, dns.rdataclass.IN, question.rdtype):
                break
            chased = dns.query.udp(
                dns.message.make_query(name, question.rdtype), host, port=port, timeout=3
            )
            response.answer.extend(chased.answer)
        response.flags |= dns.flags.RA
        return response


class _ChaseHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        server = self.server
        assert isinstance(server, CnameChasingResolver)
        response = server.resolve(dns.message.from_wire(data))
        sock.sendto(response.to_wire(), self.client_address)


@pytest.fixture(scope="module")
def chasing_resolver(bind9: Bind9Server) -> Iterator[tuple[str, int]]:
    """``(host, port)`` of a :class:`CnameChasingResolver` in front of BIND9."""
    server = CnameChasingResolver(bind9.address)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[0], server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(5)


class Recording:
    """Wraps a provider; keeps every record added and what BIND9 served right after."""

    def __init__(self, inner: DnsProvider, bind9: Bind9Server) -> None:
        self.inner = inner
        self.info: ProviderInfo = inner.info
        self.bind9 = bind9
        self.added: list[TxtRecord] = []
        self.removed: list[TxtRecord] = []
        self.served_after_add: list[set[str]] = []

    async def add_txt(self, record: TxtRecord) -> None:
        await self.inner.add_txt(record)
        self.added.append(record)
        served = await asyncio.to_thread(self.bind9.query, record.name, "TXT")
        self.served_after_add.append(set(served))

    async def remove_txt(self, record: TxtRecord) -> None:
        self.removed.append(record)
        await self.inner.remove_txt(record)


class NothingProvider:
    """Claims success and publishes nothing: the value can never propagate."""

    info = ProviderInfo("nothing", "publishes nothing", {})

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def add_txt(self, record: TxtRecord) -> None:
        self.calls.append(("add", record.name))

    async def remove_txt(self, record: TxtRecord) -> None:
        self.calls.append(("remove", record.name))


class WrongValueSolver(Dns01Solver):
    """Publishes (and cleans up) a value made from a wrong key authorization."""

    async def record_for(self, task: ChallengeTask) -> TxtRecord:
        wrong = ChallengeTask(task.identifier, task.challenge, f"{task.token}.wrong-thumbprint")
        return await super().record_for(wrong)


def txt_left(bind9: Bind9Server, *names: str) -> dict[str, list[str]]:
    return {name: values for name in names if (values := bind9.query(name, "TXT"))}


async def test_wildcard_and_base_name_in_one_order(
    bind9: Bind9Server, pebble_on_bind9: PebbleServer, rfc2136: Rfc2136Provider
) -> None:
    progress: Progress = []
    provider = Recording(rfc2136, bind9)
    solver = Dns01Solver(provider, authoritative_checker(bind9, progress))
    names = ["*.x.certherd.test", "x.certherd.test"]
    async with registered(pebble_on_bind9) as client:
        issued = await obtain_certificate(client, names, [solver])
    assert sorted(describe_certificate(issued.chain.leaf).dns_names) == sorted(names)
    txt_name = "_acme-challenge.x.certherd.test."
    # Both values went to one name, and the second add kept the first.
    assert [record.name for record in provider.added] == [txt_name, txt_name]
    assert len({record.value for record in provider.added}) == 2
    assert provider.served_after_add[-1] == {record.value for record in provider.added}
    # The walk found ns1.certherd.test. (one server) and waited until it served each value.
    assert (txt_name, 1, 1) in progress
    assert {total for _, _, total in progress} == {1}
    # Cleanup removed exactly the two values: nothing is left.
    assert sorted(r.value for r in provider.removed) == sorted(r.value for r in provider.added)
    assert txt_left(bind9, txt_name) == {}


async def test_cname_delegation_writes_at_the_target_in_another_zone(
    bind9: Bind9Server, pebble_recursive: PebbleServer, rfc2136: Rfc2136Provider
) -> None:
    label = f"d{secrets.token_hex(4)}"
    challenge_name = f"_acme-challenge.{label}.certherd.test."
    target = f"{label}-validation.delegated.test."
    bind9.add_record(challenge_name, "CNAME", target)
    try:
        progress: Progress = []
        provider = Recording(rfc2136, bind9)
        solver = Dns01Solver(provider, authoritative_checker(bind9, progress))
        async with registered(pebble_recursive) as client:
            issued = await obtain_certificate(client, [f"{label}.certherd.test"], [solver])
        assert describe_certificate(issued.chain.leaf).dns_names == (f"{label}.certherd.test",)
        assert [record.name for record in provider.added] == [target]
        assert provider.served_after_add == [{provider.added[0].value}]
        assert progress[-1] == (target, 1, 1)  # ns1.delegated.test. was checked
        # The main zone was never written to; the target is clean again.
        assert bind9.query(challenge_name, "CNAME") == [target]
        assert txt_left(bind9, target) == {}
    finally:
        bind9.delete_record(challenge_name, "CNAME")


async def test_propagation_reports_progress_and_times_out_clearly(
    bind9: Bind9Server, pebble_on_bind9: PebbleServer
) -> None:
    progress: Progress = []
    provider = NothingProvider()
    checker = PropagationChecker(
        timeout=1.0,
        interval=0.25,
        resolver=bind9.address,
        on_progress=lambda *report: progress.append(report),
    )
    name = f"never-{secrets.token_hex(4)}.certherd.test"
    loop = asyncio.get_running_loop()
    async with registered(pebble_on_bind9) as client:
        began = loop.time()
        with pytest.raises(PropagationTimeoutError) as caught:
            await obtain_certificate(client, [name], [Dns01Solver(provider, checker)])
        took = loop.time() - began
    message = str(caught.value)
    txt_name = f"_acme-challenge.{name}."
    assert f"TXT {txt_name} value" in message
    assert "not served after 1s by 1 of 1 name servers" in message
    assert f"{bind9.address[0]}: no TXT record" in message
    assert len(progress) >= 3
    assert set(progress) == {(txt_name, 0, 1)}
    assert 1.0 <= took < 5.0
    assert provider.calls == [("add", txt_name), ("remove", txt_name)]


async def test_failed_validation_still_cleans_up(
    bind9: Bind9Server, pebble_on_bind9: PebbleServer, rfc2136: Rfc2136Provider
) -> None:
    provider = Recording(rfc2136, bind9)
    progress: Progress = []
    solver = WrongValueSolver(provider, authoritative_checker(bind9, progress))
    name = f"wrong-{secrets.token_hex(4)}.certherd.test"
    async with registered(pebble_on_bind9) as client:
        with pytest.raises(OrderFailedError) as caught:
            await obtain_certificate(client, [name], [solver])
    # Pebble 2.4 reports a wrong TXT value as "unauthorized", not "incorrectResponse".
    assert "unauthorized: Correct value not found for DNS challenge" in str(caught.value)
    txt_name = f"_acme-challenge.{name}."
    assert len(provider.added) == 1
    assert provider.served_after_add == [{provider.added[0].value}]  # it was published
    assert provider.removed == provider.added
    assert txt_left(bind9, txt_name) == {}


async def test_exec_hook_provider_issues_through_bind9(
    bind9: Bind9Server, pebble_on_bind9: PebbleServer, tmp_path: Path
) -> None:
    hook = write_update_hook(bind9, tmp_path)
    provider = Recording(ExecProvider(ExecConfig(str(hook), timeout=20), environ={}), bind9)
    progress: Progress = []
    solver = Dns01Solver(provider, authoritative_checker(bind9, progress))
    label = f"hook{secrets.token_hex(4)}"
    names = [f"*.{label}.certherd.test", f"{label}.certherd.test"]
    async with registered(pebble_on_bind9) as client:
        issued = await obtain_certificate(client, names, [solver])
    assert sorted(describe_certificate(issued.chain.leaf).dns_names) == sorted(names)
    assert len(provider.added) == 2
    assert txt_left(bind9, f"_acme-challenge.{label}.certherd.test.") == {}


async def test_solver_present_and_cleanup_against_bind9_directly(
    bind9: Bind9Server, rfc2136: Rfc2136Provider
) -> None:
    """The lifecycle alone (no CA): present waits until served, cleanup removes it."""
    from certherd.acme.messages import Challenge, Status

    token = secrets.token_urlsafe(32)
    key_authorization = f"{token}.thumbprint"
    task = ChallengeTask(
        Identifier.dns(f"direct{secrets.token_hex(4)}.certherd.test"),
        Challenge("https://ca.test/chall/1", "dns-01", Status.PENDING, token),
        key_authorization,
    )
    solver = Dns01Solver(
        rfc2136, PropagationChecker(timeout=10, interval=0.1, resolver=bind9.address)
    )
    handle = await solver.present(task)
    assert isinstance(handle, Dns01Handle)
    assert bind9.query(handle.record.name, "TXT") == [dns01_txt_value(key_authorization)]
    await solver.cleanup(handle)
    assert bind9.query(handle.record.name, "TXT") == []


async def test_lexicon_finds_the_zone_through_a_resolver(
    bind9: Bind9Server, tmp_path: Path
) -> None:
    """Without a 'zone' setting, lexicon's zone is found by SOA lookups (here via BIND9)."""
    zone_file = tmp_path / "certherd.test.zone"
    zone_file.write_text(
        "$ORIGIN certherd.test.\n$TTL 60\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n"
        "@ IN NS ns1\nns1 IN A 127.0.0.1\n"
    )
    host, port = bind9.address
    provider = LexiconProvider.from_settings(
        {"provider": "localzone", "filename": str(zone_file), "resolver": f"{host}:{port}"}, {}
    )
    record = TxtRecord(
        "_acme-challenge.deep.sub.certherd.test.", "v" * 43, "deep.sub.certherd.test"
    )
    await provider.add_txt(record)
    assert '_acme-challenge.deep.sub 60 IN TXT "' + "v" * 43 + '"' in zone_file.read_text()
    await provider.remove_txt(record)
    assert "_acme-challenge" not in zone_file.read_text()
