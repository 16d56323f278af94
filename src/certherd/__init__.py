"""certherd: an ACME (RFC 8555) client library, CLI and daemon.

:class:`Certherd` is the front door: it opens a config dir (or any storage) and does what
the ``certherd`` commands do (``renew``, ``issue``, ``apply``, ``run``...). The protocol
layer is :mod:`certherd.acme`.
"""

import typing as _typing

from certherd import _lazy

if _typing.TYPE_CHECKING:
    from certherd.app import Certherd, Event, LineageRecord, Revocation

__version__ = "0.1.0"

# Loaded on first use: `import certherd` (and `certherd --version`) stays cheap.
_EXPORTS: dict[str, str] = {
    "Certherd": "certherd.app",
    "Event": "certherd.app",
    "LineageRecord": "certherd.app",
    "Revocation": "certherd.app",
}

__all__ = ["Certherd", "Event", "LineageRecord", "Revocation", "__version__"]


if not _typing.TYPE_CHECKING:
    # Hidden from type checkers: a module __getattr__ would make any misspelt import
    # (``from certherd import Certhred``) an Any instead of an error.
    __getattr__ = _lazy.exports_getattr(__name__, _EXPORTS)
