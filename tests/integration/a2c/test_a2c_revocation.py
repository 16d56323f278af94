"""Revocation (RFC 8555 §7.6) with certherd's AcmeClient against acme2certifier.

acme2certifier 0.46 accepts revocation signed by the account that ordered the certificate
(``kid``); it refuses other accounts (``unauthorized``), reason codes it does not accept
(``badRevocationReason``) and a second revocation (``alreadyRevoked``). It has no
revocation by the certificate's own key: it looks the ``jwk`` up as an account.
"""

from __future__ import annotations

import pytest
from a2c_helpers import PostRecorder, b64url_bytes, issue, registered, unique_name
from cryptography.hazmat.primitives.serialization import Encoding
from tests.servers.acme2certifier import Acme2CertifierServer

from certherd.acme import jws
from certherd.acme.certificates import RevocationReason
from certherd.errors import (
    AccountDoesNotExistError,
    AlreadyRevokedError,
    BadRevocationReasonError,
    UnauthorizedError,
)

pytestmark = pytest.mark.integration


async def test_revoke_by_account_key(acme2certifier: Acme2CertifierServer) -> None:
    recorder = PostRecorder()
    async with registered(acme2certifier, recorder) as client:
        directory = await client.directory()
        issued, _ = await issue(client, [unique_name("revoke")])
        leaf = issued.chain.leaf
        await client.revoke(leaf, reason=RevocationReason.SUPERSEDED)
        with pytest.raises(AlreadyRevokedError) as again:
            await client.revoke(leaf)

    first, second = recorder.to(directory.revoke_cert)
    assert first.protected["kid"] == client.account_url
    assert "jwk" not in first.protected
    assert b64url_bytes(first.payload["certificate"]) == leaf.public_bytes(Encoding.DER)
    assert first.payload["reason"] == 4  # RFC 5280 §5.3.1 superseded
    assert "reason" not in second.payload
    assert again.value.url == directory.revoke_cert


async def test_another_account_cannot_revoke(acme2certifier: Acme2CertifierServer) -> None:
    async with registered(acme2certifier) as owner:
        issued, _ = await issue(owner, [unique_name("revoke-other")])
        async with registered(acme2certifier) as stranger:
            with pytest.raises(UnauthorizedError):
                await stranger.revoke(issued.chain.leaf)
        # Still revocable by its owner: the refused attempt changed nothing.
        await owner.revoke(issued.chain.leaf)


async def test_unaccepted_reason_is_a_bad_revocation_reason(
    acme2certifier: Acme2CertifierServer,
) -> None:
    async with registered(acme2certifier) as client:
        issued, _ = await issue(client, [unique_name("revoke-reason")])
        # 7 is unassigned in RFC 5280 §5.3.1.
        with pytest.raises(BadRevocationReasonError):
            await client.revoke(issued.chain.leaf, reason=7)
        await client.revoke(issued.chain.leaf, reason=RevocationReason.KEY_COMPROMISE)


@pytest.mark.xfail(
    strict=True,
    raises=AccountDoesNotExistError,
    reason="acme2certifier 0.46.3 looks a revocation's jwk up as an account key: "
    "revocation by the certificate key (RFC 8555 §7.6) answers accountDoesNotExist",
)
async def test_revoke_by_certificate_key(acme2certifier: Acme2CertifierServer) -> None:
    recorder = PostRecorder()
    async with registered(acme2certifier, recorder) as client:
        directory = await client.directory()
        issued, _ = await issue(client, [unique_name("revoke-certkey")])
        try:
            await client.revoke(issued.chain.leaf, certificate_key=issued.key)
        finally:
            (sent,) = recorder.to(directory.revoke_cert)
            # certherd sent what §7.6 asks: the certificate key's jwk, no kid.
            assert sent.protected["jwk"] == jws.jwk_for(issued.key)
            assert "kid" not in sent.protected
