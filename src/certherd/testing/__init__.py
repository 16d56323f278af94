"""Test helpers for programs built on certherd: a Pebble CA launcher and a tiny PKI."""

import typing as _typing

from certherd import _lazy

if _typing.TYPE_CHECKING:
    from certherd.testing.pebble import INSTALL_HINT, PebbleOptions, PebbleServer
    from certherd.testing.pki import MiniCA

# Loaded on first use, so importing one submodule does not import them all.
_EXPORTS: dict[str, str] = {
    "INSTALL_HINT": "certherd.testing.pebble",
    "MiniCA": "certherd.testing.pki",
    "PebbleOptions": "certherd.testing.pebble",
    "PebbleServer": "certherd.testing.pebble",
}

__all__ = ["INSTALL_HINT", "MiniCA", "PebbleOptions", "PebbleServer"]


if not _typing.TYPE_CHECKING:
    # Hidden from type checkers: a module __getattr__ would make any misspelt import
    # an Any instead of an error.
    __getattr__ = _lazy.exports_getattr(__name__, _EXPORTS)
