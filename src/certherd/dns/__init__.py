"""DNS providers for dns-01: the provider protocol and the registry that finds them
(built in: rfc2136, exec, lexicon; more through the ``certherd.dns_providers`` entry points)."""

import typing as _typing

from certherd import _lazy

if _typing.TYPE_CHECKING:
    from certherd.dns.base import DnsProvider, ProviderInfo, TxtRecord
    from certherd.dns.registry import available_providers, check_settings, create_provider

# Loaded on first use, so importing one submodule does not import them all.
_EXPORTS: dict[str, str] = {
    "DnsProvider": "certherd.dns.base",
    "ProviderInfo": "certherd.dns.base",
    "TxtRecord": "certherd.dns.base",
    "available_providers": "certherd.dns.registry",
    "check_settings": "certherd.dns.registry",
    "create_provider": "certherd.dns.registry",
}

__all__ = [
    "DnsProvider",
    "ProviderInfo",
    "TxtRecord",
    "available_providers",
    "check_settings",
    "create_provider",
]


if not _typing.TYPE_CHECKING:
    # Hidden from type checkers: a module __getattr__ would make any misspelt import
    # an Any instead of an error.
    __getattr__ = _lazy.exports_getattr(__name__, _EXPORTS)
