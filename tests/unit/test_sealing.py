"""The storage key file and the seal (certherd/storage/sealing.py): what a key file
must be, and what a seal guarantees (nothing in clear, bound to its key name, rotation)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from certherd.errors import ConfigError, StorageError
from certherd.storage.sealing import (
    MAGIC,
    Sealer,
    new_key_text,
    read_key_file,
    sealed_by,
    unsealed,
)

SECRET = b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----\n"


def key_file(folder: Path, *lines: str, mode: int = 0o600) -> Path:
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / "storage.key"
    path.write_text("".join(line if line.endswith("\n") else line + "\n" for line in lines))
    path.chmod(mode)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    tmp_path.chmod(0o700)
    return tmp_path / "keys"


def test_a_sealed_value_holds_nothing_in_clear_and_unseals_only_under_its_name() -> None:
    sealer = Sealer((os.urandom(32),))
    sealed = sealer.seal("archive/a.test/privkey1.pem", SECRET)
    assert sealed.startswith(MAGIC)
    assert b"PRIVATE KEY" not in sealed
    assert b"MIGHAgEA" not in sealed
    assert sealer.seal("archive/a.test/privkey1.pem", SECRET) != sealed  # a new nonce each time
    assert sealer.unseal("archive/a.test/privkey1.pem", sealed) == SECRET
    with pytest.raises(StorageError, match="does not match its seal") as moved:
        sealer.unseal("archive/b.test/privkey1.pem", sealed)  # the row moved to another lineage
    assert "\n" not in str(moved.value)
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(StorageError, match="does not match its seal"):
        sealer.unseal("archive/a.test/privkey1.pem", tampered)
    # Values written before sealing was turned on read as they are.
    assert sealer.unseal("archive/a.test/privkey1.pem", SECRET) == SECRET
    assert sealed_by(SECRET) is None


def test_a_sealed_value_without_its_key_names_the_key_file_it_needs() -> None:
    sealer = Sealer((os.urandom(32),))
    sealed = sealer.seal("accounts/x/key.pem", SECRET)
    with pytest.raises(ConfigError, match=r"is sealed .*storage_key_file") as missing:
        unsealed("accounts/x/key.pem", sealed, None)
    assert sealer.current_id in str(missing.value)
    other = Sealer((os.urandom(32),), source="/etc/certherd/storage.key")
    with pytest.raises(ConfigError, match="does not hold") as wrong:
        unsealed("accounts/x/key.pem", sealed, other)
    assert "/etc/certherd/storage.key" in str(wrong.value)
    assert sealer.current_id in str(wrong.value)


def test_the_first_key_seals_and_every_key_unseals() -> None:
    old, new = os.urandom(32), os.urandom(32)
    before = Sealer((old,)).seal("k", SECRET)
    rotated = Sealer((new, old))
    assert rotated.unseal("k", before) == SECRET
    assert not rotated.current(before)
    after = rotated.seal("k", SECRET)
    assert rotated.current(after)
    assert Sealer((new,)).unseal("k", after) == SECRET
    assert old.hex() not in repr(rotated)
    assert str(old) not in repr(rotated)


def test_a_key_file_from_new_key_text_reads_back(folder: Path) -> None:
    path = key_file(folder, "# the fleet's storage key", new_key_text(), "", new_key_text())
    sealer = read_key_file(path)
    assert len(sealer.keys) == 2
    assert sealer.source == str(path)
    assert sealer.unseal("k", sealer.seal("k", SECRET)) == SECRET


@pytest.mark.parametrize(
    ("lines", "words"),
    [
        (["not base64 at all!"], "line 1 is not a key"),
        ([base64.b64encode(os.urandom(16)).decode()], "line 1 is not a key"),
        (["# only a comment", ""], "holds no key"),
    ],
)
def test_a_file_that_is_not_a_key_file_is_one_line_naming_it(
    folder: Path, lines: list[str], words: str
) -> None:
    path = key_file(folder, *lines)
    with pytest.raises(ConfigError, match=words) as caught:
        read_key_file(path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_key_file_others_may_read_or_swap_is_refused(folder: Path, tmp_path: Path) -> None:
    readable = key_file(folder, new_key_text(), mode=0o640)
    with pytest.raises(ConfigError, match=r"mode 0640.*chmod 600"):
        read_key_file(readable)
    readable.chmod(0o600)
    read_key_file(readable)
    link = folder / "link.key"
    link.symlink_to(readable)
    with pytest.raises(ConfigError, match="cannot be read"):
        read_key_file(link)  # never followed
    with pytest.raises(ConfigError, match="storage-key new"):
        read_key_file(folder / "missing.key")
    with pytest.raises(ConfigError, match="not a regular file"):
        read_key_file(folder)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # any user may replace what is in it
    with pytest.raises(ConfigError, match="another user could swap it"):
        read_key_file(key_file(shared, new_key_text()))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the file to another user")
def test_a_key_file_of_another_user_is_refused(folder: Path) -> None:
    path = key_file(folder, new_key_text())
    os.chown(path, 65534, 65534)
    with pytest.raises(ConfigError, match="belongs to another user"):
        read_key_file(path)
