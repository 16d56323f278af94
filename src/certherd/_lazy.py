"""Lazy package exports: a package's names load their modules on first use.

Keeps ``import certherd.x.y`` from importing every sibling (and httpx, cryptography...)
just because the package ``__init__`` re-exports them. A package declares its names
once, as imports under ``if TYPE_CHECKING:`` (so type checkers see them and a misspelt
import is an error, not an ``Any``: they never see the ``__getattr__``) and lists
them in ``__all__``::

    if _typing.TYPE_CHECKING:
        from certherd.x.y import Thing
    else:
        __getattr__ = _lazy.exports_getattr(__name__)

The first name asked for reads those imports from the package's own source text: where each
name lives is written in one place only.
"""

import importlib
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["exports_getattr", "type_checking_imports"]


_BLOCK = re.compile(r"^if (?:_?typing\.)?TYPE_CHECKING:[ \t]*\n((?:[ \t]+\S.*\n|[ \t]*\n)+)", re.M)
_IMPORT = re.compile(r"^[ \t]+from[ \t]+([\w.]+)[ \t]+import[ \t]+(\([^)]*\)|.*)$", re.M)


def type_checking_imports(source: str) -> dict[str, str]:
    """Name -> module of every ``from M import N [as A]`` under a top-level
    ``if TYPE_CHECKING:`` (``typing.`` or ``_typing.`` before it too) in ``source``.

    Read with two regular expressions, not :mod:`ast`: importing ``ast`` would cost
    every lazy package's first use a few milliseconds (``certherd --version`` counts).
    The blocks are ruff-formatted imports, which these expressions cover (a test
    checks every package against its ``__all__``)."""
    found: dict[str, str] = {}
    for block in _BLOCK.finditer(source):
        for module, names in _IMPORT.findall(block.group(1)):
            if module.startswith("."):
                continue
            names = re.sub(r"#[^\n]*", "", names).strip("()")
            for item in names.split(","):
                parts = item.split()
                if len(parts) == 1 or (len(parts) == 3 and parts[1] == "as"):
                    found[parts[-1]] = module
    return found


def exports_getattr(package: str, exports: Mapping[str, str] | None = None) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving the package's exports (name -> module) on first
    access: ``exports``, or else the package's ``if TYPE_CHECKING:`` imports."""
    namespace = importlib.import_module(package).__dict__
    table: dict[str, Mapping[str, str]] = {}

    def where(name: str) -> str | None:
        if "map" not in table:
            if exports is not None:
                table["map"] = exports
            else:
                with open(namespace["__file__"], encoding="utf-8") as file:
                    source = file.read()
                table["map"] = type_checking_imports(source)
        return table["map"].get(name)

    def getattr_(name: str) -> Any:
        module = where(name) if name in namespace.get("__all__", ()) else None
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return getattr_
