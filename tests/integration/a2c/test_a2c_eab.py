"""External Account Binding (RFC 8555 §7.3.4) with certherd's AcmeClient against acme2certifier.

``acme2certifier_eab`` says ``externalAccountRequired``; it answers a newAccount without a
binding with ``externalAccountRequired``, a wrong MAC or an unknown key id with
``unauthorized``. certherd refuses to register without a binding before any request.
"""

from __future__ import annotations

import secrets

import pytest
from a2c_helpers import (
    ACME_ERROR,
    CONTACT,
    PostRecorder,
    b64url_json,
    issue,
    issuing_ca,
    new_client,
    san_values,
    unique_name,
)
from tests.servers.acme2certifier import Acme2CertifierServer

from certherd.acme import jws
from certherd.acme.jws import ExternalAccountBinding
from certherd.acme.messages import Status
from certherd.crypto.encoding import b64url
from certherd.errors import ConfigError, UnauthorizedError

pytestmark = pytest.mark.integration


def eab_for(server: Acme2CertifierServer, kid: str | None = None) -> ExternalAccountBinding:
    """A binding to one of the server's EAB keys (the first unless ``kid``)."""
    assert server.eab, "acme2certifier_eab was started without EAB keys"
    chosen = kid if kid is not None else next(iter(server.eab))
    return ExternalAccountBinding.from_b64url(chosen, server.eab[chosen])


async def test_register_without_eab_is_refused_by_the_client(
    acme2certifier_eab: Acme2CertifierServer,
) -> None:
    recorder = PostRecorder()
    async with new_client(acme2certifier_eab, recorder=recorder) as client:
        with pytest.raises(ConfigError, match="External Account Binding"):
            await client.register(contact=[CONTACT], agree_tos=True)
        directory = await client.directory()
        trace = list(client.transport.trace)
    await client.transport._http.aclose()  # the recorder's client: certherd leaves it open

    assert directory.meta.external_account_required is True
    assert trace == [("GET", "directory")]  # refused before any signed request
    assert recorder.posts == []
    assert client.account_url is None


async def test_register_with_the_right_eab_creates_the_account(
    acme2certifier_eab: Acme2CertifierServer,
) -> None:
    recorder = PostRecorder()
    binding = eab_for(acme2certifier_eab)
    async with new_client(acme2certifier_eab, recorder=recorder) as client:
        account = await client.register(contact=[CONTACT], agree_tos=True, eab=binding)
        directory = await client.directory()
        found = await client.find_account()
    await client.transport._http.aclose()  # the recorder's client: certherd leaves it open

    assert account.status is Status.VALID
    assert account.url == client.account_url
    assert account.url.startswith(f"{acme2certifier_eab.base_url}/")
    assert found.url == account.url
    registration = recorder.to(directory.new_account)[0]
    outer = registration.payload["externalAccountBinding"]
    assert b64url_json(outer["protected"]) == {
        "alg": "HS256",
        "kid": binding.kid,
        "url": directory.new_account,
    }
    assert b64url_json(outer["payload"]) == jws.jwk_for(client.account_key)


async def test_register_with_a_wrong_eab_key_is_unauthorized(
    acme2certifier_eab: Acme2CertifierServer,
) -> None:
    right = eab_for(acme2certifier_eab)
    wrong = ExternalAccountBinding.from_b64url(right.kid, b64url(secrets.token_bytes(48)))
    async with new_client(acme2certifier_eab) as client:
        with pytest.raises(UnauthorizedError) as caught:
            await client.register(contact=[CONTACT], agree_tos=True, eab=wrong)

    assert caught.value.type == ACME_ERROR + "unauthorized"
    assert caught.value.url.endswith("/acme/newaccount")
    assert client.account_url is None


async def test_register_with_an_unknown_eab_kid_is_unauthorized(
    acme2certifier_eab: Acme2CertifierServer,
) -> None:
    right = eab_for(acme2certifier_eab)
    unknown = ExternalAccountBinding("certherd-kid-unknown", right.hmac_key)
    async with new_client(acme2certifier_eab) as client:
        with pytest.raises(UnauthorizedError) as caught:
            await client.register(contact=[CONTACT], agree_tos=True, eab=unknown)

    assert caught.value.type == ACME_ERROR + "unauthorized"
    assert client.account_url is None


async def test_eab_account_obtains_a_certificate(
    acme2certifier_eab: Acme2CertifierServer,
) -> None:
    last_kid = list(acme2certifier_eab.eab or {})[-1]
    names = [unique_name("eab")]
    async with new_client(acme2certifier_eab) as client:
        await client.register(
            contact=[CONTACT], agree_tos=True, eab=eab_for(acme2certifier_eab, last_kid)
        )
        issued, solver = await issue(client, names)

    assert issued.order.status is Status.VALID
    assert san_values(issued.chain.leaf) == set(names)
    assert solver.requests_served >= 1
    issued.chain.leaf.verify_directly_issued_by(issuing_ca(acme2certifier_eab))
