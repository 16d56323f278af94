"""Private keys: generate, identify, load, serialize and store them.

Only the key types ACME CAs commonly accept are supported: ECDSA on P-256 and P-384 and
RSA of 2048 to 4096 bits. Error messages never carry key material.
"""

from __future__ import annotations

import os
from typing import TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)

from certherd.crypto.files import atomic_write
from certherd.errors import ConfigError, CryptoError
from certherd.key_types import EC_CURVES, RSA_SIZES, KeyType

__all__ = [
    "KeyType",
    "PrivateKey",
    "PublicKey",
    "generate_key",
    "key_type_of",
    "load_private_key",
    "load_private_key_file",
    "private_key_to_pem",
    "public_key_equal",
    "write_private_key",
]

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

RSA_PUBLIC_EXPONENT = 65537
RSA_MIN_BITS = min(RSA_SIZES)
RSA_MAX_BITS = max(RSA_SIZES)

_CURVE_NAMES = [f"P-{member.bits}" for member in EC_CURVES.values()]  # FIPS 186 names
_CURVE_CHOICES = " or ".join(_CURVE_NAMES)
_EC_CHOICES = "EC " + "/".join(_CURVE_NAMES)
_RSA_CHOICES = " or ".join(", ".join(str(bits) for bits in RSA_SIZES).rsplit(", ", 1))


def _parse_key_type(key_type: KeyType | str) -> KeyType:
    """The :class:`KeyType` for a member or its spelling (case-insensitive)."""
    if isinstance(key_type, KeyType):
        return key_type
    try:
        return KeyType(key_type.strip().lower())
    except ValueError:
        choices = ", ".join(member.value for member in KeyType)
        raise ConfigError(f"unknown key type {key_type!r}: choose one of {choices}") from None


def generate_key(key_type: KeyType | str = KeyType.EC256) -> PrivateKey:
    """Generate a new private key of ``key_type`` (RSA keys use the exponent 65537).

    An unknown spelling raises :class:`ConfigError` listing the valid choices.
    """
    chosen = _parse_key_type(key_type)
    if chosen.curve is not None:
        # cryptography names each curve class after the curve: secp256r1 -> ec.SECP256R1.
        curve: type[ec.EllipticCurve] = getattr(ec, chosen.curve.upper())
        return ec.generate_private_key(curve())
    assert chosen.rsa_bits is not None  # every type is EC or RSA
    return rsa.generate_private_key(public_exponent=RSA_PUBLIC_EXPONENT, key_size=chosen.rsa_bits)


def key_type_of(key: PrivateKey) -> KeyType:
    """The :class:`KeyType` of ``key``.

    A key certherd can load but not name (an RSA key of, say, 2560 bits, or another
    curve) raises :class:`CryptoError` naming its size or curve.
    """
    if isinstance(key, ec.EllipticCurvePrivateKey):
        found = EC_CURVES.get(key.curve.name)
        if found is None:
            raise CryptoError(f"unsupported EC curve {key.curve.name}: use {_CURVE_CHOICES}")
        return found
    if isinstance(key, rsa.RSAPrivateKey):
        named = RSA_SIZES.get(key.key_size)
        if named is None:
            raise CryptoError(
                f"RSA key of {key.key_size} bits has no key type: use {_RSA_CHOICES} bits"
            )
        return named
    raise CryptoError(f"unsupported key type {type(key).__name__}: use EC or RSA")


def private_key_to_pem(key: PrivateKey) -> bytes:
    """Serialize ``key`` as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def _check_supported(key: PrivateKeyTypes) -> PrivateKey:
    """Return ``key`` if certherd can use it, else raise :class:`CryptoError`."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in EC_CURVES:
            raise CryptoError(
                f"unsupported private key: EC curve {key.curve.name}; use {_CURVE_CHOICES}"
            )
        return key
    if isinstance(key, rsa.RSAPrivateKey):
        size = key.key_size
        if not RSA_MIN_BITS <= size <= RSA_MAX_BITS or size % 8:
            raise CryptoError(
                f"unsupported private key: RSA of {size} bits; use {RSA_MIN_BITS} to "
                f"{RSA_MAX_BITS} bits in steps of 8"
            )
        return key
    raise CryptoError(
        f"unsupported private key type {type(key).__name__}: use {_EC_CHOICES} or RSA"
    )


def load_private_key(data: bytes) -> PrivateKey:
    """Load an unencrypted private key from PEM or DER (PKCS#8, PKCS#1 or SEC1).

    Only EC P-256/P-384 and RSA of 2048 to 4096 bits are accepted. Anything else, an
    encrypted key or bytes that are not a key raise :class:`CryptoError` with one line
    that never quotes the input.
    """
    is_pem = b"-----BEGIN" in data
    try:
        if is_pem:
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except TypeError:
        # cryptography raises TypeError when the key is encrypted and no password was given.
        raise CryptoError(
            "the private key is encrypted: certherd needs it unencrypted"
            " (for example `openssl pkey -in KEY -out KEY.plain`)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        # The parser's own message adds nothing a user can act on; drop it with the
        # traceback so that no fragment of the key can leak through either.
        form = "PEM" if is_pem else "DER"
        raise CryptoError(
            f"not a usable {form} private key (expected PKCS#8, PKCS#1 or SEC1,"
            f" {_EC_CHOICES} or RSA)"
        ) from None
    return _check_supported(key)


def load_private_key_file(path: str | os.PathLike[str]) -> PrivateKey:
    """Load a private key from a file; see :func:`load_private_key`.

    A missing or unreadable file raises :class:`ConfigError` naming the path; a file
    that holds no usable key raises :class:`CryptoError` naming the path.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise ConfigError(f"private key file {name} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read private key file {name}: {exc.strerror or exc}") from exc
    try:
        return load_private_key(data)
    except CryptoError as exc:
        raise CryptoError(f"{name}: {exc}") from None


def write_private_key(path: str | os.PathLike[str], key: PrivateKey) -> None:
    """Store ``key`` as PKCS#8 PEM at ``path`` atomically, readable by the owner only (0600)."""
    atomic_write(path, private_key_to_pem(key), mode=0o600)


def _subject_public_key_info(key: CertificatePublicKeyTypes) -> bytes:
    """The DER SubjectPublicKeyInfo of any public key cryptography can serialize."""
    return key.public_bytes(
        encoding=serialization.Encoding.DER,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )


def public_key_equal(a: PublicKey, b: PublicKey) -> bool:
    """Whether two public keys are the same key (their SubjectPublicKeyInfo DER is equal)."""
    return _subject_public_key_info(a) == _subject_public_key_info(b)
