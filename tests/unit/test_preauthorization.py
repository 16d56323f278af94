"""Pre-authorization (RFC 8555 §7.4.1): ``AcmeClient.new_authorization`` against a fake CA.

Why a fake: no real server on this machine implements ``newAuthz``. Pebble 2.4 does not
list it, and acme2certifier 0.46 lists it in its directory but routes no handler (404;
tests/integration/a2c checks that this becomes FeatureUnsupportedError). So the wire
format is checked here against the scripted server of tests/unit/fakes.py, which also
checks every POST's ``url`` and ``nonce`` (§6.4, §6.5).
"""

from __future__ import annotations

from typing import Any

import pytest
from fakes import HostileAcmeServer, Reply, problem

from certherd.acme.messages import Identifier, Status
from certherd.errors import FeatureUnsupportedError, UnsafeResponseError

NEW_AUTHZ = "/acme/new-authz"
AUTHZ = "/acme/authz/pre-1"


def _authorization(identifier: dict[str, str], status: str = "pending") -> dict[str, Any]:
    """§7.1.4: what a CA returns for a new authorization (one http-01 challenge)."""
    return {
        "identifier": identifier,
        "status": status,
        "expires": "2025-06-08T12:00:00Z",
        "challenges": [
            {
                "type": "http-01",
                "url": "https://ca.test/acme/chall/pre-1",
                "status": "pending",
                "token": "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA",
            }
        ],
    }


def _offering_newauthz(location: str | None = AUTHZ) -> HostileAcmeServer:
    """A fake CA whose directory lists newAuthz and answers it with 201 + Location."""
    server = HostileAcmeServer()
    server.directory["newAuthz"] = server.url(NEW_AUTHZ)

    def answer(seen: Any) -> Reply:
        headers = {"Location": server.url(location)} if location else {}
        return Reply(201, _authorization(seen.payload["identifier"]), headers)

    server.hooks[NEW_AUTHZ] = answer
    return server


async def test_payload_is_the_identifier_and_location_is_the_url() -> None:
    server = _offering_newauthz()
    async with server.client() as client:
        authorization = await client.new_authorization("www.example.test")

    [post] = server.requests_to(NEW_AUTHZ, "POST")
    # §7.4.1: "payload": {"identifier": {"type": "dns", "value": "example.org"}}
    assert post.payload == {"identifier": {"type": "dns", "value": "www.example.test"}}
    assert post.protected is not None
    assert post.protected["kid"] == server.url("/acct/1")  # signed by the account (§6.2)
    assert "jwk" not in post.protected
    # §7.4.1: the server answers 201 with the authorization's URL in Location.
    assert authorization.url == server.url(AUTHZ)
    assert authorization.identifier == Identifier("dns", "www.example.test")
    assert authorization.status is Status.PENDING
    [challenge] = authorization.challenges
    assert challenge.type == "http-01"


async def test_an_identifier_object_is_sent_as_given() -> None:
    server = _offering_newauthz()
    async with server.client() as client:
        authorization = await client.new_authorization(Identifier.dns("API.Example.Test."))
    [post] = server.requests_to(NEW_AUTHZ, "POST")
    assert post.payload == {"identifier": {"type": "dns", "value": "api.example.test"}}
    assert authorization.identifier.value == "api.example.test"


@pytest.mark.parametrize(
    ("text", "value"),
    [("192.0.2.7", "192.0.2.7"), ("2001:DB8::1", "2001:db8::1"), ("[2001:db8::2]", "2001:db8::2")],
)
async def test_an_ip_identifier_is_pre_authorized(text: str, value: str) -> None:
    """RFC 8738 §3: an address is an ``ip`` identifier, IPv6 in RFC 5952 form."""
    server = _offering_newauthz()
    async with server.client() as client:
        authorization = await client.new_authorization(text)
    [post] = server.requests_to(NEW_AUTHZ, "POST")
    assert post.payload == {"identifier": {"type": "ip", "value": value}}
    assert authorization.identifier == Identifier("ip", value)
    assert authorization.url == server.url(AUTHZ)


async def test_without_newauthz_nothing_is_sent() -> None:
    server = HostileAcmeServer()
    assert "newAuthz" not in server.directory  # as Pebble 2.4's directory
    async with server.client() as client:
        with pytest.raises(FeatureUnsupportedError, match="newAuthz"):
            await client.new_authorization("www.example.test")
    # Only the directory was read: no nonce fetched, nothing signed or posted.
    assert [(s.method, s.path) for s in server.seen] == [("GET", "/directory")]


async def test_a_listed_newauthz_answering_404_is_unsupported() -> None:
    """acme2certifier 0.46's behaviour: listed, but the URL is not routed."""
    server = HostileAcmeServer()
    server.directory["newAuthz"] = server.url(NEW_AUTHZ)
    server.hooks[NEW_AUTHZ] = lambda seen: problem("malformed", "not found", status=404)
    async with server.client() as client:
        with pytest.raises(FeatureUnsupportedError, match="404") as caught:
            await client.new_authorization("www.example.test")
    assert caught.value.__cause__ is not None  # the CA's problem document is kept


async def test_an_answer_without_location_is_refused() -> None:
    server = _offering_newauthz(location=None)
    async with server.client() as client:
        with pytest.raises(UnsafeResponseError, match="Location"):
            await client.new_authorization("www.example.test")
