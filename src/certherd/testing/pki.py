"""A tiny certificate authority for local test servers' TLS listeners.

Pebble ships no certificate for its own listener, and the test servers (acme2certifier,
hostile ACME servers) need one too: :class:`MiniCA` makes a self-signed CA (EC P-256, or
RSA 2048) and signs server certificates for names and addresses. Test use only: the keys
are made on the spot, unprotected, and valid for days.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["MiniCA", "write_key"]

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

_VALIDITY = datetime.timedelta(days=30)
_BACKDATE = datetime.timedelta(hours=1)


def write_key(key: PrivateKey, path: Path) -> Path:
    """Write ``key`` as unencrypted PKCS#8 PEM, created 0600 (never readable by others)."""
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certherd tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True)
class MiniCA:
    """A self-signed CA that signs TLS server certificates."""

    key: PrivateKey
    certificate: x509.Certificate

    @classmethod
    def create(
        cls,
        common_name: str,
        *,
        rsa_key: bool = False,
        validity: datetime.timedelta = _VALIDITY,
    ) -> MiniCA:
        """A new CA valid for ``validity``: EC P-256 by default, RSA 2048 with ``rsa_key``."""
        key: PrivateKey = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if rsa_key
            else ec.generate_private_key(ec.SECP256R1())
        )
        now = datetime.datetime.now(datetime.UTC)
        public_key = key.public_key()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    @property
    def pem(self) -> bytes:
        """The CA certificate in PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue_server(
        self, dns_names: Sequence[str], ip_addresses: Sequence[str] = ()
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A new EC P-256 key and a TLS server certificate for the names and addresses."""
        if not dns_names and not ip_addresses:
            raise ValueError("a server certificate needs a name or an address")
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name((list(dns_names) or list(ip_addresses))[0]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return key, certificate

    def write_server_files(
        self, folder: Path, stem: str, dns_names: Sequence[str], ip_addresses: Sequence[str] = ()
    ) -> tuple[Path, Path]:
        """Issue a server certificate; write ``STEM.pem`` and ``STEM-key.pem`` (0600)."""
        key, certificate = self.issue_server(dns_names, ip_addresses)
        cert_path = folder / f"{stem}.pem"
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return cert_path, write_key(key, folder / f"{stem}-key.pem")
