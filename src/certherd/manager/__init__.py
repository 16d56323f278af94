"""Certificate flows built on the protocol layer: obtain (and later renew, revoke)."""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from certherd.manager.obtain import IssuedCertificate, obtain_certificate, select_chain

# Loaded on first use, so importing one submodule does not import them all.
_EXPORTS: dict[str, str] = {
    "IssuedCertificate": "certherd.manager.obtain",
    "obtain_certificate": "certherd.manager.obtain",
    "select_chain": "certherd.manager.obtain",
}

__all__ = ["IssuedCertificate", "obtain_certificate", "select_chain"]


def __getattr__(name: str) -> _typing.Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value
