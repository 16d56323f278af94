"""DNS providers for dns-01: the provider protocol and the registry that finds them
(built in: rfc2136, exec, lexicon; more through the ``certherd.dns_providers`` entry points)."""

import typing as _typing

from certherd import _lazy

__all__ = [
    "DnsProvider",
    "ProviderInfo",
    "TxtRecord",
    "available_providers",
    "check_settings",
    "create_provider",
]

if _typing.TYPE_CHECKING:
    from certherd.dns.base import DnsProvider, ProviderInfo, TxtRecord
    from certherd.dns.registry import available_providers, check_settings, create_provider
else:
    __getattr__ = _lazy.exports_getattr(__name__)  # the imports above, on first use
