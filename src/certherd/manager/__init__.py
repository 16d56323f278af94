"""Certificate flows built on the protocol layer: obtain one certificate, and the
renewal rule (:func:`needs_renewal`: the CA's ARI window, else a third of the lifetime
left)."""

import typing as _typing

from certherd import _lazy

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

# Loaded on first use, so importing one submodule does not import them all.
_EXPORTS: dict[str, str] = {
    "IssuedCertificate": "certherd.manager.obtain",
    "IssuedChain": "certherd.manager.obtain",
    "RenewalDecision": "certherd.manager.policy",
    "failure_backoff": "certherd.manager.policy",
    "needs_renewal": "certherd.manager.policy",
    "renewal_threshold": "certherd.manager.policy",
    "obtain_certificate": "certherd.manager.obtain",
    "select_chain": "certherd.manager.obtain",
}

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


if not _typing.TYPE_CHECKING:
    # Hidden from type checkers: a module __getattr__ would make any misspelt import
    # (``from certherd.acme import AcmeClinet``) an Any instead of an error.
    __getattr__ = _lazy.exports_getattr(__name__, _EXPORTS)
