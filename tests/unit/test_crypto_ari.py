"""Tests for certherd.crypto.ari and certherd.crypto.encoding (RFC 9773 vectors)."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certherd.crypto import b64url, b64url_decode, certificate_id, load_pem_chain, pick_in_window
from certherd.errors import CryptoError

# RFC 9773 §4.1: AKI keyIdentifier 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4,
# serial DER content 00:87:65:43:21, identifier "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE".
RFC9773_KEY_IDENTIFIER = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
RFC9773_SERIAL = 0x87654321
RFC9773_IDENTIFIER = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"

# RFC 9773 Appendix A: the example end-entity certificate the §4.1 example is computed from.
RFC9773_APPENDIX_A = b"""\
-----BEGIN CERTIFICATE-----
MIIBQzCB66ADAgECAgUAh2VDITAKBggqhkjOPQQDAjAVMRMwEQYDVQQDEwpFeGFt
cGxlIENBMCIYDzAwMDEwMTAxMDAwMDAwWhgPMDAwMTAxMDEwMDAwMDBaMBYxFDAS
BgNVBAMTC2V4YW1wbGUuY29tMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEeBZu
7cbpAYNXZLbbh8rNIzuOoqOOtmxA1v7cRm//AwyMwWxyHz4zfwmBhcSrf47NUAFf
qzLQ2PPQxdTXREYEnKMjMCEwHwYDVR0jBBgwFoAUaYhba4dGQEHhs3uEe6CuLN4B
yNQwCgYIKoZIzj0EAwIDRwAwRAIge09+S5TZAlw5tgtiVvuERV6cT4mfutXIlwTb
+FYN/8oCIClDsqBklhB9KAelFiYt9+6FDj3z4KGVelYM5MdsO3pK
-----END CERTIFICATE-----
"""


def make_certificate(serial: int, aki: x509.AuthorityKeyIdentifier | None) -> x509.Certificate:
    """A self-signed certificate with the given serial and Authority Key Identifier."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "example.com")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2025, 4, 1, tzinfo=dt.UTC))
    )
    if aki is not None:
        builder = builder.add_extension(aki, critical=False)
    return builder.sign(key, hashes.SHA256())


def _aki(key_identifier: bytes) -> x509.AuthorityKeyIdentifier:
    return x509.AuthorityKeyIdentifier(key_identifier, None, None)


# --- certificate_id ------------------------------------------------------------------


def test_certificate_id_matches_rfc9773_example() -> None:
    cert = make_certificate(RFC9773_SERIAL, _aki(RFC9773_KEY_IDENTIFIER))
    assert certificate_id(cert) == RFC9773_IDENTIFIER


def test_certificate_id_of_rfc9773_appendix_a_certificate() -> None:
    [cert] = load_pem_chain(RFC9773_APPENDIX_A)
    assert cert.serial_number == RFC9773_SERIAL
    assert certificate_id(cert) == RFC9773_IDENTIFIER


def test_certificate_id_parts_decode_to_the_rfc9773_bytes() -> None:
    key_part, serial_part = RFC9773_IDENTIFIER.split(".")
    assert b64url_decode(key_part) == RFC9773_KEY_IDENTIFIER
    assert b64url_decode(serial_part) == bytes.fromhex("0087654321")


@pytest.mark.parametrize(
    ("serial", "content_octets"),
    [
        (1, "01"),
        (0x7F, "7f"),
        (0x80, "0080"),
        (0xFF, "00ff"),
        (0x0100, "0100"),
        (0x7FFFFFFF, "7fffffff"),
        (0x87654321, "0087654321"),
        (0x0123456789ABCDEF0123456789ABCDEF01234567, "0123456789abcdef0123456789abcdef01234567"),
        (0x8123456789ABCDEF0123456789ABCDEF012345, "008123456789abcdef0123456789abcdef012345"),
    ],
)
def test_certificate_id_serial_is_der_integer_content(serial: int, content_octets: str) -> None:
    cert = make_certificate(serial, _aki(b"\x01"))
    key_part, serial_part = certificate_id(cert).split(".")
    assert key_part == "AQ"
    assert b64url_decode(serial_part).hex() == content_octets


def test_certificate_id_without_aki_is_a_crypto_error() -> None:
    cert = make_certificate(RFC9773_SERIAL, None)
    with pytest.raises(CryptoError, match="Authority Key Identifier"):
        certificate_id(cert)


def test_certificate_id_without_key_identifier_is_a_crypto_error() -> None:
    aki = x509.AuthorityKeyIdentifier(
        None, [x509.DirectoryName(x509.Name([]))], authority_cert_serial_number=7
    )
    cert = make_certificate(RFC9773_SERIAL, aki)
    with pytest.raises(CryptoError, match="keyIdentifier"):
        certificate_id(cert)


# --- pick_in_window ------------------------------------------------------------------

START = dt.datetime(2025, 1, 2, 4, 0, tzinfo=dt.UTC)
END = dt.datetime(2025, 1, 3, 4, 0, tzinfo=dt.UTC)


def test_pick_in_window_stays_in_the_half_open_window() -> None:
    rng = random.Random(9773)
    picks = [pick_in_window(START, END, rng) for _ in range(2000)]
    assert all(START <= pick < END for pick in picks)
    # Uniform: each quarter of the window gets roughly a quarter of the picks.
    quarter = (END - START) / 4
    counts = [0, 0, 0, 0]
    for pick in picks:
        counts[(pick - START) // quarter] += 1
    assert all(400 < count < 600 for count in counts)


def test_pick_in_window_is_reproducible_with_a_seeded_rng() -> None:
    first = pick_in_window(START, END, random.Random(1))
    second = pick_in_window(START, END, random.Random(1))
    assert first == second


def test_pick_in_window_without_rng() -> None:
    assert START <= pick_in_window(START, END) < END


def test_pick_in_window_of_one_microsecond_is_the_start() -> None:
    end = START + dt.timedelta(microseconds=1)
    assert pick_in_window(START, end, random.Random(0)) == START


@pytest.mark.parametrize("end", [START, START - dt.timedelta(hours=1)])
def test_pick_in_window_empty_or_inverted_gives_start(end: dt.datetime) -> None:
    assert pick_in_window(START, end) == START


# --- b64url / b64url_decode ----------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"", ""),
        (b"f", "Zg"),
        (b"fo", "Zm8"),
        (b"foo", "Zm9v"),
        (b"\xfb\xff", "-_8"),
        (RFC9773_KEY_IDENTIFIER, "aYhba4dGQEHhs3uEe6CuLN4ByNQ"),
    ],
)
def test_b64url_round_trip(data: bytes, text: str) -> None:
    assert b64url(data) == text
    assert b64url_decode(text) == data


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Zg==", "character 3"),
        ("+/8", "character 1"),
        ("Zm 9v", "character 3"),
        ("Zm9v\n", "character 5"),
        ("Zm9vé", "character 5"),
        ("Zm9vY", "length"),
        ("Zh", "trailing bits"),
    ],
)
def test_b64url_decode_is_strict(text: str, reason: str) -> None:
    with pytest.raises(CryptoError, match=reason):
        b64url_decode(text)
