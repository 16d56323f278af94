"""Basic auth on the daemon's listener throttles wrong credentials per client address:
after MAX_FAILURES within the window, 429 with Retry-After for the lockout, right
credentials included; counted in /metrics. Over real HTTP (the daemon's aiohttp server
on a loopback port), with a clock the test moves."""

from __future__ import annotations

import re

import httpx
import pytest

from certherd.daemon.page import BasicAuth
from certherd.daemon.throttle import LOCKOUT, MAX_FAILURES, WINDOW, AuthThrottle, client_key
from certherd.daemon.web import MetricsServer

USERS = {"ops": b"correct horse battery"}
RIGHT = ("ops", "correct horse battery")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _counter(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found is not None, text
    return float(found.group(1))


def _client(server: MetricsServer, source: str = "127.0.0.1") -> httpx.AsyncClient:
    """A client connecting from ``source`` (any 127/8 address is this host's)."""
    transport = httpx.AsyncHTTPTransport(local_address=source)
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.port}", transport=transport, trust_env=False
    )


async def test_an_address_guessing_passwords_is_turned_away_then_let_in_again() -> None:
    clock = Clock()
    auth = BasicAuth(USERS, AuthThrottle(clock=clock))
    async with (
        MetricsServer("127.0.0.1", 0, list, auth=auth) as server,
        _client(server) as guesser,
        _client(server, "127.0.0.2") as other,
    ):
        for attempt in range(MAX_FAILURES):
            wrong = await guesser.get("/metrics", auth=("ops", f"guess {attempt}"))
            assert wrong.status_code == 401, attempt
        refused = await guesser.get("/metrics", auth=("ops", "guess again"))
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == str(int(LOCKOUT))
        # The guess that hits is not told either, on any guarded path.
        for path in ("/metrics", "/", "/status.json"):
            assert (await guesser.get(path, auth=RIGHT)).status_code == 429, path
        assert (await guesser.get("/healthz")).status_code == 200  # probes stay open
        # Another address is not held up by it.
        scraped = await other.get("/metrics", auth=RIGHT)
        assert scraped.status_code == 200
        assert _counter(scraped.text, "certherd_http_auth_failures_total") == MAX_FAILURES
        assert _counter(scraped.text, "certherd_http_auth_lockouts_total") == 1
        assert _counter(scraped.text, "certherd_http_auth_throttled_total") == 4
        clock.now += LOCKOUT - 10
        later = await guesser.get("/metrics", auth=RIGHT)
        assert (later.status_code, later.headers["retry-after"]) == (429, "10")
        clock.now += 10
        assert (await guesser.get("/metrics", auth=RIGHT)).status_code == 200


async def test_failures_spread_beyond_the_window_and_requests_without_credentials() -> None:
    clock = Clock()
    auth = BasicAuth(USERS, AuthThrottle(clock=clock))
    async with MetricsServer("127.0.0.1", 0, list, auth=auth) as server, _client(server) as web:
        for _ in range(3 * MAX_FAILURES):  # a browser before its user typed: no guess
            assert (await web.get("/metrics")).status_code == 401
        for attempt in range(3 * MAX_FAILURES):
            clock.now += WINDOW / (MAX_FAILURES - 1) + 1  # fewer than the cap per window
            wrong = await web.get("/metrics", auth=("ops", f"typo {attempt}"))
            assert wrong.status_code == 401, attempt
        scraped = await web.get("/metrics", auth=RIGHT)
        assert scraped.status_code == 200
        assert _counter(scraped.text, "certherd_http_auth_failures_total") == 3 * MAX_FAILURES
        assert _counter(scraped.text, "certherd_http_auth_lockouts_total") == 0


def test_ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() -> None:
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("fe80::1%eth0") == "fe80::/64"
    assert client_key(None) == "?"


def test_the_table_of_addresses_is_bounded() -> None:
    clock = Clock()
    throttle = AuthThrottle(max_failures=2, max_tracked=100, clock=clock)
    for number in range(10_000):
        address = f"10.{number // 65536}.{number // 256 % 256}.{number % 256}"
        throttle.failed(address)
        throttle.failed(address)  # locked out
        throttle.failed(f"172.16.{number // 256}.{number % 256}")  # one failure each
    assert len(throttle._locked) <= 100
    assert len(throttle._failures) <= 100
    assert throttle.wait("10.0.39.15") > 0  # the latest locked out are still held


def test_credentials_are_compared_whole() -> None:
    auth = BasicAuth({"ops": b"s3cret", "ci": b"x"})

    def header(user: bytes, password: bytes) -> str:
        import base64

        return "Basic " + base64.b64encode(user + b":" + password).decode()

    assert auth.allows(header(b"ops", b"s3cret"))
    assert auth.allows(header(b"ci", b"x"))
    for user, password in [
        (b"ops", b"s3cre"),
        (b"ops", b"s3crett"),
        (b"ops", b"x"),  # another user's password
        (b"nobody", b"s3cret"),
        (b"nobody", b""),
        (b"", b""),
    ]:
        assert not auth.allows(header(user, password)), (user, password)


@pytest.mark.parametrize("bounds", [{"max_failures": 0}, {"window": 0}, {"lockout": -1}])
def test_the_bounds_must_be_positive(bounds: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="positive"):
        AuthThrottle(**bounds)  # type: ignore[arg-type]
