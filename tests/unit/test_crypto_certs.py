"""Tests for certherd.crypto.certs: loading, describing and checking issued chains."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certherd.crypto import (
    CertificateInfo,
    KeyType,
    cert_to_pem,
    chain_to_pem,
    describe_certificate,
    generate_key,
    load_pem_chain,
    verify_issued,
)
from certherd.crypto.keys import PrivateKey
from certherd.errors import CertificateMismatchError, ConfigError, CryptoError

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
NOT_BEFORE = dt.datetime(2025, 5, 1, tzinfo=dt.UTC)
NOT_AFTER = dt.datetime(2025, 7, 30, tzinfo=dt.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificate(
    *,
    subject: str | None,
    public_key: ec.EllipticCurvePublicKey,
    issuer: str,
    issuer_key: PrivateKey,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    serial: int = 0x1234,
    not_before: dt.datetime = NOT_BEFORE,
    not_after: dt.datetime = NOT_AFTER,
    authority_key_id: bytes | None = None,
    is_ca: bool = False,
) -> x509.Certificate:
    """A certificate built and signed with cryptography for the tests."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject) if subject else x509.Name([]))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    general_names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    general_names += [x509.IPAddress(ipaddress.ip_address(text)) for text in ip_addresses]
    if general_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(general_names), critical=not subject
        )
    if authority_key_id is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier(authority_key_id, None, None), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class Hierarchy:
    """A root, an intermediate and a leaf for two DNS names and two IP addresses."""

    leaf_key: PrivateKey
    leaf: x509.Certificate
    intermediate: x509.Certificate
    root: x509.Certificate
    intermediate_key: PrivateKey

    @property
    def chain(self) -> list[x509.Certificate]:
        return [self.leaf, self.intermediate, self.root]


def _ec_key() -> ec.EllipticCurvePrivateKey:
    key = generate_key(KeyType.EC256)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


@pytest.fixture(scope="module")
def hierarchy() -> Hierarchy:
    root_key, intermediate_key, leaf_key = _ec_key(), _ec_key(), _ec_key()
    root = make_certificate(
        subject="Test Root",
        public_key=root_key.public_key(),
        issuer="Test Root",
        issuer_key=root_key,
        is_ca=True,
    )
    intermediate = make_certificate(
        subject="Test Intermediate",
        public_key=intermediate_key.public_key(),
        issuer="Test Root",
        issuer_key=root_key,
        is_ca=True,
    )
    leaf = make_certificate(
        subject="example.com",
        public_key=leaf_key.public_key(),
        issuer="Test Intermediate",
        issuer_key=intermediate_key,
        dns_names=["example.com", "www.example.com"],
        ip_addresses=["192.0.2.10", "2001:db8::10"],
        serial=0x00ABCDEF,
        authority_key_id=b"\x01\x02\x03",
    )
    return Hierarchy(leaf_key, leaf, intermediate, root, intermediate_key)


def _verify(
    hierarchy: Hierarchy,
    chain: Sequence[x509.Certificate] | None = None,
    *,
    dns_names: Sequence[str] = ("example.com", "www.example.com"),
    ip_addresses: Sequence[str] = ("192.0.2.10", "2001:db8::10"),
    now: dt.datetime = NOW,
    public_key: ec.EllipticCurvePublicKey | None = None,
) -> None:
    key = hierarchy.leaf_key.public_key() if public_key is None else public_key
    verify_issued(
        hierarchy.chain if chain is None else chain,
        public_key=key,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        now=now,
    )


# --- load_pem_chain and PEM output -------------------------------------------------


def test_chain_round_trips_through_pem_in_order(hierarchy: Hierarchy) -> None:
    pem = chain_to_pem(hierarchy.chain)
    assert pem.count(b"-----BEGIN CERTIFICATE-----") == 3
    assert load_pem_chain(pem) == hierarchy.chain
    assert cert_to_pem(hierarchy.leaf) == pem[: len(cert_to_pem(hierarchy.leaf))]


