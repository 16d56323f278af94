"""The public API is explicit: every package's ``__all__`` names real, documented objects."""

from __future__ import annotations

import importlib
import importlib.resources
import inspect
import pkgutil
import types

import pytest


def _walk(packages_only: bool) -> list[str]:
    """Every package (or every module) of certherd but the CLI, whose API is its flags."""
    import certherd

    found = ["certherd"]
    for info in pkgutil.walk_packages(certherd.__path__, "certherd."):
        if info.name.startswith("certherd.cli") or "._" in info.name:
            continue
        if info.ispkg or not packages_only:
            found.append(info.name)
    return sorted(found)


PACKAGES = _walk(packages_only=True)
MODULES = _walk(packages_only=False)

EXPECTED_ACME = {
    "AcmeClient",
    "SyncAcmeClient",
    "ExternalAccountBinding",
    "Identifier",
    "Order",
    "Authorization",
    "Challenge",
    "RenewalInfo",
    "RevocationReason",
    "RetryPolicy",
    "PollPolicy",
    "Clock",
}


def test_every_package_is_covered() -> None:
    assert set(PACKAGES) >= {
        "certherd",
        "certherd.acme",
        "certherd.app",
        "certherd.challenges",
        "certherd.crypto",
        "certherd.daemon",
        "certherd.dns",
        "certherd.hooks",
        "certherd.install",
        "certherd.manager",
        "certherd.migrate",
        "certherd.storage",
        "certherd.testing",
    }
    assert {"certherd.errors", "certherd.names", "certherd.config"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist_and_are_documented(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported, f"{name} exports nothing"
    assert len(set(exported)) == len(exported), f"{name}.__all__ has duplicates"
    for attribute in exported:
        value = getattr(module, attribute)
        if isinstance(value, type | types.FunctionType) and not attribute.startswith("__"):
            assert (value.__doc__ or "").strip(), f"{name}.{attribute} has no docstring"


@pytest.mark.parametrize("name", [p for p in PACKAGES if p != "certherd"])
def test_a_package_exports_what_its_modules_name(name: str) -> None:
    """A package's ``__all__`` names objects of its own modules, each the module's one."""
    module = importlib.import_module(name)
    for attribute in module.__all__:
        value = getattr(module, attribute)
        home = getattr(value, "__module__", None)
        if home is not None and isinstance(value, type | types.FunctionType):
            assert attribute in importlib.import_module(home).__all__, f"{name}.{attribute}"


def test_library_entry_points_are_exported() -> None:
    """Issue 11 item 11: what a library user needs is at the package front doors."""
    import certherd.acme as acme
    import certherd.challenges as challenges
    import certherd.crypto as crypto
    import certherd.manager as manager

    assert (acme.HTTP_01, acme.DNS_01, acme.TLS_ALPN_01) == ("http-01", "dns-01", "tls-alpn-01")
    assert challenges.DNS_01 == "dns-01"
    assert challenges.dns01_record_name("*.example.com") == "_acme-challenge.example.com."
    assert challenges.dns01_txt_value("token.thumb") == (
        "lCdftpJCXapaZHkBGIZbcubeKW8RmA0jSG_aZN01zbU"
    )
    assert "extensions" in inspect.signature(crypto.build_csr).parameters
    assert "csr" in inspect.signature(manager.obtain_certificate).parameters
    for name in ("needs_renewal", "renewal_threshold", "RenewalDecision"):
        assert name in manager.__all__


def test_acme_exports_the_protocol_surface() -> None:
    module = importlib.import_module("certherd.acme")
    assert set(module.__all__) >= EXPECTED_ACME


def test_sync_facade_mirrors_the_async_client() -> None:
    from certherd.acme import AcmeClient, SyncAcmeClient

    public = {
        n for n in vars(AcmeClient) if not n.startswith("_") and callable(getattr(AcmeClient, n))
    }
    missing = {
        n
        for n in public - {"aclose", "verify_chain", "fetch_authorization_response"}
        if not hasattr(SyncAcmeClient, n)
    }
    assert not missing, f"SyncAcmeClient lacks {sorted(missing)}"


def test_package_is_typed() -> None:
    import certherd

    assert importlib.resources.files(certherd).joinpath("py.typed").is_file()
