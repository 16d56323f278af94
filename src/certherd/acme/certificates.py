"""Downloaded certificate chains (RFC 8555 §7.4.2) and revocation reasons (§7.6)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certherd.crypto.certs import describe_certificate
from certherd.errors import ConfigError

__all__ = ["CertificateChain", "RevocationReason"]


class RevocationReason(enum.IntEnum):
    """RFC 5280 §5.3.1 reason codes, as sent in ``revokeCert`` (RFC 8555 §7.6)."""

    UNSPECIFIED = 0
    KEY_COMPROMISE = 1
    CA_COMPROMISE = 2
    AFFILIATION_CHANGED = 3
    SUPERSEDED = 4
    CESSATION_OF_OPERATION = 5
    CERTIFICATE_HOLD = 6
    REMOVE_FROM_CRL = 8
    PRIVILEGE_WITHDRAWN = 9
    AA_COMPROMISE = 10

    @classmethod
    def parse(cls, name: str | int) -> RevocationReason:
        """From a code or a name like ``keyCompromise`` / ``key_compromise``."""
        if isinstance(name, int):
            return cls(name)
        wanted = name.replace("_", "").replace("-", "").lower()
        for member in cls:
            if member.name.replace("_", "").lower() == wanted:
                return member
        choices = ", ".join(_camel(m.name) for m in cls)
        raise ConfigError(f"unknown revocation reason {name!r}: use one of {choices}")


def _camel(name: str) -> str:
    head, *rest = name.lower().split("_")
    return head + "".join(part.capitalize() for part in rest)


@dataclass(frozen=True)
class CertificateChain:
    """A certificate as downloaded (RFC 8555 §7.4.2): leaf first, then its issuers.

    ``alternates`` are the URLs of ``Link: rel="alternate"`` chains for the same leaf.
    """

    url: str
    pem: bytes
    certificates: tuple[x509.Certificate, ...]
    alternates: tuple[str, ...] = ()

    @property
    def leaf(self) -> x509.Certificate:
        return self.certificates[0]

    @property
    def leaf_pem(self) -> bytes:
        return self.leaf.public_bytes(Encoding.PEM)

    @property
    def issuers_pem(self) -> bytes:
        return b"".join(c.public_bytes(Encoding.PEM) for c in self.certificates[1:])

    def issuer_names(self) -> tuple[str, ...]:
        """Common names of every issuer in the chain, the topmost issuer's issuer included."""
        names: list[str] = []
        for cert in self.certificates[1:]:
            info = describe_certificate(cert)
            if info.subject_cn:
                names.append(info.subject_cn)
        top = describe_certificate(self.certificates[-1])
        if top.issuer_cn:
            names.append(top.issuer_cn)
        return tuple(names)
