"""``http_client=``, ``user_agent=`` and proxies of AcmeClient (issue 11 item 9).

A caller's httpx client is the caller's: certherd never closes it, refuses settings that
could only apply to a client it builds itself, and keeps the caller's User-Agent first.
The proxy tests run a real HTTP proxy-shaped server on a socket: the directory request
arrives in absolute form (RFC 9112 §3.2.2), as a forward proxy receives it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fakes import HostileAcmeServer

from certherd.acme import AcmeClient, RetryPolicy, SyncAcmeClient
from certherd.acme.transport import USER_AGENT
from certherd.errors import ConfigError, TransportError


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _mock(server: HostileAcmeServer, **options: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(server), **options)  # type: ignore[arg-type]


async def test_the_callers_http_client_is_never_closed() -> None:
    server = HostileAcmeServer()
    async with _mock(server) as http:
        async with AcmeClient(server.url("/directory"), _key(), http_client=http) as client:
            await client.directory()
        assert not http.is_closed
        with SyncAcmeClient(server.url("/directory"), _key(), http_client=http) as sync:
            sync.directory()
        assert not http.is_closed
        response = await http.get(server.url("/directory"))  # still usable
        assert response.status_code == 200


async def test_the_client_certherd_makes_is_closed() -> None:
    async with AcmeClient("https://ca.test/directory", _key()) as client:
        own = client.transport._http
    assert own.is_closed


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("ca_bundle", "/etc/ssl/certs/ca-certificates.crt"),
        ("timeout", 5.0),
        ("proxy", "http://proxy.test:3128"),
        ("trust_env", False),
    ],
)
async def test_settings_that_cannot_apply_to_the_callers_client_are_refused(
    option: str, value: object
) -> None:
    server = HostileAcmeServer()
    async with _mock(server) as http:
        with pytest.raises(ConfigError, match=f"{option} cannot apply to an http_client"):
            AcmeClient(server.url("/directory"), _key(), http_client=http, **{option: value})  # type: ignore[arg-type]


async def _user_agent_seen(**options: object) -> str:
    server = HostileAcmeServer()
    headers = options.pop("headers", None)
    async with (
        _mock(server, headers=headers) as http,
        AcmeClient(server.url("/directory"), _key(), http_client=http, **options) as client,
    ):  # type: ignore[arg-type]
        await client.directory()
    return server.seen[-1].headers["user-agent"]


async def test_user_agent_puts_the_callers_product_first() -> None:
    assert (
        await _user_agent_seen(user_agent="fleetbot/2.1")
        == f"fleetbot/2.1 {USER_AGENT} httpx/{httpx.__version__}"
    )


async def test_the_callers_client_user_agent_is_respected() -> None:
    seen = await _user_agent_seen(headers={"User-Agent": "inventory/7 (ops@example.com)"})
    assert seen == f"inventory/7 (ops@example.com) {USER_AGENT} httpx/{httpx.__version__}"


async def test_without_a_user_agent_certherd_names_itself_and_httpx() -> None:
    seen = await _user_agent_seen()
    assert seen == f"{USER_AGENT} httpx/{httpx.__version__}"  # RFC 8555 §6.1
    assert seen.startswith("certherd/")


def test_a_user_agent_with_control_characters_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a valid User-Agent"):
        AcmeClient("https://ca.test/directory", _key(), user_agent="evil\r\nX-Injected: 1")


class _Proxy:
    """A forward HTTP proxy in shape: records request lines, answers as the CA would."""

    def __init__(self) -> None:
        self.request_lines: list[str] = []
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line = (await reader.readline()).decode().strip()
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        self.request_lines.append(request_line)
        body = json.dumps(
            {
                name: f"http://ca.invalid/{name}"
                for name in ("newNonce", "newAccount", "newOrder", "revokeCert", "keyChange")
            }
        ).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[_Proxy]:
    recorder = _Proxy()
    recorder.server = await asyncio.start_server(recorder.handle, "127.0.0.1", 0)
    async with recorder.server:
        yield recorder


DIRECTORY = "http://ca.invalid/directory"  # .invalid never resolves: only a proxy reaches it


async def test_proxy_is_passed_to_httpx(proxy: _Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    async with AcmeClient(DIRECTORY, _key(), allow_http=True, proxy=proxy.url) as client:
        directory = await client.directory()
    assert directory.new_order == "http://ca.invalid/newOrder"
    assert proxy.request_lines == [f"GET {DIRECTORY} HTTP/1.1"]


async def test_environment_proxies_are_honoured_unless_trust_env_is_false(
    proxy: _Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with AcmeClient(DIRECTORY, _key(), allow_http=True) as client:
        await client.directory()
    assert proxy.request_lines == [f"GET {DIRECTORY} HTTP/1.1"]
    async with AcmeClient(
        DIRECTORY,
        _key(),
        allow_http=True,
        trust_env=False,
        retry=RetryPolicy(connection_attempts=1),
    ) as client:
        with pytest.raises(TransportError):
            await client.directory()
    assert len(proxy.request_lines) == 1


def test_an_unusable_proxy_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot use proxy"):
        AcmeClient("https://ca.test/directory", _key(), proxy="gopher://proxy.test")
