"""Private values sealed before they reach a shared database (a key file on each node).

A fleet keeps its private keys (certificates' and accounts') in PostgreSQL. Row-level
security keeps other database roles from reading them, but the server's superusers, its
data files, its backups and its replicas hold them in clear. With a storage key file,
certherd seals every ``private=True`` value before it is written, so a dump of the
database alone holds no usable private key:

- the file holds one or more keys, one a line: 32 random bytes in base64 (``certherd
  storage-key new FILE`` writes one); ``#`` starts a comment. The first key seals; every
  key in the file unseals, so a key is rotated by putting a new one first, running
  ``certherd storage-key reseal`` once, then removing the old line;
- a sealed value is ``MAGIC || key id (8 bytes) || nonce (12) || AES-256-GCM(value)``
  with the value's storage key (``archive/example.org/privkey3.pem``) as associated data:
  a sealed row copied or moved under another key does not unseal;
- the key id is the first 8 bytes of SHA-256 over a label and the key: it names which
  line of which file is needed without saying anything about the key;
- values written before sealing was turned on stay readable (no MAGIC) until they are
  written again or resealed.

The file must be a regular file readable by its owner only (root or this user), in
folders no other user can change: the same rule as every other secret certherd reads.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from certherd.errors import ConfigError, SealedError, StorageError

__all__ = ["MAGIC", "Sealer", "key_id", "new_key_text", "read_key_file", "sealed_by", "unsealed"]

MAGIC: Final = b"\x00certherd-sealed-1\x00"
_KEY_BYTES: Final = 32
_ID_BYTES: Final = 8
_NONCE_BYTES: Final = 12
_MAX_FILE: Final = 64 * 1024
_LABEL: Final = b"certherd storage key id\x00"


def key_id(key: bytes) -> bytes:
    """The 8-byte id of ``key`` that a sealed value carries (it says nothing of the key)."""
    return hashlib.sha256(_LABEL + key).digest()[:_ID_BYTES]


def sealed_by(data: bytes) -> bytes | None:
    """The id of the key that sealed ``data``, or None for a value in clear."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _ID_BYTES:
        return None
    return data[len(MAGIC) : len(MAGIC) + _ID_BYTES]


@dataclass(frozen=True)
class Sealer:
    """Seals and unseals values with the keys of one key file (the first one seals)."""

    keys: tuple[bytes, ...]
    source: str = "the storage key"
    _by_id: dict[bytes, bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.keys or any(len(key) != _KEY_BYTES for key in self.keys):
            raise ValueError("a Sealer needs one or more keys of 32 bytes")
        object.__setattr__(self, "_by_id", {key_id(key): key for key in self.keys})

    def __repr__(self) -> str:  # never the keys
        return f"Sealer({self.source}, {len(self.keys)} key(s), sealing with {self.current_id})"

    @property
    def current_id(self) -> str:
        return key_id(self.keys[0]).hex()

    def seal(self, name: str, data: bytes) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = AESGCM(self.keys[0]).encrypt(nonce, bytes(data), name.encode())
        return MAGIC + key_id(self.keys[0]) + nonce + sealed

    def unseal(self, name: str, data: bytes) -> bytes:
        """``data`` in clear: unsealed, or as it is when it was never sealed."""
        kid = sealed_by(data)
        if kid is None:
            return data
        key = self._by_id.get(kid)
        if key is None:
            raise SealedError(
                f"{name} is sealed with storage key {kid.hex()}, which {{storage_key_file}} "
                f"({self.source}) does not hold: give the key file the other nodes use "
                "(an old key stays in the file until `certherd storage-key reseal` ran)",
                settings=("storage_key_file",),
            )
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        start = len(MAGIC) + _ID_BYTES
        nonce, sealed = data[start : start + _NONCE_BYTES], data[start + _NONCE_BYTES :]
        try:
            return AESGCM(key).decrypt(nonce, sealed, name.encode())
        except InvalidTag:
            raise StorageError(
                f"{name} does not match its seal: it was changed in the database, or copied "
                "there from another key; restore it from a backup or issue again"
            ) from None

    def current(self, data: bytes) -> bool:
        """Whether ``data`` is sealed with the key that seals now (resealing skips it)."""
        return sealed_by(data) == key_id(self.keys[0])


def unsealed(name: str, data: bytes, sealer: Sealer | None) -> bytes:
    """``data`` as read from the database, in clear; StorageError when it is sealed and
    no key was given."""
    if sealer is not None:
        return sealer.unseal(name, data)
    kid = sealed_by(data)
    if kid is not None:
        raise SealedError(
            f"{name} is sealed (storage key {kid.hex()}): give {{storage_key_file}}, the "
            "key file the other nodes use",
            settings=("storage_key_file",),
        )
    return data


def new_key_text() -> str:
    """One line of a key file: 32 random bytes in base64."""
    return base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode() + "\n"


def _refused(path: Path, problem: str) -> ConfigError:
    return ConfigError(f"{{storage_key_file}} {path}: {problem}", settings=("storage_key_file",))


def read_key_file(path: str | os.PathLike[str]) -> Sealer:
    """The :class:`Sealer` of the key file at ``path``; ConfigError naming the file and
    the fix when it is missing, unsafe or not a key file."""
    from certherd._nofollow import untrusted_reason

    where = Path(path).expanduser()
    try:
        fd = os.open(where, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        hint = "make one with `certherd storage-key new FILE` and copy it to every node"
        raise _refused(where, f"cannot be read: {exc.strerror or exc}; {hint}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise _refused(where, "not a regular file")
    with os.fdopen(fd, "rb") as handle:
        raw = handle.read(_MAX_FILE + 1)
    if info.st_uid not in (0, os.geteuid()):
        raise _refused(where, "belongs to another user: chown it to the user certherd runs as")
    if stat.S_IMODE(info.st_mode) & 0o077:
        mode = stat.S_IMODE(info.st_mode)
        problem = f"users other than its owner may read it (mode {mode:04o})"
        raise _refused(where, f"{problem}: chmod 600 it")
    try:
        reason = untrusted_reason(where.parent)
    except OSError as exc:
        raise _refused(where, f"its folder cannot be checked: {exc.strerror or exc}") from None
    if reason is not None:
        raise _refused(where, f"another user could swap it: {reason}")
    if len(raw) > _MAX_FILE:
        raise _refused(where, "larger than 64 KiB: a key file holds a few lines")
    keys: list[bytes] = []
    for number, line in enumerate(raw.decode("utf-8", "replace").splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != _KEY_BYTES:
            raise _refused(
                where,
                f"line {number} is not a key (32 bytes in base64, as `certherd "
                "storage-key new` writes)",
            )
        if key not in keys:
            keys.append(key)
    if not keys:
        raise _refused(where, "holds no key: make one with `certherd storage-key new FILE`")
    return Sealer(tuple(keys), source=str(where))
