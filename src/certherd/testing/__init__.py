"""Test helpers for programs built on certherd: a Pebble CA launcher and a tiny PKI."""

import typing as _typing

from certherd import _lazy

__all__ = ["INSTALL_HINT", "MiniCA", "PebbleOptions", "PebbleServer"]

if _typing.TYPE_CHECKING:
    from certherd.testing.pebble import INSTALL_HINT, PebbleOptions, PebbleServer
    from certherd.testing.pki import MiniCA
else:
    __getattr__ = _lazy.exports_getattr(__name__)  # the imports above, on first use
