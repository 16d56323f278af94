"""certherd: an ACME (RFC 8555) client library, CLI and daemon.

:class:`Certherd` is the front door: it opens a config dir (or any storage) and does what
the ``certherd`` commands do (``renew``, ``issue``, ``apply``, ``run``...). The protocol
layer is :mod:`certherd.acme`.
"""

import typing as _typing

from certherd import _lazy

__all__ = ["Certherd", "Event", "LineageRecord", "Revocation", "__version__"]

if _typing.TYPE_CHECKING:
    from certherd.app import Certherd, Event, LineageRecord, Revocation
else:
    __getattr__ = _lazy.exports_getattr(__name__)  # the imports above, on first use

__version__ = "0.1.0"
