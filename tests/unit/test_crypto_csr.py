"""Tests for certherd.crypto.csr."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certherd.crypto import KeyType, build_csr, csr_der, generate_key, public_key_equal
from certherd.crypto.keys import PrivateKey
from certherd.errors import ConfigError


@pytest.fixture(scope="module")
def ec_key() -> PrivateKey:
    return generate_key(KeyType.EC256)


def _san(csr: x509.CertificateSigningRequest) -> x509.Extension[x509.SubjectAlternativeName]:
    return csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_csr_carries_names_addresses_and_common_name(ec_key: PrivateKey) -> None:
    csr = build_csr(
        ec_key,
        dns_names=["WWW.Example.com", "*.example.com"],
        ip_addresses=["192.0.2.1", "2001:DB8::1"],
    )
    assert csr.is_signature_valid
    san = _san(csr)
    assert san.value.get_values_for_type(x509.DNSName) == ["www.example.com", "*.example.com"]
    assert san.value.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("192.0.2.1"),
        ipaddress.ip_address("2001:db8::1"),
    ]
    assert not san.critical
    common_names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [attribute.value for attribute in common_names] == ["www.example.com"]
    public_key = csr.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key_equal(public_key, ec_key.public_key())


def test_long_first_name_gives_empty_subject_and_critical_san(ec_key: PrivateKey) -> None:
    long_name = "a" * 60 + ".example.com"
    csr = build_csr(ec_key, dns_names=[long_name, "short.example.com"])
    assert len(csr.subject) == 0
    san = _san(csr)
    assert san.critical
    assert san.value.get_values_for_type(x509.DNSName) == [long_name, "short.example.com"]


def test_common_name_of_exactly_64_characters_is_kept(ec_key: PrivateKey) -> None:
    name = "a" * 52 + ".example.com"
    assert len(name) == 64
    csr = build_csr(ec_key, dns_names=[name])
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name


def test_ip_only_csr_has_empty_subject(ec_key: PrivateKey) -> None:
    csr = build_csr(ec_key, ip_addresses=["198.51.100.7"])
    assert len(csr.subject) == 0
    assert _san(csr).critical
    assert _san(csr).value.get_values_for_type(x509.DNSName) == []


def test_duplicates_are_dropped_in_order(ec_key: PrivateKey) -> None:
    csr = build_csr(
        ec_key,
        dns_names=["b.example.com", "A.example.com", "a.example.com"],
        ip_addresses=["2001:db8::1", "2001:0db8:0::1"],
    )
    san = _san(csr).value
    assert san.get_values_for_type(x509.DNSName) == ["b.example.com", "a.example.com"]
    assert len(san.get_values_for_type(x509.IPAddress)) == 1


def test_no_identifier_is_a_config_error(ec_key: PrivateKey) -> None:
    with pytest.raises(ConfigError, match="at least one"):
        build_csr(ec_key)


@pytest.mark.parametrize("address", ["300.1.1.1", "example.com", "192.0.2.0/24", ""])
def test_invalid_ip_address_is_a_config_error(ec_key: PrivateKey, address: str) -> None:
    with pytest.raises(ConfigError, match="invalid IP address"):
        build_csr(ec_key, dns_names=["example.com"], ip_addresses=[address])


@pytest.mark.parametrize("name", ["", "bücher.example", "a b.example"])
def test_invalid_dns_name_is_a_config_error(ec_key: PrivateKey, name: str) -> None:
    with pytest.raises(ConfigError, match="invalid DNS name"):
        build_csr(ec_key, dns_names=[name])


@pytest.mark.parametrize(
    ("key_type", "hash_type"),
    [
        (KeyType.EC256, hashes.SHA256),
        (KeyType.EC384, hashes.SHA384),
        (KeyType.RSA2048, hashes.SHA256),
    ],
)
def test_signature_hash_follows_the_key(key_type: KeyType, hash_type: type) -> None:
    csr = build_csr(generate_key(key_type), dns_names=["example.com"])
    assert isinstance(csr.signature_hash_algorithm, hash_type)
    assert csr.is_signature_valid


def test_csr_der_round_trips(ec_key: PrivateKey) -> None:
    csr = build_csr(ec_key, dns_names=["example.com"])
    der = csr_der(csr)
    assert der[0] == 0x30
    assert x509.load_der_x509_csr(der) == csr


def test_extensions_are_added_as_given(ec_key: PrivateKey) -> None:
    from certherd.crypto import csr_names

    must_staple = x509.TLSFeature([x509.TLSFeatureType.status_request])
    private = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    csr = build_csr(
        ec_key,
        ["a.example", "b.example"],
        ["192.0.2.1"],
        extensions=[(must_staple, False), (private, True)],
    )
    assert csr.is_signature_valid
    assert csr.extensions.get_extension_for_class(x509.TLSFeature).value == must_staple
    custom = csr.extensions.get_extension_for_oid(private.oid)
    assert custom.critical
    assert custom.value == private
    assert csr_names(csr) == (["a.example", "b.example"], ["192.0.2.1"])


@pytest.mark.parametrize(
    ("extensions", "message"),
    [
        ([(x509.SubjectAlternativeName([x509.DNSName("x.example")]), False)], "subjectAltName"),
        (
            [(x509.TLSFeature([x509.TLSFeatureType.status_request]), False)] * 2,
            "given twice",
        ),
        ([x509.TLSFeature([x509.TLSFeatureType.status_request])], "(value, critical) pair"),
        ([(x509.TLSFeature([x509.TLSFeatureType.status_request]), "yes")], "(value, critical)"),
    ],
    ids=["san", "twice", "bare", "critical-not-bool"],
)
def test_bad_extensions_are_refused(
    ec_key: PrivateKey, extensions: list[object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_csr(ec_key, ["a.example"], extensions=extensions)  # type: ignore[arg-type]