def test_load_pem_chain_ignores_text_between_blocks(hierarchy: Hierarchy) -> None:
    pem = b"leaf:\n" + cert_to_pem(hierarchy.leaf) + b"\nissuer:\n" + cert_to_pem(hierarchy.root)
    assert load_pem_chain(pem) == [hierarchy.leaf, hierarchy.root]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ],
    ids=["empty", "text", "broken-block"],
)
def test_load_pem_chain_refuses_no_or_bad_certificates(data: bytes) -> None:
    with pytest.raises(CryptoError, match="PEM certificate chain"):
        load_pem_chain(data)


def test_load_pem_chain_refuses_a_bad_block_after_a_good_one(hierarchy: Hierarchy) -> None:
    broken = b"-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n"
    data = cert_to_pem(hierarchy.leaf) + broken
    with pytest.raises(CryptoError):
        load_pem_chain(data)


# --- describe_certificate ----------------------------------------------------------


def test_describe_certificate(hierarchy: Hierarchy) -> None:
    info = describe_certificate(hierarchy.leaf)
    assert info == CertificateInfo(
        dns_names=("example.com", "www.example.com"),
        ip_addresses=("192.0.2.10", "2001:db8::10"),
        subject_cn="example.com",
        issuer_cn="Test Intermediate",
        serial=0xABCDEF,
        serial_hex="abcdef",
        not_before=NOT_BEFORE,
        not_after=NOT_AFTER,
        authority_key_id=b"\x01\x02\x03",
        fingerprint_sha256=hierarchy.leaf.fingerprint(hashes.SHA256()).hex(),
    )
    assert info.not_before.tzinfo is not None
    assert info.lifetime == dt.timedelta(days=90)
    assert len(info.fingerprint_sha256) == 64


def test_describe_certificate_without_san_cn_or_aki(hierarchy: Hierarchy) -> None:
    key = _ec_key()
    cert = make_certificate(
        subject=None,
        public_key=key.public_key(),
        issuer="Issuer",
        issuer_key=key,
        ip_addresses=["2001:0DB8:0000::0001"],
        serial=1,
    )
    info = describe_certificate(cert)
    assert info.dns_names == ()
    assert info.ip_addresses == ("2001:db8::1",)
    assert info.subject_cn is None
    assert info.authority_key_id is None
    assert info.serial_hex == "1"


# --- verify_issued -------------------------------------------------------------------


def test_verify_issued_accepts_a_matching_chain(hierarchy: Hierarchy) -> None:
    _verify(hierarchy)


def test_verify_issued_compares_names_loosely_but_exactly(hierarchy: Hierarchy) -> None:
    _verify(
        hierarchy,
        dns_names=["WWW.EXAMPLE.COM", "Example.com", "example.com"],
        ip_addresses=["2001:DB8:0:0::10", "192.0.2.10", "192.0.2.10"],
    )


def test_verify_issued_accepts_the_validity_bounds(hierarchy: Hierarchy) -> None:
    _verify(hierarchy, now=NOT_BEFORE)
    _verify(hierarchy, now=NOT_AFTER)
    _verify(hierarchy, now=NOW.astimezone(dt.timezone(dt.timedelta(hours=-7))))


def test_verify_issued_accepts_a_leaf_alone(hierarchy: Hierarchy) -> None:
    _verify(hierarchy, [hierarchy.leaf])


def test_verify_issued_refuses_an_empty_chain(hierarchy: Hierarchy) -> None:
    with pytest.raises(CertificateMismatchError, match="empty"):
        _verify(hierarchy, [])


def test_verify_issued_refuses_a_wrong_key(hierarchy: Hierarchy) -> None:
    with pytest.raises(CertificateMismatchError, match="different public key"):
        _verify(hierarchy, public_key=_ec_key().public_key())


def test_verify_issued_refuses_an_extra_name(hierarchy: Hierarchy) -> None:
    with pytest.raises(CertificateMismatchError, match=r"unexpected dns:www\.example\.com$"):
        _verify(hierarchy, dns_names=["example.com"])


