"""ACME Renewal Information helpers (RFC 9773): the certificate identifier and window pick."""

from __future__ import annotations

import datetime as dt
import random

from cryptography import x509

from certherd.crypto.encoding import b64url
from certherd.errors import CryptoError

__all__ = ["certificate_id", "pick_in_window"]

_system_random = random.SystemRandom()
_MICROSECOND = dt.timedelta(microseconds=1)


def _serial_content_octets(serial: int) -> bytes:
    """The content octets of the DER INTEGER ``serial``: minimal two's complement, big-endian.

    X.690 §8.3: a positive value whose high bit is set gets a leading 0x00
    (0x87654321 -> 00 87 65 43 21); zero is one 0x00 octet.
    """
    magnitude = serial if serial >= 0 else ~serial
    length = magnitude.bit_length() // 8 + 1
    return serial.to_bytes(length, "big", signed=True)


def certificate_id(cert: x509.Certificate) -> str:
    """The RFC 9773 certificate identifier of ``cert``, for renewalInfo and ``replaces``.

    RFC 9773 §4.1: "the base64url encoding of the keyIdentifier field of the
    certificate's Authority Key Identifier (AKI) extension, the period character ".",
    and the base64url encoding of the DER-encoded Serial Number field (without the tag
    and length bytes)", with trailing "=" stripped. §5 builds ``replaces`` the same way.
    A certificate without an AKI keyIdentifier raises :class:`CryptoError`.
    """
    try:
        extension = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except x509.ExtensionNotFound:
        raise CryptoError(
            "the certificate has no Authority Key Identifier: it has no ARI identifier"
        ) from None
    key_identifier = extension.value.key_identifier
    if key_identifier is None:
        raise CryptoError(
            "the certificate's Authority Key Identifier has no keyIdentifier:"
            " it has no ARI identifier"
        )
    return f"{b64url(key_identifier)}.{b64url(_serial_content_octets(cert.serial_number))}"


def pick_in_window(
    start: dt.datetime, end: dt.datetime, rng: random.Random | None = None
) -> dt.datetime:
    """A moment drawn uniformly from ``[start, end)``; ``start`` if the window is empty.

    RFC 9773 §4.2: "Select a uniform random time within the suggested window." The
    draw is in whole microseconds (the resolution of :class:`datetime.datetime`), so the
    result is never ``end``. Pass ``rng`` for a reproducible pick; callers store the pick
    so that every node of a cluster agrees on it.
    """
    if end <= start:
        return start
    generator = rng if rng is not None else _system_random
    steps = (end - start) // _MICROSECOND
    return start + generator.randrange(steps) * _MICROSECOND
