"""The key types certherd generates and loads: the one list that certherd.toml, the
command line, :mod:`certherd.crypto.keys` and the Certbot import use.

Imports nothing but the standard library, so the CLI can offer the choices without
loading ``cryptography``. The same five spellings appear twice below, as the enum code
uses and as the ``Literal`` the certherd.toml schema checks against (a type checker
needs both written out); a unit test holds them equal. The curve or size of each type is
read from its spelling (``ec256`` is P-256, ``rsa3072`` RSA of 3,072 bits), so a new type
is one line of the enum and one of the ``Literal``.
"""

from __future__ import annotations

import enum
from typing import Final, Literal, get_args

__all__ = [
    "DEFAULT_KEY_TYPE",
    "EC_CURVES",
    "KEY_TYPE_NAMES",
    "RSA_SIZES",
    "KeyType",
    "KeyTypeName",
]


class KeyType(enum.StrEnum):
    """The key types certherd generates and loads; the value is the config spelling."""

    EC256 = "ec256"
    EC384 = "ec384"
    RSA2048 = "rsa2048"
    RSA3072 = "rsa3072"
    RSA4096 = "rsa4096"

    @property
    def bits(self) -> int:
        """The curve's size for EC (256 for P-256), the modulus size for RSA."""
        return int(self.value.removeprefix("ec").removeprefix("rsa"))

    @property
    def curve(self) -> str | None:
        """An EC type's curve by its SEC 2 name, as ``cryptography`` names it; None for RSA."""
        return f"secp{self.bits}r1" if self.value.startswith("ec") else None

    @property
    def rsa_bits(self) -> int | None:
        """An RSA type's modulus size in bits; None for EC."""
        return self.bits if self.value.startswith("rsa") else None


KeyTypeName = Literal["ec256", "ec384", "rsa2048", "rsa3072", "rsa4096"]
"""A key type as certherd.toml spells it (the schema type of ``key_type``)."""

KEY_TYPE_NAMES: Final[tuple[KeyTypeName, ...]] = get_args(KeyTypeName)
"""Every key type's spelling, in the order choices are shown."""

DEFAULT_KEY_TYPE: Final[KeyTypeName] = "ec256"
"""The key type of a certificate whose settings name none."""

EC_CURVES: Final[dict[str, KeyType]] = {
    member.curve: member for member in KeyType if member.curve is not None
}
"""SEC 2 curve name (``secp256r1``) -> its key type."""

RSA_SIZES: Final[dict[int, KeyType]] = {
    member.rsa_bits: member for member in KeyType if member.rsa_bits is not None
}
"""RSA modulus size in bits -> its key type."""