def test_verify_issued_refuses_a_missing_name(hierarchy: Hierarchy) -> None:
    with pytest.raises(
        CertificateMismatchError, match=r"missing dns:mail\.example\.com, ip:2001:db8::1$"
    ):
        _verify(
            hierarchy,
            dns_names=["example.com", "www.example.com", "mail.example.com"],
            ip_addresses=["192.0.2.10", "2001:db8::10", "2001:db8::1"],
        )


def test_verify_issued_refuses_unrequested_ip_addresses(hierarchy: Hierarchy) -> None:
    with pytest.raises(
        CertificateMismatchError, match=r"unexpected ip:192\.0\.2\.10, ip:2001:db8::10$"
    ):
        _verify(hierarchy, ip_addresses=[])


def test_verify_issued_reports_missing_and_unexpected_together(hierarchy: Hierarchy) -> None:
    with pytest.raises(CertificateMismatchError) as caught:
        _verify(hierarchy, dns_names=["example.com", "other.example.com"])
    message = str(caught.value)
    assert "missing dns:other.example.com" in message
    assert "unexpected dns:www.example.com" in message
    assert "\n" not in message


def test_verify_issued_refuses_an_invalid_requested_address(hierarchy: Hierarchy) -> None:
    with pytest.raises(ConfigError, match="invalid IP address"):
        _verify(hierarchy, ip_addresses=["192.0.2.300"])


def test_verify_issued_refuses_an_expired_certificate(hierarchy: Hierarchy) -> None:
    with pytest.raises(CertificateMismatchError, match="expired"):
        _verify(hierarchy, now=NOT_AFTER + dt.timedelta(seconds=1))


def test_verify_issued_refuses_a_not_yet_valid_certificate(hierarchy: Hierarchy) -> None:
    with pytest.raises(CertificateMismatchError, match="not valid yet"):
        _verify(hierarchy, now=NOT_BEFORE - dt.timedelta(seconds=1))


def test_verify_issued_needs_an_aware_now(hierarchy: Hierarchy) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        _verify(hierarchy, now=NOW.replace(tzinfo=None))


def test_verify_issued_refuses_a_chain_in_the_wrong_order(hierarchy: Hierarchy) -> None:
    chain = [hierarchy.leaf, hierarchy.root, hierarchy.intermediate]
    with pytest.raises(
        CertificateMismatchError, match=r"certificate 1 .* certificate 2 .*issuer name"
    ):
        _verify(hierarchy, chain)


def test_verify_issued_refuses_a_forged_signature(hierarchy: Hierarchy) -> None:
    impostor_key = _ec_key()
    impostor = make_certificate(
        subject="Test Intermediate",
        public_key=impostor_key.public_key(),
        issuer="Test Root",
        issuer_key=impostor_key,
        is_ca=True,
    )
    chain = [hierarchy.leaf, impostor, hierarchy.root]
    with pytest.raises(CertificateMismatchError, match=r"certificate 1 .*does not verify"):
        _verify(hierarchy, chain)


def test_verify_issued_refuses_a_broken_link_further_up(hierarchy: Hierarchy) -> None:
    other_root_key = _ec_key()
    other_root = make_certificate(
        subject="Test Root",
        public_key=other_root_key.public_key(),
        issuer="Test Root",
        issuer_key=other_root_key,
        is_ca=True,
    )
    chain = [hierarchy.leaf, hierarchy.intermediate, other_root]
    with pytest.raises(CertificateMismatchError, match=r"certificate 2 .* certificate 3 "):
        _verify(hierarchy, chain)


def test_verify_issued_reports_other_name_types_as_unexpected(hierarchy: Hierarchy) -> None:
    key = _ec_key()
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("example.com"))
        .issuer_name(_name("Test Intermediate"))
        .public_key(key.public_key())
        .serial_number(5)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("example.com"), x509.UniformResourceIdentifier("https://x.test")]
            ),
            critical=False,
        )
        .sign(hierarchy.intermediate_key, hashes.SHA256())
    )
    with pytest.raises(CertificateMismatchError, match=r"unexpected .*https://x\.test"):
        verify_issued(
            [leaf, hierarchy.intermediate],
            public_key=key.public_key(),
            dns_names=["example.com"],
            ip_addresses=[],
            now=NOW,
        )
