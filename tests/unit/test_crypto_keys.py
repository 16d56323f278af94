"""Tests for certherd.crypto.keys and certherd.crypto.files."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519

import certherd.crypto
from certherd.crypto import (
    KeyType,
    atomic_write,
    generate_key,
    key_type_of,
    load_private_key,
    load_private_key_file,
    private_key_to_pem,
    public_key_equal,
    write_private_key,
)
from certherd.crypto.keys import PrivateKey
from certherd.errors import ConfigError, CryptoError


@pytest.fixture(scope="module")
def ec_key() -> PrivateKey:
    return generate_key(KeyType.EC256)


def test_public_api_is_exactly_all() -> None:
    for name in certherd.crypto.__all__:  # exports load lazily: touch them all first
        getattr(certherd.crypto, name)
    exported = {name for name in dir(certherd.crypto) if not name.startswith("_")}
    modules = {"ari", "certs", "csr", "encoding", "files", "keys"}
    assert exported - modules == set(certherd.crypto.__all__)
    assert certherd.crypto.__all__ == sorted(certherd.crypto.__all__, key=str)
    for name in certherd.crypto.__all__:
        assert getattr(certherd.crypto, name) is not None


@pytest.mark.parametrize("key_type", list(KeyType))
def test_generate_key_gives_the_asked_type(key_type: KeyType) -> None:
    key = generate_key(key_type)
    assert key_type_of(key) is key_type
    if isinstance(key, rsa.RSAPrivateKey):
        assert key.public_key().public_numbers().e == 65537


def test_generate_key_defaults_to_ec256() -> None:
    key = generate_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)


def test_generate_key_accepts_the_config_spelling() -> None:
    key = generate_key(" EC384 ")
    assert key_type_of(key) is KeyType.EC384


def test_generate_key_refuses_unknown_type_naming_choices() -> None:
    with pytest.raises(ConfigError) as caught:
        generate_key("ed25519")
    message = str(caught.value)
    assert "'ed25519'" in message
    for member in KeyType:
        assert member.value in message


def test_key_type_of_unlisted_rsa_size_names_the_size() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2056)
    with pytest.raises(CryptoError, match="2056 bits has no key type: use 2048, 3072 or 4096 bits"):
        key_type_of(key)


def test_key_type_of_unlisted_curve() -> None:
    key = ec.generate_private_key(ec.SECP521R1())
    with pytest.raises(CryptoError, match="secp521r1: use P-256 or P-384"):
        key_type_of(key)


def test_curves_and_sizes_are_read_from_the_one_list() -> None:
    """certherd.key_types alone lists the types; curves and sizes follow their spelling."""
    from certherd.key_types import EC_CURVES, RSA_SIZES

    assert EC_CURVES == {"secp256r1": KeyType.EC256, "secp384r1": KeyType.EC384}
    assert RSA_SIZES == {2048: KeyType.RSA2048, 3072: KeyType.RSA3072, 4096: KeyType.RSA4096}
    for member in KeyType:
        assert (member.curve is None) != (member.rsa_bits is None), member
        assert str(member.bits) in member.value
    for curve in EC_CURVES:  # each SEC 2 name is a curve cryptography knows by that name
        assert getattr(ec, curve.upper())().name == curve


@pytest.mark.parametrize(
    ("encoding", "private_format"),
    [
        (serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8),
        (serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL),
        (serialization.Encoding.DER, serialization.PrivateFormat.PKCS8),
        (serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL),
    ],
)
def test_load_private_key_reads_pem_and_der(
    ec_key: PrivateKey,
    encoding: serialization.Encoding,
    private_format: serialization.PrivateFormat,
) -> None:
    data = ec_key.private_bytes(encoding, private_format, serialization.NoEncryption())
    loaded = load_private_key(data)
    assert public_key_equal(loaded.public_key(), ec_key.public_key())


def test_private_key_to_pem_is_unencrypted_pkcs8(ec_key: PrivateKey) -> None:
    pem = private_key_to_pem(ec_key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert public_key_equal(load_private_key(pem).public_key(), ec_key.public_key())


def test_load_private_key_accepts_rsa_between_listed_sizes() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2056)
    loaded = load_private_key(private_key_to_pem(key))
    assert isinstance(loaded, rsa.RSAPrivateKey)
    assert loaded.key_size == 2056


def _pkcs8(key: object) -> bytes:
    assert hasattr(key, "private_bytes")
    data: bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return data


@pytest.mark.parametrize(
    ("make_key", "expected"),
    [
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), "1024 bits"),
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2052), "2052 bits"),
        (lambda: ec.generate_private_key(ec.SECP521R1()), "secp521r1"),
        (lambda: ec.generate_private_key(ec.SECP256K1()), "secp256k1"),
        (ed25519.Ed25519PrivateKey.generate, "Ed25519PrivateKey"),
        (x25519.X25519PrivateKey.generate, "X25519PrivateKey"),
    ],
    ids=["rsa1024", "rsa2052", "p521", "secp256k1", "ed25519", "x25519"],
)
def test_load_private_key_refuses_unsupported_keys(make_key: object, expected: str) -> None:
    assert callable(make_key)
    data = _pkcs8(make_key())
    with pytest.raises(CryptoError, match=expected) as caught:
        load_private_key(data)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a key at all",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        b"\x30\x03\x02\x01\x00",
    ],
    ids=["empty", "text", "bad-pem", "bad-der"],
)
def test_load_private_key_refuses_garbage_in_one_line(data: bytes) -> None:
    with pytest.raises(CryptoError, match="private key") as caught:
        load_private_key(data)
    assert "\n" not in str(caught.value)
    assert caught.value.__cause__ is None


def test_load_private_key_error_never_quotes_the_key(ec_key: PrivateKey) -> None:
    pem = private_key_to_pem(ec_key)
    body = pem.splitlines()[1].decode()
    truncated = pem[: len(pem) // 2] + b"\n-----END PRIVATE KEY-----\n"
    with pytest.raises(CryptoError) as caught:
        load_private_key(truncated)
    assert body[:16] not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is not None  # kept by Python, but suppressed


def test_load_private_key_refuses_encrypted_key(ec_key: PrivateKey) -> None:
    data = ec_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(CryptoError, match="encrypted"):
        load_private_key(data)


def test_load_private_key_file_missing_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "absent.pem"
    with pytest.raises(ConfigError, match=r"absent\.pem"):
        load_private_key_file(path)


def test_load_private_key_file_directory_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path))):
        load_private_key_file(tmp_path)


def test_load_private_key_file_bad_content_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.pem"
    path.write_bytes(b"nonsense")
    with pytest.raises(CryptoError, match=r"broken\.pem"):
        load_private_key_file(str(path))


def test_write_private_key_round_trips_with_mode_0600(tmp_path: Path, ec_key: PrivateKey) -> None:
    path = tmp_path / "account.key"
    write_private_key(path, ec_key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_private_key_file(path)
    assert public_key_equal(loaded.public_key(), ec_key.public_key())
    assert sorted(tmp_path.iterdir()) == [path]


def test_write_private_key_tightens_a_wider_existing_file(
    tmp_path: Path, ec_key: PrivateKey
) -> None:
    path = tmp_path / "account.key"
    path.write_bytes(b"old")
    path.chmod(0o644)
    write_private_key(path, ec_key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == private_key_to_pem(ec_key)


def test_atomic_write_replaces_content_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "cert.pem"
    atomic_write(path, b"first")
    atomic_write(str(path), b"second")
    assert path.read_bytes() == b"second"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [entry.name for entry in tmp_path.iterdir()] == ["cert.pem"]


def test_atomic_write_sets_the_exact_mode_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o077)
    try:
        atomic_write(tmp_path / "cert.pem", b"data", mode=0o644)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "cert.pem").stat().st_mode) == 0o644


def test_atomic_write_into_missing_directory_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "cert.pem"
    with pytest.raises(ConfigError, match=r"missing/cert\.pem"):
        atomic_write(path, b"data")


def test_atomic_write_failure_keeps_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "account.key"
    path.write_bytes(b"old")

    def refuse(source: str, target: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(ConfigError, match="No space left on device"):
        atomic_write(path, b"new", mode=0o600)
    assert path.read_bytes() == b"old"
    assert [entry.name for entry in tmp_path.iterdir()] == ["account.key"]


def test_public_key_equal(ec_key: PrivateKey) -> None:
    other = generate_key(KeyType.EC256)
    assert public_key_equal(ec_key.public_key(), ec_key.public_key())
    assert not public_key_equal(ec_key.public_key(), other.public_key())


def test_one_list_of_key_types() -> None:
    """The enum, the certherd.toml schema's Literal and the CLI's choices are one list."""
    from certherd.cli.issue import issue
    from certherd.key_types import DEFAULT_KEY_TYPE, KEY_TYPE_NAMES

    assert tuple(member.value for member in KeyType) == KEY_TYPE_NAMES
    assert KeyType(DEFAULT_KEY_TYPE) is KeyType.EC256
    (option,) = [p for p in issue.params if p.name == "key_type"]
    assert tuple(option.type.choices) == KEY_TYPE_NAMES  # type: ignore[attr-defined]
