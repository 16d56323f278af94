"""Archive versions of a lineage: store a new one, and find one stored but never made live.

A certificate the CA issued is never lost (issue 10.2): it is written to the archive,
with its key, as soon as it was downloaded and verified, before anything that can still
fail (choosing an alternate chain, switching ``live/``, saving the state, hooks). If a
later step fails, or the process dies, the version waits in the archive; the next
attempt makes it live instead of ordering another certificate.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from certherd.acme.client import CertificateChain
from certherd.crypto.certs import describe_certificate, load_pem_chain
from certherd.crypto.keys import (
    PrivateKey,
    load_private_key,
    private_key_to_pem,
    public_key_equal,
)
from certherd.errors import CertherdError
from certherd.storage.base import Storage
from certherd.storage.layout import FILES, archive_file, archive_version
from certherd.storage.leases import held_lease
from certherd.storage.lineages import archive_keys, archive_versions, live_version

__all__ = [
    "StoredVersion",
    "find_stored_version",
    "next_version",
    "version_to_store",
    "write_version",
]

STORED_MARGIN = dt.timedelta(hours=1)
"""A stored version closer than this to its expiry is not worth making live."""


@dataclass(frozen=True)
class StoredVersion:
    """A complete archive version newer than the live one."""

    version: int
    leaf: x509.Certificate


def _versions(keys: Sequence[str]) -> set[int]:
    return {parsed[1] for key in keys if (parsed := archive_version(key)) is not None}


async def next_version(storage: Storage, name: str) -> int:
    """One more than the highest version in the archive (any file of it)."""
    return max(_versions(await archive_keys(storage, name)), default=0) + 1


async def version_to_store(storage: Storage, name: str, chain: CertificateChain) -> int:
    """The version a certificate just downloaded is stored as: the next one, unless the
    newest version above the live one is what a holder that died while storing this
    same certificate left behind (some of its files, or all of them holding this very
    certificate): that number is written again, so one issuance is one version.

    (A fleet node killed -9 in :func:`write_version`; the node that takes the lineage
    over resumes the same order and downloads the same certificate.) Only the lease
    holder writes a lineage's archive, so a version above the live one that is
    incomplete can only be such a leftover."""
    versions = await archive_versions(storage, name)
    top = max(versions, default=0)
    live = await live_version(storage, name)
    if not top or (live is not None and top <= live):
        return top + 1
    present = set(versions[top])
    if not all(archive_file(name, file, top) in present for file in FILES):
        return top
    try:
        stored = await storage.read(archive_file(name, "cert.pem", top))
    except CertherdError:
        return top
    return top if stored == chain.leaf_pem else top + 1


async def write_version(
    storage: Storage, name: str, version: int, chain: CertificateChain, key: PrivateKey
) -> None:
    """Write the four files of ``version`` (the key private); each atomic.

    Rewriting a version that is not live yet (a chosen alternate chain) is allowed.
    The writes carry the lease this task holds on the lineage, if any.
    """
    contents = {
        "cert.pem": chain.leaf_pem,
        "chain.pem": chain.issuers_pem,
        "fullchain.pem": chain.leaf_pem + chain.issuers_pem,
        "privkey.pem": private_key_to_pem(key),
    }
    for file, data in contents.items():
        await storage.write(
            archive_file(name, file, version),
            data,
            private=file == "privkey.pem",
            fence=held_lease(name),
        )


async def find_stored_version(
    storage: Storage,
    name: str,
    live: int | None,
    names: Sequence[str],
    now: dt.datetime,
) -> StoredVersion | None:
    """The newest complete version above ``live`` whose certificate is for exactly
    ``names``, matches its key and is valid well beyond ``now``; None if there is none.

    A partial version (a crash while writing it) or a damaged one is skipped.
    """
    keys = await archive_keys(storage, name)
    wanted = {n.lower() for n in names}
    for version in sorted(_versions(keys), reverse=True):
        if live is not None and version <= live:
            break
        try:
            leaf = load_pem_chain(await storage.read(archive_file(name, "cert.pem", version)))[0]
            key = load_private_key(await storage.read(archive_file(name, "privkey.pem", version)))
            for file in ("chain.pem", "fullchain.pem"):
                await storage.read(archive_file(name, file, version))
        except CertherdError:
            continue
        info = describe_certificate(leaf)
        if {n.lower() for n in info.dns_names + info.ip_addresses} != wanted:
            continue
        if not public_key_equal(leaf.public_key(), key.public_key()):  # type: ignore[arg-type]
            continue
        if not (info.not_before <= now < info.not_after - STORED_MARGIN):
            continue
        return StoredVersion(version, leaf)
    return None
