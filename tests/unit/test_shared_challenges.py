"""The ``fleet`` solver kind and the listeners of ``run --http-serve`` / ``--tls-alpn-serve``
(issue 12 item 5): key authorizations in the shared storage, written and deleted under
the lineage's lease, answered by any listener, and nothing unsound ever answered or used
to build a key.

The listeners are real (loopback sockets, Python's own HTTP and TLS clients); the
storage is the in-memory backend of the storage contract (the PostgreSQL path is the
netns e2e, tests/e2e/test_cli_fleet_challenges.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import socket
import ssl
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from cryptography import x509

from certherd.acme.messages import Challenge, Identifier, Status
from certherd.challenges.base import ChallengeTask
from certherd.challenges.listeners import SharedHttp01Server, SharedTlsAlpn01Server
from certherd.challenges.shared import RecordSweeper, SharedSolver, shared_answer, sweep
from certherd.challenges.tlsalpn01 import ACME_TLS_PROTOCOL, ID_PE_ACME_IDENTIFIER
from certherd.errors import (
    ConfigError,
    FencedError,
    SolverError,
    StorageError,
    UnsafeResponseError,
)
from certherd.storage.leases import holding
from certherd.storage.memory import MemoryStorage

LOOPBACK = "127.0.0.1"
TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"  # RFC 8555 §8.3
THUMBPRINT = "9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
KEY_AUTHORIZATION = f"{TOKEN}.{THUMBPRINT}"
PREFIX = "/.well-known/acme-challenge/"


def task(
    name: str = "www.fleet.test",
    token: str = TOKEN,
    challenge: str = "http-01",
    key_authorization: str | None = None,
) -> ChallengeTask:
    identifier = Identifier.parse(name)
    found = Challenge(url="https://ca.test/c/1", type=challenge, status=Status.PENDING, token=token)
    return ChallengeTask(identifier, found, key_authorization or f"{token}.{THUMBPRINT}")


@pytest.fixture
async def http_server() -> AsyncIterator[tuple[MemoryStorage, SharedHttp01Server]]:
    storage = MemoryStorage()
    server = SharedHttp01Server(storage, port=0, host=LOOPBACK)
    await server.start()
    yield storage, server
    await server.stop()


async def fetch(server: SharedHttp01Server, path: str, method: str = "GET") -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.request(method, f"http://{LOOPBACK}:{server.port}{path}")


async def test_a_key_authorization_one_node_presents_another_listener_answers(
    http_server: tuple[MemoryStorage, SharedHttp01Server],
) -> None:
    storage, server = http_server
    solver = SharedSolver(storage, "http-01")  # the node that ordered: no listener at all
    assert (await fetch(server, PREFIX + TOKEN)).status_code == 404
    async with holding(storage, "www.fleet.test") as lease:
        handle = await solver.present(task())
        answer = await fetch(server, PREFIX + TOKEN)
        assert (answer.status_code, answer.text) == (200, KEY_AUTHORIZATION)
        stored = json.loads(storage.values[f"challenges/http-01/{TOKEN}.json"])
        assert stored["lineage"] == lease.name == "www.fleet.test"
        assert (await fetch(server, PREFIX + TOKEN, "HEAD")).status_code == 200
        await solver.cleanup(handle)
    await server.view.refresh()  # what the next poll (or, on PostgreSQL, NOTIFY) does
    assert (await fetch(server, PREFIX + TOKEN)).status_code == 404
    assert await storage.list("challenges/") == await storage.list("challenges/listeners/")
    counted = {s.labels["result"]: s.value for f in server.collect() for s in f.samples}
    assert counted == {"answered": 2, "unknown": 2, "busy": 0}


@pytest.mark.parametrize(
    "path",
    [
        PREFIX + "..%2f..%2fetc%2fpasswd",
        PREFIX + "../../renewal/www.fleet.test",
        PREFIX + "short",
        PREFIX + TOKEN + ".json",
        PREFIX + TOKEN + "/x",
        PREFIX,
        "/" + TOKEN,
    ],
)
async def test_anything_but_a_base64url_token_is_404_and_reads_nothing(
    http_server: tuple[MemoryStorage, SharedHttp01Server], path: str
) -> None:
    storage, server = http_server
    reads: list[str] = []
    original = storage.read

    async def spy(key: str) -> bytes:
        reads.append(key)
        return await original(key)

    storage.read = spy  # type: ignore[method-assign]
    await storage.write(f"challenges/http-01/{TOKEN}.json", b"{}")
    response = await fetch(server, path)
    assert response.status_code == 404
    assert reads == []


@pytest.mark.parametrize(
    "record",
    [
        b"not json",
        b"[]",
        json.dumps({"challenge": "http-01", "token": TOKEN, "expires": 1e12}).encode(),
        json.dumps(  # another token's key authorization
            {
                "challenge": "http-01",
                "token": TOKEN,
                "key_authorization": f"{'x' * 43}.{THUMBPRINT}",
                "expires": 1e12,
            }
        ).encode(),
        json.dumps(  # something else after the token: not token.thumbprint
            {
                "challenge": "http-01",
                "token": TOKEN,
                "key_authorization": f"{TOKEN}.<script>alert(1)</script>",
                "expires": 1e12,
            }
        ).encode(),
        json.dumps(  # expired: a crashed node's leftover
            {
                "challenge": "http-01",
                "token": TOKEN,
                "key_authorization": KEY_AUTHORIZATION,
                "expires": 1.0,
            }
        ).encode(),
        json.dumps(  # stored for the other challenge type
            {
                "challenge": "tls-alpn-01",
                "token": TOKEN,
                "key_authorization": KEY_AUTHORIZATION,
                "expires": 1e12,
            }
        ).encode(),
        b" " * 5000 + b"{}",
    ],
)
async def test_a_stored_record_that_is_not_sound_is_not_answered(
    http_server: tuple[MemoryStorage, SharedHttp01Server], record: bytes
) -> None:
    storage, server = http_server
    await storage.write(f"challenges/http-01/{TOKEN}.json", record)
    assert (await fetch(server, PREFIX + TOKEN)).status_code == 404


async def test_a_node_that_lost_the_lineage_lease_cannot_publish_or_remove() -> None:
    storage = MemoryStorage()
    solver = SharedSolver(storage, "http-01", require_listener=False)
    async with holding(storage, "www.fleet.test", ttl=0.3) as lease:
        handle = await solver.present(task())
        time.sleep(0.4)  # the event loop stalls past the lease, as a SIGSTOP would
        after = await storage.acquire("www.fleet.test", ttl=60, wait=0)  # the next holder
        assert after.token > lease.token
        with pytest.raises(FencedError):
            await solver.present(task(token="B" * 43))
        await solver.cleanup(handle)  # refused, left to expire: never raises
        assert f"challenges/http-01/{TOKEN}.json" in storage.values
        assert f"challenges/http-01/{'B' * 43}.json" not in storage.values


async def test_the_solver_refuses_what_it_cannot_prove_or_store() -> None:
    storage = MemoryStorage()
    solver = SharedSolver(storage, "http-01")
    assert not solver.supports(Identifier.dns("*.fleet.test"))
    assert solver.supports(Identifier.ip("192.0.2.1"))  # RFC 8738 §7
    assert SharedSolver(storage, "tls-alpn-01").supports(Identifier.ip("192.0.2.1"))
    with pytest.raises(UnsafeResponseError):
        await solver.present(task(token="../../etc/passwd"))
    with pytest.raises(ConfigError, match=r"token\.thumbprint"):
        await solver.present(task(key_authorization=f"{'A' * 43}.{THUMBPRINT}"))
    with pytest.raises(ConfigError, match="http-01 or tls-alpn-01"):
        SharedSolver(storage, "dns-01")
    assert storage.values == {}


# -- tls-alpn-01 ---------------------------------------------------------------------------


def handshake(port: int, sni: str, protocols: list[str]) -> x509.Certificate:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # a self-signed challenge certificate
    context.set_alpn_protocols(protocols)
    with (
        socket.create_connection((LOOPBACK, port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        assert tls.selected_alpn_protocol() == ACME_TLS_PROTOCOL
        return x509.load_der_x509_certificate(der)


@pytest.mark.parametrize(
    ("name", "sni", "san"),
    [
        ("www.fleet.test", "www.fleet.test", x509.DNSName("www.fleet.test")),
        ("192.0.2.7", "7.2.0.192.in-addr.arpa", None),
    ],
)
async def test_tls_alpn_listener_answers_what_another_node_presented(
    name: str, sni: str, san: x509.GeneralName | None
) -> None:
    storage = MemoryStorage()
    server = SharedTlsAlpn01Server(storage, port=0, host=LOOPBACK)
    await server.start()
    try:
        solver = SharedSolver(storage, "tls-alpn-01")
        async with holding(storage, "lineage"):
            handle = await solver.present(task(name, challenge="tls-alpn-01"))
            certificate = await asyncio.to_thread(handshake, server.port, sni, [ACME_TLS_PROTOCOL])
            extension = certificate.extensions.get_extension_for_oid(ID_PE_ACME_IDENTIFIER)
            assert extension.critical
            digest = hashlib.sha256(KEY_AUTHORIZATION.encode()).digest()
            assert extension.value.public_bytes() == b"\x04\x20" + digest
            alt = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            expected = san or x509.IPAddress(ipaddress.ip_address(name))
            assert list(alt.value) == [expected]
            # Not offering acme-tls/1, or another name: no certificate leaves.
            with pytest.raises(ssl.SSLError):
                await asyncio.to_thread(handshake, server.port, sni, ["http/1.1"])
            with pytest.raises(ssl.SSLError):
                await asyncio.to_thread(handshake, server.port, "other.test", [ACME_TLS_PROTOCOL])
            await solver.cleanup(handle)
        await server.view.refresh()
        with pytest.raises(ssl.SSLError):
            await asyncio.to_thread(handshake, server.port, sni, [ACME_TLS_PROTOCOL])
    finally:
        await server.stop()


@pytest.mark.parametrize("name", ["..", "a/b", "A" * 300, "x..y", ".", "*.fleet.test", ""])
async def test_an_sni_name_that_is_not_a_host_name_builds_no_key(name: str) -> None:
    storage = MemoryStorage()
    listed: list[str] = []
    original = storage.list

    async def spy(prefix: str) -> list[str]:
        listed.append(prefix)
        return await original(prefix)

    storage.list = spy  # type: ignore[method-assign]
    assert await shared_answer(storage, "tls-alpn-01", name=name) is None
    assert listed == []


async def test_expired_records_are_swept_current_and_foreign_ones_kept() -> None:
    storage = MemoryStorage()
    solver = SharedSolver(
        storage, "http-01", clock=lambda: 1000.0, lifetime=60, require_listener=False
    )
    await solver.present(task())  # expires at 1060
    current = SharedSolver(storage, "tls-alpn-01", clock=lambda: 5000.0, require_listener=False)
    await current.present(task(token="C" * 43, challenge="tls-alpn-01"))
    await storage.write("challenges/http-01/notours.json", b"not json")
    assert await sweep(storage, now=1059.0) == 0
    assert await sweep(storage, now=1061.0) == 1
    assert sorted(storage.values) == [
        "challenges/http-01/notours.json",
        f"challenges/tls-alpn-01/www.fleet.test/{'C' * 43}.json",
    ]
    sweeper = RecordSweeper(storage, interval=3600)
    current.clock = lambda: 0.0
    await current.present(task(token="D" * 43, challenge="tls-alpn-01"))  # long expired
    await sweeper.start()
    await asyncio.sleep(0.05)  # the first sweep runs at start
    await sweeper.stop()
    assert f"challenges/tls-alpn-01/www.fleet.test/{'D' * 43}.json" not in storage.values


async def test_the_tls_alpn_listener_caps_its_connections() -> None:
    storage = MemoryStorage()
    server = SharedTlsAlpn01Server(storage, port=0, host=LOOPBACK)
    server.max_connections = 1
    await server.start()
    try:
        _, idle = await asyncio.open_connection(LOOPBACK, server.port)  # sends nothing
        await asyncio.sleep(0.05)
        reader, extra = await asyncio.open_connection(LOOPBACK, server.port)
        async with asyncio.timeout(2):  # closed at once, not after the 10 s deadline
            assert await reader.read() == b""
        assert server.connections_refused == 1
        idle.close()
        extra.close()
    finally:
        await server.stop()


async def test_nothing_is_presented_while_no_node_listens_for_the_challenge() -> None:
    storage = MemoryStorage()
    solver = SharedSolver(storage, "http-01")
    with pytest.raises(SolverError, match="http_serve"):
        await solver.present(task())
    # A heartbeat gone stale (a node killed -9 long ago) does not count.
    stale = {"where": "10.0.0.1:80", "expires": time.time() - 1}
    await storage.write("challenges/listeners/http-01/gone-1.json", json.dumps(stale).encode())
    with pytest.raises(SolverError):
        await solver.present(task())
    assert await storage.list("challenges/http-01/") == []
    tls = SharedTlsAlpn01Server(storage, port=0, host=LOOPBACK)
    await tls.start()  # a tls-alpn-01 listener does not answer http-01
    try:
        with pytest.raises(SolverError):
            await solver.present(task())
        server = SharedHttp01Server(storage, port=0, host=LOOPBACK)
        await server.start()
        handle = await solver.present(task())
        await solver.cleanup(handle)
        await server.stop()  # its heartbeat goes with it
        with pytest.raises(SolverError):
            await solver.present(task())
    finally:
        await tls.stop()
    assert await storage.list("challenges/listeners/") == [
        "challenges/listeners/http-01/gone-1.json"
    ]


async def test_a_listener_starts_and_answers_404_while_the_storage_is_down() -> None:
    class Down(MemoryStorage):
        async def write(self, key: str, data: bytes, **_: object) -> None:
            raise StorageError("the database did not answer within 10s")

        async def read(self, key: str) -> bytes:
            raise StorageError("the database did not answer within 10s")

    server = SharedHttp01Server(Down(), port=0, host=LOOPBACK)
    await server.start()  # the daemon goes on serving what it has; heartbeats retry
    try:
        assert (await fetch(server, PREFIX + TOKEN)).status_code == 404
    finally:
        await server.stop()


async def test_a_lineage_on_the_listeners_port_is_answered_by_that_listener() -> None:
    """A lineage whose solver is ``http`` (or ``tls-alpn``) on the port ``run --http-serve``
    holds: the pool hands it the running listener instead of a second, unbindable one,
    and its cleanup leaves the listener running."""
    from certherd.challenges.factory import SolverPool
    from certherd.challenges.spec import SolverSpec

    storage = MemoryStorage()
    server = SharedHttp01Server(storage, port=0, host=LOOPBACK)
    await server.start()
    tls = SharedTlsAlpn01Server(storage, port=0, host=LOOPBACK)
    await tls.start()
    try:
        pool = SolverPool(environ={})
        pool.share("http", "", server.port, server)
        pool.share("tls-alpn", LOOPBACK, tls.port, tls)
        solver = pool.solver(SolverSpec("http", {"listen": f"{LOOPBACK}:{server.port}"}))
        assert solver is server
        handle = await solver.present(task())
        answer = await fetch(server, PREFIX + TOKEN)
        assert (answer.status_code, answer.text) == (200, KEY_AUTHORIZATION)
        await solver.cleanup(handle)
        assert (await fetch(server, PREFIX + TOKEN)).status_code == 404  # still listening
        other = pool.solver(SolverSpec("http", {"listen": str(server.port + 1)}))
        assert other is not server
        alpn = pool.solver(SolverSpec("tls-alpn", {"listen": f"{LOOPBACK}:{tls.port}"}))
        assert alpn is tls
        handle = await alpn.present(task(challenge="tls-alpn-01"))
        certificate = await asyncio.to_thread(
            handshake, tls.port, "www.fleet.test", [ACME_TLS_PROTOCOL]
        )
        assert certificate.extensions.get_extension_for_oid(ID_PE_ACME_IDENTIFIER).critical
        await alpn.cleanup(handle)
        with pytest.raises(ssl.SSLError):
            await asyncio.to_thread(handshake, tls.port, "www.fleet.test", [ACME_TLS_PROTOCOL])
        assert tls._server is not None  # the listener runs on
    finally:
        await tls.stop()
        await server.stop()


async def test_a_flood_of_made_up_tokens_reads_no_record_and_a_new_one_is_answered_at_once(
    http_server: tuple[MemoryStorage, SharedHttp01Server],
) -> None:
    """The listener answers from memory (certherd.challenges.view): made-up tokens cost no
    storage call, and a record written just before the CA asks is still found (the
    request waits for the next poll on a storage without notifications)."""
    storage, server = http_server
    reads: list[str] = []
    original = storage.read

    async def spy(key: str) -> bytes:
        reads.append(key)
        return await original(key)

    storage.read = spy  # type: ignore[method-assign]
    made_up = [f"{n:04}{'A' * 39}" for n in range(200)]
    async with httpx.AsyncClient() as client:
        answers = await asyncio.gather(
            *(client.get(f"http://{LOOPBACK}:{server.port}{PREFIX}{token}") for token in made_up)
        )
    assert {answer.status_code for answer in answers} == {404}
    assert reads == []
    async with holding(storage, "www.fleet.test"):
        handle = await SharedSolver(storage, "http-01").present(task())
        answer = await fetch(server, PREFIX + TOKEN)  # right after, as Pebble does
        assert (answer.status_code, answer.text) == (200, KEY_AUTHORIZATION)
        await SharedSolver(storage, "http-01").cleanup(handle)
    records = [key for key in reads if key.startswith("challenges/http-01/")]
    assert records == [f"challenges/http-01/{TOKEN}.json"]  # read once, when it was new


async def test_a_flood_of_misses_waits_in_a_few_requests_and_answers_the_rest_at_once() -> None:
    """A miss waits (a key authorization may be on its way), but only
    :data:`~certherd.challenges.view.MAX_WAITING` of them at once: a flood cannot hold
    every connection of the listener for a quarter of a second each."""
    from certherd.challenges.view import MAX_WAITING, ChallengeView

    view = ChallengeView(MemoryStorage(), poll=30.0)  # no poll within the test
    await view.start()
    try:
        made_up = [f"{n:04}{'B' * 39}" for n in range(MAX_WAITING + 100)]
        answers = await asyncio.gather(*(view.http01(token) for token in made_up))
        assert answers == [None] * len(made_up)
        assert view.turned_away == 100
    finally:
        await view.stop()
