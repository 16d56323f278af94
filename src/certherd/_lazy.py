"""Lazy package exports: a package's names load their modules on first use.

Keeps ``import certherd.x.y`` from importing every sibling (and httpx, cryptography...)
just because the package ``__init__`` re-exports them.
"""

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["exports_getattr"]


def exports_getattr(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving ``exports`` (name -> module) on first access."""
    namespace = importlib.import_module(package).__dict__

    def getattr_(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return getattr_
