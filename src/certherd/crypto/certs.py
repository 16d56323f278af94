"""Issued certificates: load a PEM chain, describe it, and check it matches the order."""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from certherd.crypto.keys import PublicKey, public_key_equal
from certherd.errors import CertificateMismatchError, ConfigError, CryptoError, safe_text

__all__ = [
    "CertificateInfo",
    "cert_to_pem",
    "chain_to_pem",
    "describe_certificate",
    "load_pem_chain",
    "verify_issued",
]

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# What cryptography raises for a certificate it cannot read: its parser is lazy, so these
# come from attribute access (``extensions``, ``public_key()``...), long after loading.
PARSE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,  # UnicodeError included
    TypeError,
    UnsupportedAlgorithm,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
    x509.InvalidVersion,
)


def load_pem_chain(data: bytes) -> list[x509.Certificate]:
    """All certificates of a PEM bundle, in file order (leaf first for an ACME chain).

    RFC 8555 §7.4.2: the certificate resource is ``application/pem-certificate-chain``.
    No certificate, a block that does not parse, or a certificate any part of which
    certherd reads later cannot be read (a duplicate extension, RFC 5280 §4.2: "MUST NOT
    include more than one instance of a particular extension"; an unknown key type; a
    malformed name) raises :class:`CryptoError` here, so that every certificate this
    returns can be described and verified without an exception from cryptography.
    """
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except PARSE_ERRORS:
        raise CryptoError("not a PEM certificate chain: no readable certificate found") from None
    for position, cert in enumerate(certificates, start=1):
        try:
            _read_everything(cert)
        except PARSE_ERRORS as exc:
            raise CryptoError(
                f"certificate {position} of the chain cannot be read: {safe_text(exc, 200)}"
            ) from None
    return certificates


def _read_everything(cert: x509.Certificate) -> None:
    """Touch every part of ``cert`` that certherd uses, so the lazy parser fails now."""
    for extension in cert.extensions:
        _ = extension.value
    describe_certificate(cert)
    cert.subject.rfc4514_string()
    cert.issuer.rfc4514_string()
    cert.public_key()
    _ = cert.signature_algorithm_oid


@dataclass(frozen=True)
class CertificateInfo:
    """What certherd shows and decides on about one certificate.

    ``ip_addresses`` are in canonical text form (``2001:db8::1``), ``serial_hex`` is
    lower-case hex without leading zeros, ``not_before``/``not_after`` are UTC-aware and
    ``fingerprint_sha256`` is lower-case hex of the SHA-256 of the DER.
    """

    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    subject_cn: str | None
    issuer_cn: str | None
    serial: int
    serial_hex: str
    not_before: dt.datetime
    not_after: dt.datetime
    authority_key_id: bytes | None
    fingerprint_sha256: str

    @property
    def lifetime(self) -> dt.timedelta:
        """The validity period, ``not_after - not_before``."""
        return self.not_after - self.not_before


def _common_name(name: x509.Name) -> str | None:
    """The first commonName of ``name``, or None."""
    attributes = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attributes:
        return None
    value = attributes[0].value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _subject_alternative_names(cert: x509.Certificate) -> list[x509.GeneralName]:
    """The entries of the subjectAltName extension, or an empty list."""
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(extension.value)


def _authority_key_id(cert: x509.Certificate) -> bytes | None:
    """The keyIdentifier of the Authority Key Identifier extension, or None."""
    try:
        extension = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except x509.ExtensionNotFound:
        return None
    return extension.value.key_identifier


def describe_certificate(cert: x509.Certificate) -> CertificateInfo:
    """Summarize ``cert`` as a :class:`CertificateInfo`."""
    names = _subject_alternative_names(cert)
    return CertificateInfo(
        dns_names=tuple(entry.value for entry in names if isinstance(entry, x509.DNSName)),
        ip_addresses=tuple(
            str(entry.value) for entry in names if isinstance(entry, x509.IPAddress)
        ),
        subject_cn=_common_name(cert.subject),
        issuer_cn=_common_name(cert.issuer),
        serial=cert.serial_number,
        serial_hex=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        authority_key_id=_authority_key_id(cert),
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
    )


