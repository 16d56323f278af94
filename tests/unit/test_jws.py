"""Tests for certherd.acme.jws: RFC 7638 thumbprints, RFC 8555 §6.2 JWS, §7.3.4 EAB, §7.3.5."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from fakes import HostileAcmeServer, b64url, b64url_decode, decode_part

from certherd.acme.jws import (
    ExternalAccountBinding,
    algorithm_for,
    jwk_for,
    jwk_thumbprint,
    key_authorization,
    sign,
)
from certherd.crypto.keys import PrivateKey, PublicKey
from certherd.errors import ConfigError

# RFC 7638 §3.1: the example RSA key (only the required members e, kty, n) and its thumbprint.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
    "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
    "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
    "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
RFC7638_E = "AQAB"
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
# RFC 8555 §8.3: the example http-01 token.
RFC8555_TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
URL = "https://ca.test/acme/new-order"


def _int(text: str) -> int:
    return int.from_bytes(b64url_decode(text), "big")


def rfc7638_key() -> rsa.RSAPublicKey:
    return rsa.RSAPublicNumbers(_int(RFC7638_E), _int(RFC7638_N)).public_key()


@pytest.fixture(scope="module")
def keys() -> dict[str, PrivateKey]:
    """One account key per JWS algorithm ACME CAs accept (RFC 8555 §6.2)."""
    return {
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "ES384": ec.generate_private_key(ec.SECP384R1()),
        "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }


def public_key_from_jwk(jwk: dict[str, str]) -> PublicKey:
    if jwk["kty"] == "EC":
        curve = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}[jwk["crv"]]
        return ec.EllipticCurvePublicNumbers(_int(jwk["x"]), _int(jwk["y"]), curve).public_key()
    return rsa.RSAPublicNumbers(_int(jwk["e"]), _int(jwk["n"])).public_key()


def verify_jws(jws: dict[str, str], public_key: PublicKey) -> tuple[dict[str, Any], Any]:
    """Verify a flattened JWS as a CA would; return (protected header, payload or None)."""
    protected = decode_part(jws["protected"])
    signing_input = f"{jws['protected']}.{jws['payload']}".encode("ascii")
    signature = b64url_decode(jws["signature"])
    alg = protected["alg"]
    if alg in ("ES256", "ES384"):
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        # RFC 7518 §3.4: R || S, each the fixed size of the curve order.
        size = {"ES256": 32, "ES384": 48}[alg]
        assert len(signature) == 2 * size
        der = encode_dss_signature(
            int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
        )
        digest = hashes.SHA256() if alg == "ES256" else hashes.SHA384()
        public_key.verify(der, signing_input, ec.ECDSA(digest))
    else:
        assert alg == "RS256"
        assert isinstance(public_key, rsa.RSAPublicKey)
        public_key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
    payload = decode_part(jws["payload"]) if jws["payload"] else None
    return protected, payload


# -- RFC 7638 thumbprint and RFC 8555 §8.1 key authorization --------------------------------


def test_thumbprint_of_rfc7638_example_key() -> None:
    assert jwk_thumbprint(rfc7638_key()) == RFC7638_THUMBPRINT


def test_jwk_of_rfc7638_example_key_has_exactly_the_required_members() -> None:
    assert jwk_for(rfc7638_key()) == {"e": RFC7638_E, "kty": "RSA", "n": RFC7638_N}


def test_key_authorization_is_token_dot_thumbprint() -> None:
    assert key_authorization(RFC8555_TOKEN, rfc7638_key()) == (
        f"{RFC8555_TOKEN}.{RFC7638_THUMBPRINT}"
    )


@pytest.mark.parametrize("alg", ["ES256", "ES384", "RS256"])
def test_thumbprint_of_private_key_equals_that_of_its_public_key(
    keys: dict[str, PrivateKey], alg: str
) -> None:
    key = keys[alg]
    assert jwk_thumbprint(key) == jwk_thumbprint(key.public_key())
    digest = hashlib.sha256(
        json.dumps(jwk_for(key), sort_keys=True, separators=(",", ":")).encode()
    ).digest()
    assert jwk_thumbprint(key) == b64url(digest)


def test_ec_jwk_coordinates_are_fixed_length() -> None:
    # RFC 7518 §6.2.1.2: x and y are the full size of the curve, leading zeros kept.
    for _ in range(20):
        jwk = jwk_for(ec.generate_private_key(ec.SECP256R1()))
        assert len(b64url_decode(jwk["x"])) == 32
        assert len(b64url_decode(jwk["y"])) == 32


# -- signatures (RFC 8555 §6.2) -------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES256", "ES384", "RS256"])
def test_signature_with_kid_verifies_and_carries_no_jwk(
    keys: dict[str, PrivateKey], alg: str
) -> None:
    key = keys[alg]
    assert algorithm_for(key) == alg
    jws = sign(key, {"identifiers": []}, url=URL, nonce="nonce-1", kid="https://ca.test/acct/1")
    protected, payload = verify_jws(jws, key.public_key())
    assert protected == {
        "alg": alg,
        "url": URL,
        "nonce": "nonce-1",
        "kid": "https://ca.test/acct/1",
    }
    assert payload == {"identifiers": []}


@pytest.mark.parametrize("alg", ["ES256", "ES384", "RS256"])
def test_signature_with_jwk_verifies_against_that_jwk(
    keys: dict[str, PrivateKey], alg: str
) -> None:
    key = keys[alg]
    jws = sign(key, {"termsOfServiceAgreed": True}, url=URL, nonce="nonce-2")
    protected = decode_part(jws["protected"])
    assert "kid" not in protected
    assert protected["jwk"] == jwk_for(key)
    verify_jws(jws, public_key_from_jwk(protected["jwk"]))


@pytest.mark.parametrize("alg", ["ES256", "ES384", "RS256"])
def test_post_as_get_has_empty_payload(keys: dict[str, PrivateKey], alg: str) -> None:
    # RFC 8555 §6.3: "the "payload" field of the JWS object MUST be present and set to the
    # empty string ("")".
    key = keys[alg]
    jws = sign(key, None, url=URL, nonce="nonce-3", kid="https://ca.test/acct/1")
    assert jws["payload"] == ""
    _, payload = verify_jws(jws, key.public_key())
    assert payload is None


def test_empty_object_payload_is_not_post_as_get(keys: dict[str, PrivateKey]) -> None:
    # §7.5.1: a challenge response is the payload {}, distinct from POST-as-GET.
    jws = sign(keys["ES256"], {}, url=URL, nonce="n", kid="https://ca.test/acct/1")
    assert jws["payload"] == b64url(b"{}")


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: ec.generate_private_key(ec.SECP521R1()),
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024),
    ],
    ids=["P-521", "RSA-1024"],
)
def test_unusable_account_keys_are_refused(make_key: Any) -> None:
    with pytest.raises(ConfigError):
        sign(make_key(), {}, url=URL, nonce="n")


# -- External Account Binding (RFC 8555 §7.3.4) ----------------------------------------------

EAB_SECRET = bytes(range(32))


def test_eab_is_hs256_over_the_account_jwk_without_nonce(keys: dict[str, PrivateKey]) -> None:
    eab = ExternalAccountBinding.from_b64url("kid-1", b64url(EAB_SECRET))
    account_key = keys["ES256"]
    jws = eab.sign(account_key, "https://ca.test/new-account")
    protected = decode_part(jws["protected"])
    assert protected == {"alg": "HS256", "kid": "kid-1", "url": "https://ca.test/new-account"}
    assert decode_part(jws["payload"]) == jwk_for(account_key)
    expected = hmac.new(
        EAB_SECRET, f"{jws['protected']}.{jws['payload']}".encode(), hashlib.sha256
    ).digest()
    assert hmac.compare_digest(b64url_decode(jws["signature"]), expected)


def test_eab_repr_hides_the_key() -> None:
    encoded = b64url(EAB_SECRET)
    eab = ExternalAccountBinding.from_b64url("kid-1", encoded)
    for text in (repr(eab), str(eab)):
        assert "kid-1" in text
        assert encoded not in text
        assert repr(EAB_SECRET) not in text
        assert EAB_SECRET.hex() not in text


@pytest.mark.parametrize(
    "encoded",
    ["not base64!", "QUJD=", "ab+/cd", "A", "", "QUJ\nD"],
    ids=["punctuation", "padding", "standard-alphabet", "impossible-length", "empty", "newline"],
)
def test_eab_from_b64url_refuses_bad_keys(encoded: str) -> None:
    with pytest.raises(ConfigError):
        ExternalAccountBinding.from_b64url("kid-1", encoded)


def test_eab_from_b64url_refuses_empty_kid() -> None:
    with pytest.raises(ConfigError):
        ExternalAccountBinding.from_b64url("", b64url(EAB_SECRET))


async def test_register_sends_eab_inside_a_jwk_signed_new_account() -> None:
    server = HostileAcmeServer()
    server.directory["meta"]["externalAccountRequired"] = True
    eab = ExternalAccountBinding.from_b64url("kid-1", b64url(EAB_SECRET))
    async with server.client(account_url=None) as client:
        with pytest.raises(ConfigError, match="External Account Binding"):
            await client.register(agree_tos=True)
        await client.register(agree_tos=True, eab=eab)
        assert client.account_url == server.url("/acct/1")
    (seen,) = server.requests_to("/new-account", "POST")
    assert seen.protected is not None
    assert seen.jws is not None
    assert "kid" not in seen.protected
    verify_jws(seen.jws, public_key_from_jwk(seen.protected["jwk"]))
    binding = seen.payload["externalAccountBinding"]
    inner = decode_part(binding["protected"])
    assert inner == {"alg": "HS256", "kid": "kid-1", "url": server.url("/new-account")}
    assert decode_part(binding["payload"]) == seen.protected["jwk"]


# -- key change (RFC 8555 §7.3.5) -------------------------------------------------------------


async def test_key_change_inner_jws_has_no_nonce(keys: dict[str, PrivateKey]) -> None:
    server = HostileAcmeServer()
    old_key, new_key = keys["ES256"], keys["ES384"]
    async with server.client(account_key=old_key) as client:
        await client.change_key(new_key)
        assert client.account_key is new_key
    (outer,) = server.requests_to("/key-change", "POST")
    assert outer.jws is not None
    assert outer.protected is not None
    # The outer JWS: signed by the old key, by account URL, with a nonce.
    verify_jws(outer.jws, old_key.public_key())
    assert outer.protected["kid"] == server.url("/acct/1")
    assert "nonce" in outer.protected
    # The inner JWS: signed by the new key, with its jwk, the same url, and no nonce.
    inner_protected, inner_payload = verify_jws(outer.payload, new_key.public_key())
    assert "nonce" not in inner_protected
    assert "kid" not in inner_protected
    assert inner_protected["jwk"] == jwk_for(new_key)
    assert inner_protected["url"] == server.url("/key-change")
    assert inner_payload == {"account": server.url("/acct/1"), "oldKey": jwk_for(old_key)}
    # The next request is signed by the new key.
    after = server.requests_to("/acct/1", "POST")[-1]
    assert after.jws is not None
    verify_jws(after.jws, new_key.public_key())


def test_sign_without_nonce_omits_the_member(keys: dict[str, PrivateKey]) -> None:
    jws = sign(keys["RS256"], {"account": "a"}, url=URL, nonce=None)
    assert "nonce" not in decode_part(jws["protected"])
