"""The ACME wire layer (RFC 8555, RFC 9773 ARI, RFC 8738 IP identifiers, profiles).

``AcmeClient`` is the asyncio client; ``SyncAcmeClient`` the blocking facade over it.
"""

import typing as _typing

from certherd import _lazy

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
else:
    __getattr__ = _lazy.exports_getattr(__name__)  # the imports above, on first use
