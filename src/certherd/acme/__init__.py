"""The ACME wire layer (RFC 8555, RFC 9773 ARI, RFC 8738 IP identifiers, profiles).

``AcmeClient`` is the asyncio client; ``SyncAcmeClient`` the blocking facade over it.
"""

import typing as _typing

from certherd import _lazy

if _typing.TYPE_CHECKING:
    from certherd.acme.client import AcmeClient, CertificateChain, RevocationReason
    from certherd.acme.jws import ExternalAccountBinding, jwk_thumbprint, key_authorization
    from certherd.acme.messages import (
        DNS_01,
        HTTP_01,
        TLS_ALPN_01,
        Account,
        Authorization,
        Challenge,
        Directory,
        DirectoryMeta,
        Identifier,
        Order,
        RenewalInfo,
        Status,
    )
    from certherd.acme.retry import PollPolicy, RetryPolicy
    from certherd.acme.sync import SyncAcmeClient
    from certherd.clock import Clock, SystemClock

# Loaded on first use, so importing one submodule does not import them all.
_EXPORTS: dict[str, str] = {
    "DNS_01": "certherd.acme.messages",
    "HTTP_01": "certherd.acme.messages",
    "TLS_ALPN_01": "certherd.acme.messages",
    "Account": "certherd.acme.messages",
    "AcmeClient": "certherd.acme.client",
    "Authorization": "certherd.acme.messages",
    "CertificateChain": "certherd.acme.client",
    "Challenge": "certherd.acme.messages",
    "Clock": "certherd.clock",
    "Directory": "certherd.acme.messages",
    "DirectoryMeta": "certherd.acme.messages",
    "ExternalAccountBinding": "certherd.acme.jws",
    "Identifier": "certherd.acme.messages",
    "Order": "certherd.acme.messages",
    "PollPolicy": "certherd.acme.retry",
    "RenewalInfo": "certherd.acme.messages",
    "RetryPolicy": "certherd.acme.retry",
    "RevocationReason": "certherd.acme.client",
    "Status": "certherd.acme.messages",
    "SyncAcmeClient": "certherd.acme.sync",
    "SystemClock": "certherd.clock",
    "jwk_thumbprint": "certherd.acme.jws",
    "key_authorization": "certherd.acme.jws",
}

__all__ = [
    "DNS_01",
    "HTTP_01",
    "TLS_ALPN_01",
    "Account",
    "AcmeClient",
    "Authorization",
    "CertificateChain",
    "Challenge",
    "Clock",
    "Directory",
    "DirectoryMeta",
    "ExternalAccountBinding",
    "Identifier",
    "Order",
    "PollPolicy",
    "RenewalInfo",
    "RetryPolicy",
    "RevocationReason",
    "Status",
    "SyncAcmeClient",
    "SystemClock",
    "jwk_thumbprint",
    "key_authorization",
]


if not _typing.TYPE_CHECKING:
    # Hidden from type checkers: a module __getattr__ would make any misspelt import
    # (``from certherd.acme import AcmeClinet``) an Any instead of an error.
    __getattr__ = _lazy.exports_getattr(__name__, _EXPORTS)
