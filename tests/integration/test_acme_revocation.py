"""Revocation against a real Pebble, confirmed through its management API.

RFC 8555 §7.6: signed by the account key (``kid``) or by the certificate's own key
(``jwk``), with an optional RFC 5280 §5.3.1 reason code.
"""

from __future__ import annotations

import pytest
from acme_helpers import ACME_ERROR, WireRecorder, http_solver, registered, unique_name

from certherd.acme.certificates import RevocationReason
from certherd.acme.client import AcmeClient
from certherd.crypto.certs import describe_certificate
from certherd.crypto.keys import generate_key
from certherd.errors import AlreadyRevokedError, BadRevocationReasonError, UnauthorizedError
from certherd.manager.obtain import IssuedCertificate, obtain_certificate
from certherd.testing.pebble import PebbleServer

pytestmark = pytest.mark.integration


async def _issue(client: AcmeClient, pebble: PebbleServer) -> IssuedCertificate:
    return await obtain_certificate(client, [unique_name("revoke")], [http_solver(pebble)])


def _status(pebble: PebbleServer, issued: IssuedCertificate) -> dict[str, object]:
    return pebble.cert_status(describe_certificate(issued.chain.leaf).serial_hex)


@pytest.mark.parametrize(
    "reason",
    [RevocationReason.KEY_COMPROMISE, RevocationReason.parse("superseded")],
    ids=["keyCompromise", "superseded"],
)
async def test_revoke_with_the_account_key_and_a_reason(
    pebble: PebbleServer, reason: RevocationReason
) -> None:
    async with registered(pebble) as client:
        issued = await _issue(client, pebble)
        assert _status(pebble, issued)["Status"] == "Valid"
        await client.revoke(issued.chain.leaf, reason=reason)
        with pytest.raises(AlreadyRevokedError) as again:
            await client.revoke(issued.chain.leaf, reason=reason)
    status = _status(pebble, issued)
    assert status["Status"] == "Revoked"
    assert status["Reason"] == int(reason)
    assert status["RevokedAt"]
    assert again.value.type == ACME_ERROR + "alreadyRevoked"


async def test_revoke_with_the_certificate_key(pebble: PebbleServer) -> None:
    """Signed with the certificate's key (``jwk``, no account): works for anyone holding it."""
    async with registered(pebble) as client:
        issued = await _issue(client, pebble)
    async with AcmeClient(
        pebble.directory_url, generate_key(), ca_bundle=str(pebble.ca_bundle)
    ) as stranger:
        assert stranger.account_url is None
        await stranger.revoke(
            issued.chain.leaf,
            reason=RevocationReason.KEY_COMPROMISE,
            certificate_key=issued.key,
        )
        with pytest.raises(AlreadyRevokedError):
            await stranger.revoke(issued.chain.leaf, certificate_key=issued.key)
        assert stranger.account_url is None  # no account was needed or made
    status = _status(pebble, issued)
    assert status["Status"] == "Revoked"
    assert status["Reason"] == int(RevocationReason.KEY_COMPROMISE)


async def test_revoke_again_with_the_account_key_after_the_certificate_key(
    pebble: PebbleServer,
) -> None:
    recorder = WireRecorder()
    async with registered(pebble, http_client=recorder.http_client(pebble)) as client:
        issued = await _issue(client, pebble)
        await client.revoke(issued.chain.leaf, certificate_key=issued.key)
        with pytest.raises(AlreadyRevokedError):
            await client.revoke(issued.chain.leaf, reason=RevocationReason.SUPERSEDED)
        revoke_url = (await client.directory()).revoke_cert
    status = _status(pebble, issued)
    assert status["Status"] == "Revoked"
    # No reason was sent (the field is optional, RFC 8555 §7.6) and Pebble records none.
    first = next(e for e in recorder.posts() if e.url == revoke_url and e.status == 200)
    assert set(first.payload) == {"certificate"}
    assert "Reason" not in status


async def test_revoke_refused_for_another_account_or_a_wrong_key(pebble: PebbleServer) -> None:
    async with registered(pebble) as owner:
        issued = await _issue(owner, pebble)
        with pytest.raises(UnauthorizedError, match="same public key"):
            await owner.revoke(issued.chain.leaf, certificate_key=generate_key())
    async with registered(pebble) as other:
        with pytest.raises(UnauthorizedError, match="not associated with account"):
            await other.revoke(issued.chain.leaf)
    assert _status(pebble, issued)["Status"] == "Valid"


@pytest.mark.parametrize("code", [7, 11])
async def test_revoke_with_an_unknown_reason_code(pebble: PebbleServer, code: int) -> None:
    """RFC 5280 §5.3.1 has no code 7 and none above 10: badRevocationReason."""
    async with registered(pebble) as client:
        issued = await _issue(client, pebble)
        with pytest.raises(BadRevocationReasonError, match=str(code)):
            await client.revoke(issued.chain.leaf, reason=code)
    assert _status(pebble, issued)["Status"] == "Valid"
