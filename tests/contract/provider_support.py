"""Bridges that let the exec and lexicon providers publish into the tests' BIND9.

- :func:`write_update_hook` writes an exec-provider hook as a user would: a shell script
  that takes ``present`` or ``cleanup`` and the ``CERTHERD_DNS_*`` variables and runs
  ``nsupdate -k KEYFILE`` (bind9-dnsutils, installed by scripts/test) against BIND9;
  nsupdate finds the zone itself by asking that server for the SOA. Server, port and key
  file are written into the script, since the hook gets no other variables.
- :class:`ZoneFileMirror` wraps a provider that edits a zone file (lexicon's ``localzone``)
  and, after each of its calls, copies the TXT set of the record's name from the file to
  BIND9 verbatim, so the contract suite sees in BIND9 exactly what the provider wrote.
"""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path

import dns.asyncquery
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.tsig
import dns.update
import dns.zone
from tests.servers.bind9 import Bind9Server

from certherd.dns.base import DnsProvider, ProviderInfo, TxtRecord

__all__ = ["ZoneFileMirror", "write_update_hook", "write_zone_file"]

_HOOK = """#!/bin/sh
# certherd exec hook: present/cleanup one TXT value with nsupdate (RFC 2136, TSIG key file).
set -eu
case "${{1:-}}" in
    present) verb=add ;;
    cleanup) verb=delete ;;
    *) echo "usage: $0 present|cleanup" >&2; exit 2 ;;
esac
nsupdate -k {key_file} <<EOF
server {host} {port}
update $verb $CERTHERD_DNS_NAME 60 IN TXT "$CERTHERD_DNS_VALUE"
send
EOF
"""


def write_update_hook(bind9: Bind9Server, directory: Path) -> Path:
    """Write the nsupdate hook script for ``bind9`` into ``directory``; return its path."""
    host, port = bind9.address
    path = directory / "certherd-dns-hook"
    key_file = shlex.quote(str(bind9.key_file))
    path.write_text(_HOOK.format(key_file=key_file, host=host, port=port))
    path.chmod(0o700)
    return path


def write_zone_file(path: Path, zone: str) -> Path:
    """A minimal zone file for ``zone`` (SOA, NS, the name server's address)."""
    path.write_text(
        f"$ORIGIN {zone}\n$TTL 60\n"
        "@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n"
        "@ IN NS ns1\nns1 IN A 127.0.0.1\n"
    )
    return path


class ZoneFileMirror:
    """A DnsProvider that runs ``inner`` (which edits ``zone_file``), then mirrors the TXT
    set at the record's name from that file to ``bind9`` in one atomic update."""

    def __init__(self, inner: DnsProvider, zone_file: Path, zone: str, bind9: Bind9Server):
        self.inner = inner
        self.info: ProviderInfo = inner.info
        self.zone_file = zone_file
        self.zone = zone
        self.bind9 = bind9
        self._lock = asyncio.Lock()

    async def add_txt(self, record: TxtRecord) -> None:
        async with self._lock:  # localzone rewrites the file in place: never read mid-write
            await self.inner.add_txt(record)
            await self._mirror(record.name)

    async def remove_txt(self, record: TxtRecord) -> None:
        async with self._lock:
            await self.inner.remove_txt(record)
            await self._mirror(record.name)

    async def _mirror(self, name: str) -> None:
        ttl, rdatas = await asyncio.to_thread(self._read, name)
        key = dns.tsig.Key(
            self.bind9.tsig_key_name, self.bind9.tsig_secret, self.bind9.tsig_algorithm
        )
        update = dns.update.UpdateMessage(self.zone, keyring=key)
        update.delete(name, "TXT")
        for rdata in rdatas:
            update.add(name, ttl, rdata)
        host, port = self.bind9.address
        response = await dns.asyncquery.tcp(update, host, port=port, timeout=5)
        if response.rcode() != dns.rcode.NOERROR:
            raise RuntimeError(f"BIND9 refused the mirror update for {name}")

    def _read(self, name: str) -> tuple[int, list[dns.rdata.Rdata]]:
        zone = dns.zone.from_file(str(self.zone_file), origin=self.zone, relativize=False)
        found = zone.get_rdataset(name, dns.rdatatype.TXT)
        return (0, []) if found is None else (found.ttl, list(found))
