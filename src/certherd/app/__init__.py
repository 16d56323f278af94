"""The library's front door: :class:`Certherd` does what the ``certherd`` commands do.

It opens a config dir (or any storage) and wires solvers, the certherd.toml sync, the
renewal plan and the certificate manager in one place; the CLI is flag parsing, one call
here and printing.
"""

from certherd.app.entry import Certherd
from certherd.app.events import Event, EventKind, LineageRecord, Revocation

__all__ = ["Certherd", "Event", "EventKind", "LineageRecord", "Revocation"]
