"""Certificate signing requests for an order's finalize call (RFC 8555 §7.4)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certherd.crypto.keys import PrivateKey
from certherd.errors import ConfigError, refuse_text, safe_text

__all__ = ["build_csr", "csr_der"]

# RFC 5280 Appendix A.1: ub-common-name INTEGER ::= 64
COMMON_NAME_MAX_LENGTH = 64


def _dns_names(names: Sequence[str]) -> list[str]:
    """Lower-cased DNS names in the given order, duplicates dropped, bad ones refused."""
    result: list[str] = []
    for name in names:
        lowered = name.lower()
        if not lowered or not lowered.isascii() or any(char.isspace() for char in lowered):
            raise ConfigError(
                f"invalid DNS name {safe_text(name, 100)!r}: use a non-empty ASCII name"
                " (an internationalized name in its xn-- A-label form)"
            )
        if lowered not in result:
            result.append(lowered)
    return result


def _ip_addresses(addresses: Sequence[str]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Parsed IP addresses in the given order, duplicates dropped, bad ones refused."""
    result: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for text in addresses:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise ConfigError(
                f"invalid IP address {safe_text(text, 100)!r}: use an IPv4 or IPv6 address"
            ) from None
        if address not in result:
            result.append(address)
    return result


def build_csr(
    key: PrivateKey,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
) -> x509.CertificateSigningRequest:
    """Build and sign a CSR asking for ``dns_names`` and ``ip_addresses``.

    RFC 8555 §7.4: the CSR carries the identifiers in a subjectAltName extension. DNS
    names are lower-cased (wildcards such as ``*.example.com`` are kept); IP addresses
    are parsed and :class:`ConfigError` is raised for a bad one or when there is no
    identifier at all. The subject is ``CN=<first DNS name>`` when that fits in 64
    characters, otherwise empty, and then the SAN extension is critical (RFC 5280
    §4.2.1.6). The signature is ECDSA/RSA with SHA-256, or SHA-384 for a P-384 key.
    """
    refuse_text(dns_names, "dns_names")
    refuse_text(ip_addresses, "ip_addresses")
    names = _dns_names(dns_names)
    addresses = _ip_addresses(ip_addresses)
    if not names and not addresses:
        raise ConfigError("a certificate needs at least one DNS name or IP address")

    subject_attributes: list[x509.NameAttribute[str]] = []
    if names and len(names[0]) <= COMMON_NAME_MAX_LENGTH:
        subject_attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, names[0]))
    general_names: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
    general_names.extend(x509.IPAddress(address) for address in addresses)

    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(subject_attributes))
        .add_extension(x509.SubjectAlternativeName(general_names), critical=not subject_attributes)
    )
    algorithm: hashes.SHA256 | hashes.SHA384 = hashes.SHA256()
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1):
        algorithm = hashes.SHA384()
    return builder.sign(key, algorithm)


def csr_der(csr: x509.CertificateSigningRequest) -> bytes:
    """The DER encoding of ``csr``, as finalize sends it (base64url, RFC 8555 §7.4)."""
    return csr.public_bytes(serialization.Encoding.DER)
