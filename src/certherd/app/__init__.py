"""The library's front door: :class:`Certherd` does what the ``certherd`` commands do.

It opens a config dir (or any storage) and wires solvers, the certherd.toml sync, the
renewal plan and the certificate manager in one place; the CLI is flag parsing, one call
here and printing.
"""

import typing as _typing

from certherd import _lazy

__all__ = ["Certherd", "Event", "EventKind", "LineageRecord", "Revocation"]

if _typing.TYPE_CHECKING:
    from certherd.app.entry import Certherd
    from certherd.app.events import Event, EventKind, LineageRecord, Revocation
else:
    __getattr__ = _lazy.exports_getattr(__name__)  # the imports above, on first use
