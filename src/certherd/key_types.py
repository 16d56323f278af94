"""The key types certherd generates and loads: the one list that certherd.toml, the
command line and :mod:`certherd.crypto.keys` use.

Imports nothing but the standard library, so the CLI can offer the choices without
loading ``cryptography``. The same five spellings appear twice below, as the enum code
uses and as the ``Literal`` the certherd.toml schema checks against (a type checker
needs both written out); a unit test holds them equal.
"""

from __future__ import annotations

import enum
from typing import Final, Literal, get_args

__all__ = ["DEFAULT_KEY_TYPE", "KEY_TYPE_NAMES", "KeyType", "KeyTypeName"]


class KeyType(enum.StrEnum):
    """The key types certherd generates and loads; the value is the config spelling."""

    EC256 = "ec256"
    EC384 = "ec384"
    RSA2048 = "rsa2048"
    RSA3072 = "rsa3072"
    RSA4096 = "rsa4096"


KeyTypeName = Literal["ec256", "ec384", "rsa2048", "rsa3072", "rsa4096"]
"""A key type as certherd.toml spells it (the schema type of ``key_type``)."""

KEY_TYPE_NAMES: Final[tuple[KeyTypeName, ...]] = get_args(KeyTypeName)
"""Every key type's spelling, in the order choices are shown."""

DEFAULT_KEY_TYPE: Final[KeyTypeName] = "ec256"
"""The key type of a certificate whose settings name none."""
