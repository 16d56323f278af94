"""Unpadded base64url, as ACME uses it (RFC 8555 §6.1, RFC 7515 §2, RFC 4648 §5)."""

from __future__ import annotations

import base64
import re

from certherd.errors import CryptoError

__all__ = ["b64url", "b64url_decode"]

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def b64url(data: bytes) -> str:
    """Encode ``data`` as base64url with the trailing ``=`` padding stripped."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url strictly.

    Only ``[A-Za-z0-9_-]`` is accepted: no padding, whitespace or the ``+/`` of standard
    base64. A length that no encoding can produce, or unused trailing bits that are not
    zero (a non-canonical encoding), are refused too. Any refusal is a :class:`CryptoError`.
    """
    if not _ALPHABET.fullmatch(text):
        position = next(index for index, char in enumerate(text) if not _ALPHABET.fullmatch(char))
        raise CryptoError(
            f"invalid base64url text: character {position + 1} is outside [A-Za-z0-9_-]"
        )
    if len(text) % 4 == 1:
        raise CryptoError(f"invalid base64url text: a length of {len(text)} is impossible")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(data) != text:
        raise CryptoError("invalid base64url text: the unused trailing bits are not zero")
    return data
