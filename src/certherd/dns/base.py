"""The DNS provider interface: add and remove one TXT value (for dns-01, RFC 8555 §8.4).

A provider is built from a typed config (never from CLI objects) and MUST:
- add a value without touching other values of the same name (a wildcard and its base
  name share ``_acme-challenge.<name>`` and both values must coexist);
- remove exactly the value it added, and treat an already-missing value as removed;
- raise :class:`certherd.errors.DnsProviderError` (one line: provider, record, reason)
  for any failure; never log credentials.
Calls may run concurrently for different records; cancellation may interrupt an add,
and the caller will still call ``remove_txt`` for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["DnsProvider", "ProviderInfo", "TxtRecord"]


@dataclass(frozen=True)
class TxtRecord:
    """One TXT value to publish.

    ``name`` is the fully qualified record name with its trailing dot (after CNAME
    delegation, the target name); ``domain`` the identifier being proven (no ``*.``).
    """

    name: str
    value: str
    domain: str
    ttl: int = 60


@dataclass(frozen=True)
class ProviderInfo:
    """What a provider is: its name, the settings it reads, a line of docs."""

    name: str
    description: str
    settings: Mapping[str, str]  # setting -> what it means (also the env var suffix)


@runtime_checkable
class DnsProvider(Protocol):
    """Publishes TXT records in a DNS zone."""

    info: ProviderInfo

    async def add_txt(self, record: TxtRecord) -> None:
        """Add ``record.value`` to the TXT set at ``record.name``; keep other values."""
        ...

    async def remove_txt(self, record: TxtRecord) -> None:
        """Remove exactly ``record.value`` from ``record.name``; absent counts as removed."""
        ...
