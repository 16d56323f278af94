"""Certificate signing requests for an order's finalize call (RFC 8555 §7.4)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certherd.crypto.keys import PrivateKey
from certherd.errors import ConfigError, CryptoError, refuse_text, safe_text

__all__ = ["build_csr", "csr_der", "csr_names"]

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
    *,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> x509.CertificateSigningRequest:
    """Build and sign a CSR asking for ``dns_names`` and ``ip_addresses``.

    RFC 8555 §7.4: the CSR carries the identifiers in a subjectAltName extension. DNS
    names are lower-cased (wildcards such as ``*.example.com`` are kept); IP addresses
    are parsed and :class:`ConfigError` is raised for a bad one or when there is no
    identifier at all. The subject is ``CN=<first DNS name>`` when that fits in 64
    characters, otherwise empty, and then the SAN extension is critical (RFC 5280
    §4.2.1.6). The signature is ECDSA/RSA with SHA-256, or SHA-384 for a P-384 key.

    ``extensions`` are further extensions to request, each ``(value, critical)``, such
    as ``(x509.TLSFeature([x509.TLSFeatureType.status_request]), False)`` (OCSP
    must-staple, RFC 7633) or an ``x509.UnrecognizedExtension`` of your own; the CA
    decides which it honours. The subjectAltName is built from the names and cannot be
    given here, nor can one extension be given twice (ConfigError).
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
    refuse_text(extensions, "extensions")
    seen = {x509.SubjectAlternativeName.oid}
    for entry in extensions:
        value, critical = _extension(entry)
        if value.oid in seen:
            what = "subjectAltName" if value.oid == x509.SubjectAlternativeName.oid else "it"
            raise ConfigError(
                f"extension {value.oid.dotted_string} is given twice: the CSR carries one "
                f"{what} (the names are given as dns_names and ip_addresses)"
            )
        seen.add(value.oid)
        builder = builder.add_extension(value, critical=critical)
    algorithm: hashes.SHA256 | hashes.SHA384 = hashes.SHA256()
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1):
        algorithm = hashes.SHA384()
    return builder.sign(key, algorithm)


def _extension(entry: Any) -> tuple[x509.ExtensionType, bool]:
    """One ``(value, critical)`` pair of build_csr's ``extensions``, checked."""
    if (
        not isinstance(entry, tuple)
        or len(entry) != 2
        or not isinstance(entry[0], x509.ExtensionType)
        or not isinstance(entry[1], bool)
    ):
        raise ConfigError(
            f"extension {safe_text(entry, 100)} is not a (value, critical) pair such as "
            "(x509.TLSFeature([x509.TLSFeatureType.status_request]), False)"
        )
    return entry[0], entry[1]


def csr_names(csr: x509.CertificateSigningRequest) -> tuple[list[str], list[str]]:
    """The DNS names and IP addresses a CSR asks for (its subjectAltName, RFC 8555 §7.4),
    in its order; both empty when it has none."""
    try:
        extension = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return [], []
    except ValueError as exc:
        raise CryptoError(f"the CSR's extensions cannot be read: {exc}") from None
    names = extension.value
    dns_names = [name.lower() for name in names.get_values_for_type(x509.DNSName)]
    addresses = [str(address) for address in names.get_values_for_type(x509.IPAddress)]
    return dns_names, addresses


def csr_der(csr: x509.CertificateSigningRequest) -> bytes:
    """The DER encoding of ``csr``, as finalize sends it (base64url, RFC 8555 §7.4)."""
    return csr.public_bytes(serialization.Encoding.DER)
