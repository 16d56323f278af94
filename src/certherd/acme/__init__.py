"""The ACME wire layer (RFC 8555, RFC 9773 ARI, RFC 8738 IP identifiers, profiles).

``AcmeClient`` is the asyncio client; ``SyncAcmeClient`` the blocking facade over it.
"""

from certherd.acme.client import AcmeClient, CertificateChain, RevocationReason
from certherd.acme.jws import ExternalAccountBinding, jwk_thumbprint, key_authorization
from certherd.acme.messages import (
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
from certherd.acme.retry import Clock, PollPolicy, RetryPolicy, SystemClock
from certherd.acme.sync import SyncAcmeClient

__all__ = [
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
