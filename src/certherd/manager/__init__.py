"""Certificate flows built on the protocol layer: obtain one certificate, and the
renewal rule (:func:`needs_renewal`: the CA's ARI window, else a third of the lifetime
left)."""

import typing as _typing

from certherd import _lazy

__all__ = [
    "IssuedCertificate",
    "IssuedChain",
    "RenewalDecision",
    "failure_backoff",
    "needs_renewal",
    "obtain_certificate",
    "renewal_threshold",
    "select_chain",
]

if _typing.TYPE_CHECKING:
    from certherd.manager.obtain import (
        IssuedCertificate,
        IssuedChain,
        obtain_certificate,
        select_chain,
    )
    from certherd.manager.policy import (
        RenewalDecision,
        failure_backoff,
        needs_renewal,
        renewal_threshold,
    )
else:
    __getattr__ = _lazy.exports_getattr(__name__)  # the imports above, on first use
