"""Certificate flows built on the protocol layer: obtain (and later renew, revoke)."""

import typing as _typing

from certherd import _lazy

if _typing.TYPE_CHECKING:
    from certherd.manager.obtain import IssuedCertificate, obtain_certificate, select_chain

# Loaded on first use, so importing one submodule does not import them all.
_EXPORTS: dict[str, str] = {
    "IssuedCertificate": "certherd.manager.obtain",
    "obtain_certificate": "certherd.manager.obtain",
    "select_chain": "certherd.manager.obtain",
}

__all__ = ["IssuedCertificate", "obtain_certificate", "select_chain"]


if not _typing.TYPE_CHECKING:
    # Hidden from type checkers: a module __getattr__ would make any misspelt import
    # (``from certherd.acme import AcmeClinet``) an Any instead of an error.
    __getattr__ = _lazy.exports_getattr(__name__, _EXPORTS)