def _name_labels(cert: x509.Certificate) -> set[str]:
    """The leaf's SAN entries as comparable labels: ``dns:<lower>``, ``ip:<canonical>``."""
    labels: set[str] = set()
    for entry in _subject_alternative_names(cert):
        if isinstance(entry, x509.DNSName):
            labels.add(f"dns:{entry.value.lower()}")
        elif isinstance(entry, x509.IPAddress):
            labels.add(f"ip:{entry.value}")
        else:
            labels.add(f"{type(entry).__name__}:{entry.value}")
    return labels


def _requested_labels(dns_names: Sequence[str], ip_addresses: Sequence[str]) -> set[str]:
    """The requested identifiers as labels comparable with :func:`_name_labels`."""
    labels = {f"dns:{name.lower()}" for name in dns_names}
    for text in ip_addresses:
        try:
            address: _IPAddress = ipaddress.ip_address(text)
        except ValueError:
            raise ConfigError(
                f"invalid IP address {safe_text(text, 100)!r}: use an IPv4 or IPv6 address"
            ) from None
        labels.add(f"ip:{address}")
    return labels


def _describe_labels(labels: set[str]) -> str:
    """A short, safe, sorted list of labels for an error message."""
    return safe_text(", ".join(sorted(labels)), 300)


def _subject_text(cert: x509.Certificate) -> str:
    """The certificate's subject for one line of an error message."""
    return safe_text(cert.subject.rfc4514_string() or "(empty subject)", 120)


def verify_issued(
    chain: Sequence[x509.Certificate],
    *,
    public_key: PublicKey,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
    now: dt.datetime,
) -> None:
    """Check that the CA issued what the order asked for, before anything is saved.

    Raises :class:`CertificateMismatchError` with one line saying what differs unless:
    the chain is not empty; the leaf (``chain[0]``) holds ``public_key``; the leaf's
    subjectAltName set is exactly the requested names (DNS case-insensitively, IPs as
    addresses); ``now`` (timezone-aware) lies within the leaf's validity, both ends
    included (RFC 5280 §4.1.2.5); and each certificate is signed by the next one.
    Trust in the last certificate is not judged here.
    """
    if now.tzinfo is None:
        raise ValueError("verify_issued needs a timezone-aware `now`")
    if not chain:
        raise CertificateMismatchError("the CA returned an empty certificate chain")
    leaf = chain[0]

    leaf_key = leaf.public_key()
    if not isinstance(
        leaf_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey
    ) or not public_key_equal(leaf_key, public_key):
        raise CertificateMismatchError(
            "the issued certificate is for a different public key than the CSR's"
        )

    found = _name_labels(leaf)
    wanted = _requested_labels(dns_names, ip_addresses)
    if found != wanted:
        differences: list[str] = []
        if wanted - found:
            differences.append(f"missing {_describe_labels(wanted - found)}")
        if found - wanted:
            differences.append(f"unexpected {_describe_labels(found - wanted)}")
        raise CertificateMismatchError(
            f"the issued certificate's names differ from the order: {'; '.join(differences)}"
        )

    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if now < not_before:
        raise CertificateMismatchError(
            f"the issued certificate is not valid yet: notBefore is {not_before.isoformat()},"
            f" now is {now.astimezone(dt.UTC).isoformat()}"
        )
    if now > not_after:
        raise CertificateMismatchError(
            f"the issued certificate has expired: notAfter is {not_after.isoformat()},"
            f" now is {now.astimezone(dt.UTC).isoformat()}"
        )

    for position, (child, issuer) in enumerate(itertools.pairwise(chain), start=1):
        try:
            child.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
            if child.issuer != issuer.subject:
                reason = "its issuer name is not the next certificate's subject"
            elif isinstance(exc, InvalidSignature):
                reason = "the signature does not verify"
            else:
                reason = "the signature algorithm or issuer key type is unsupported"
            raise CertificateMismatchError(
                f"certificate {position} of the chain ({_subject_text(child)}) is not issued"
                f" by certificate {position + 1} ({_subject_text(issuer)}): {reason}"
            ) from exc


def cert_to_pem(cert: x509.Certificate) -> bytes:
    """The PEM encoding of one certificate."""
    return cert.public_bytes(serialization.Encoding.PEM)


def chain_to_pem(certs: Sequence[x509.Certificate]) -> bytes:
    """The PEM encodings of ``certs`` concatenated in order (leaf first)."""
    return b"".join(cert_to_pem(cert) for cert in certs)
