"""The library's front door: :class:`Certherd` does what the ``certherd`` commands do.

It opens a config dir (or any storage) and wires solvers, the certherd.toml sync, the
renewal plan and the certificate manager in one place; the CLI is flag parsing, one call
here and printing.
"""

import typing as _typing

from certherd import _lazy

if _typing.TYPE_CHECKING:
    from certherd.app.entry import Certherd
    from certherd.app.events import Event, EventKind, LineageRecord, Revocation

# Loaded on first use: a command with nothing to tell never builds an event class.
_EXPORTS: dict[str, str] = {
    "Certherd": "certherd.app.entry",
    "Event": "certherd.app.events",
    "EventKind": "certherd.app.events",
    "LineageRecord": "certherd.app.events",
    "Revocation": "certherd.app.events",
}

__all__ = ["Certherd", "Event", "EventKind", "LineageRecord", "Revocation"]


if not _typing.TYPE_CHECKING:
    # Hidden from type checkers, so that a misspelt import is an error, not an Any.
    __getattr__ = _lazy.exports_getattr(__name__, _EXPORTS)
