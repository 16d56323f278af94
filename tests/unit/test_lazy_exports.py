"""Lazy package exports: where each name lives is read from the package's own
``if TYPE_CHECKING:`` imports, so it is written in one place only."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from certherd._lazy import type_checking_imports

PACKAGES = [
    "certherd",
    "certherd.acme",
    "certherd.app",
    "certherd.challenges",
    "certherd.crypto",
    "certherd.daemon",
    "certherd.dns",
    "certherd.install",
    "certherd.manager",
    "certherd.migrate",
    "certherd.testing",
]


def test_the_imports_under_type_checking_are_the_table() -> None:
    source = (
        "import typing as _typing\n"
        "from typing import TYPE_CHECKING\n"
        "from certherd.errors import ConfigError\n"
        "if _typing.TYPE_CHECKING:\n"
        "    from certherd.a import One, two as Two\n"
        "    from certherd.b import (\n        Three,\n    )\n"
        "if TYPE_CHECKING:\n"
        "    from certherd.c import Four\n"
        "if not _typing.TYPE_CHECKING:\n"
        "    from certherd.d import Five\n"
    )
    assert type_checking_imports(source) == {
        "One": "certherd.a",
        "Two": "certherd.a",
        "Three": "certherd.b",
        "Four": "certherd.c",
    }


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_is_declared_once_and_resolves(package: str) -> None:
    module = importlib.import_module(package)
    declared = type_checking_imports(Path(str(module.__file__)).read_text(encoding="utf-8"))
    exported = [name for name in module.__all__ if name != "__version__"]
    assert sorted(declared) == sorted(exported), "__all__ and the TYPE_CHECKING imports differ"
    for name in exported:
        assert getattr(module, name) is getattr(importlib.import_module(declared[name]), name)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_exported_name_is_also_a_submodule(package: str) -> None:
    """Importing a submodule sets the package attribute of its name: a function exported
    under the same name would then be the module, depending on what was imported first."""
    import pkgutil

    module = importlib.import_module(package)
    path = getattr(module, "__path__", [])
    submodules = {info.name for info in pkgutil.iter_modules(path)}
    assert not submodules.intersection(module.__all__)


def test_a_misspelt_or_undeclared_name_is_an_attribute_error() -> None:
    acme = importlib.import_module("certherd.acme")
    with pytest.raises(AttributeError, match="AcmeClinet"):
        acme.AcmeClinet  # noqa: B018
    with pytest.raises(AttributeError, match="_typing_private"):
        acme._typing_private  # noqa: B018
