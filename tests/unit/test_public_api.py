"""The public API is explicit: every package's ``__all__`` names real, documented objects."""

from __future__ import annotations

import importlib
import importlib.resources

import pytest

PACKAGES = [
    "certherd",
    "certherd.acme",
    "certherd.crypto",
    "certherd.challenges",
    "certherd.manager",
    "certherd.errors",
    "certherd.names",
]

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


@pytest.mark.parametrize("name", PACKAGES)
def test_all_names_exist_and_are_documented(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported, f"{name} exports nothing"
    assert len(set(exported)) == len(exported), f"{name}.__all__ has duplicates"
    for attribute in exported:
        value = getattr(module, attribute)
        if callable(value) and not attribute.startswith("__"):
            assert (value.__doc__ or "").strip(), f"{name}.{attribute} has no docstring"


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
