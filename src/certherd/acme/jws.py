"""JSON Web Signatures as ACME uses them (RFC 8555 §6.2, RFC 7515, RFC 7638).

Every POST body is a flattened JWS: ``{"protected", "payload", "signature"}``. The
protected header carries ``alg``, ``nonce``, ``url`` and exactly one of ``jwk`` (for
newAccount and revocation by certificate key) or ``kid`` (the account URL).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from certherd.crypto.encoding import b64url, b64url_decode
from certherd.crypto.keys import PrivateKey, PublicKey
from certherd.errors import ConfigError, CryptoError

__all__ = [
    "ExternalAccountBinding",
    "algorithm_for",
    "dumps",
    "jwk_for",
    "jwk_thumbprint",
    "key_authorization",
    "sign",
]


def dumps(value: Any) -> bytes:
    """Compact JSON as sent on the wire (no spaces, UTF-8)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def algorithm_for(key: PrivateKey) -> str:
    """The JWS ``alg`` for an account key: ES256, ES384 or RS256 (RFC 8555 §6.2)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if isinstance(key.curve, ec.SECP256R1):
            return "ES256"
        if isinstance(key.curve, ec.SECP384R1):
            return "ES384"
        raise ConfigError(
            f"account key curve {key.curve.name} is not supported: use P-256 or P-384"
        )
    if isinstance(key, rsa.RSAPrivateKey):
        if not 2048 <= key.key_size <= 4096:
            raise ConfigError(f"account RSA key of {key.key_size} bits: use 2048 to 4096 bits")
        return "RS256"
    raise ConfigError("account key must be EC P-256, EC P-384 or RSA 2048-4096")


def _int_bytes(value: int, length: int | None = None) -> bytes:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return value.to_bytes(size, "big")


def jwk_for(key: PrivateKey | PublicKey) -> dict[str, str]:
    """The public JWK of a key, with only the required members (RFC 7518 §6)."""
    public = (
        key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) else key
    )
    if isinstance(public, ec.EllipticCurvePublicKey):
        numbers = public.public_numbers()
        size = (public.curve.key_size + 7) // 8
        crv = {"secp256r1": "P-256", "secp384r1": "P-384"}.get(public.curve.name)
        if crv is None:
            raise ConfigError(f"curve {public.curve.name} is not supported: use P-256 or P-384")
        return {
            "crv": crv,
            "kty": "EC",
            "x": b64url(_int_bytes(numbers.x, size)),
            "y": b64url(_int_bytes(numbers.y, size)),
        }
    if isinstance(public, rsa.RSAPublicKey):
        rsa_numbers = public.public_numbers()
        return {
            "e": b64url(_int_bytes(rsa_numbers.e)),
            "kty": "RSA",
            "n": b64url(_int_bytes(rsa_numbers.n)),
        }
    raise ConfigError("key must be EC P-256, EC P-384 or RSA")


def jwk_thumbprint(key: PrivateKey | PublicKey) -> str:
    """RFC 7638 §3: base64url SHA-256 of the JWK's required members, sorted, no spaces."""
    canonical = json.dumps(jwk_for(key), sort_keys=True, separators=(",", ":")).encode()
    return b64url(hashlib.sha256(canonical).digest())


def key_authorization(token: str, key: PrivateKey | PublicKey) -> str:
    """RFC 8555 §8.1: ``token || '.' || base64url(Thumbprint(accountKey))``."""
    return f"{token}.{jwk_thumbprint(key)}"


def _raw_signature(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algorithm: hashes.HashAlgorithm = (
            hashes.SHA384() if isinstance(key.curve, ec.SECP384R1) else hashes.SHA256()
        )
        der = key.sign(data, ec.ECDSA(algorithm))
        r, s = decode_dss_signature(der)
        size = (key.curve.key_size + 7) // 8
        # RFC 7518 §3.4: R and S as fixed-length big-endian octets, concatenated.
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    raise CryptoError("cannot sign with this key type")


def sign(
    key: PrivateKey,
    payload: Any | None,
    *,
    url: str,
    nonce: str | None,
    kid: str | None = None,
) -> dict[str, str]:
    """Sign ``payload`` as a flattened JWS (RFC 8555 §6.2).

    ``payload=None`` makes a POST-as-GET (§6.3): the payload is the empty string.
    Without ``kid`` the header carries the public ``jwk``. ``nonce=None`` is only for
    the inner JWS of a key change (§7.3.5), which carries no nonce.
    """
    protected: dict[str, Any] = {"alg": algorithm_for(key), "url": url}
    if nonce is not None:
        protected["nonce"] = nonce
    if kid is not None:
        protected["kid"] = kid
    else:
        protected["jwk"] = jwk_for(key)
    protected_b64 = b64url(dumps(protected))
    payload_b64 = "" if payload is None else b64url(dumps(payload))
    signature = _raw_signature(key, f"{protected_b64}.{payload_b64}".encode("ascii"))
    return {"protected": protected_b64, "payload": payload_b64, "signature": b64url(signature)}


@dataclass(frozen=True)
class ExternalAccountBinding:
    """An External Account Binding given by the CA out of band (RFC 8555 §7.3.4).

    ``hmac_key`` is the raw key (decoded from the base64url the CA hands out). It is
    never shown: ``repr`` hides it.
    """

    kid: str
    hmac_key: bytes

    def __repr__(self) -> str:
        return f"ExternalAccountBinding(kid={self.kid!r}, hmac_key=<hidden>)"

    @classmethod
    def from_b64url(cls, kid: str, encoded_key: str) -> ExternalAccountBinding:
        """Build from the base64url key text as CAs publish it."""
        if not kid:
            raise ConfigError(
                "EAB key id is empty: give {eab_kid}, the key id your CA gave you",
                settings=("eab_kid",),
            )
        try:
            raw = b64url_decode(encoded_key.strip())
        except CryptoError:
            raise ConfigError(
                "the EAB HMAC key given as {eab_hmac_key} is not base64url: copy it exactly "
                "as your CA shows it",
                settings=("eab_hmac_key",),
            ) from None
        if not raw:
            raise ConfigError(
                "the EAB HMAC key is empty: give {eab_hmac_key}, the key your CA gave you",
                settings=("eab_hmac_key",),
            )
        return cls(kid=kid, hmac_key=raw)

    def sign(self, account_key: PrivateKey, new_account_url: str) -> dict[str, str]:
        """RFC 8555 §7.3.4: HS256 JWS over the account JWK, kid = EAB key id, no nonce."""
        protected = {"alg": "HS256", "kid": self.kid, "url": new_account_url}
        protected_b64 = b64url(dumps(protected))
        payload_b64 = b64url(dumps(jwk_for(account_key)))
        mac = hmac.new(self.hmac_key, f"{protected_b64}.{payload_b64}".encode(), hashlib.sha256)
        return {
            "protected": protected_b64,
            "payload": payload_b64,
            "signature": b64url(mac.digest()),
        }
