"""The contract every DNS provider must pass (see `certherd.dns.base`), against a real BIND9.

Each provider in `tests.contract.providers.PROVIDERS` publishes into a zone of one BIND9 for
the session, and every check reads the authoritative answer straight from that server. Each
test works under its own fresh name, so tests and providers never see each other's records.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.contract.providers import PROVIDERS, ContractContext, ProviderCase
from tests.servers.bind9 import Bind9Server
from tests.servers.fixtures import serve

from certherd.dns.base import DnsProvider, ProviderInfo, TxtRecord
from certherd.dns.registry import available_providers, create_provider
from certherd.errors import ConfigError

pytestmark = pytest.mark.integration

BIND9_ZONES = ("certherd.test.", "delegated.test.")


@pytest.fixture(scope="session")
def bind9() -> Iterator[Bind9Server]:
    """BIND9 serving both contract zones; a missing ``named`` fails, never skips."""
    yield from serve(Bind9Server(BIND9_ZONES))


@dataclass(frozen=True)
class Subject:
    """A provider under test with the zone it publishes in and the server that serves it."""

    provider: DnsProvider
    zone: str
    bind9: Bind9Server

    def record(self, label: str = "", value: str = "") -> TxtRecord:
        """A dns-01 style record under a fresh name (or under *label* of this zone)."""
        domain = f"{label or 'c' + uuid.uuid4().hex[:12]}.{self.zone}".rstrip(".")
        return TxtRecord(
            name=f"_acme-challenge.{domain}.",
            value=value or secrets.token_urlsafe(32),  # 43 characters, like a real one
            domain=domain,
        )

    def served(self, name: str) -> set[str]:
        """The TXT values the authoritative server answers for *name* right now."""
        return set(self.bind9.query(name, "TXT"))


@pytest.fixture(params=PROVIDERS, ids=lambda case: case.id)
def subject(request: pytest.FixtureRequest, bind9: Bind9Server, tmp_path: Path) -> Subject:
    case: ProviderCase = request.param
    provider = case.build(ContractContext(bind9=bind9, zone=case.zone, tmp_path=tmp_path))
    return Subject(provider=provider, zone=case.zone, bind9=bind9)


def test_provider_has_info(subject: Subject) -> None:
    assert isinstance(subject.provider, DnsProvider)
    info = subject.provider.info
    assert isinstance(info, ProviderInfo)
    assert info.name
    assert info.description
    assert all(isinstance(key, str) and text for key, text in info.settings.items())


async def test_added_value_is_served(subject: Subject) -> None:
    record = subject.record()
    await subject.provider.add_txt(record)
    try:
        assert subject.served(record.name) == {record.value}
    finally:
        await subject.provider.remove_txt(record)


async def test_second_value_at_the_same_name_keeps_the_first(subject: Subject) -> None:
    first = subject.record()
    second = TxtRecord(first.name, secrets.token_urlsafe(32), first.domain)
    await subject.provider.add_txt(first)
    await subject.provider.add_txt(second)
    try:
        assert subject.served(first.name) == {first.value, second.value}
    finally:
        await subject.provider.remove_txt(first)
        await subject.provider.remove_txt(second)


async def test_remove_takes_exactly_its_value(subject: Subject) -> None:
    first = subject.record()
    second = TxtRecord(first.name, secrets.token_urlsafe(32), first.domain)
    await subject.provider.add_txt(first)
    await subject.provider.add_txt(second)
    await subject.provider.remove_txt(first)
    try:
        assert subject.served(first.name) == {second.value}
    finally:
        await subject.provider.remove_txt(second)


async def test_removing_an_absent_value_is_fine(subject: Subject) -> None:
    never_added = subject.record()
    await subject.provider.remove_txt(never_added)  # no such name at all
    present = subject.record()
    await subject.provider.add_txt(present)
    other_value = TxtRecord(present.name, secrets.token_urlsafe(32), present.domain)
    await subject.provider.remove_txt(other_value)  # the name exists, this value does not
    assert subject.served(present.name) == {present.value}
    await subject.provider.remove_txt(present)
    await subject.provider.remove_txt(present)  # twice: already gone counts as removed
    assert subject.served(present.name) == set()


async def test_removing_every_value_leaves_no_txt(subject: Subject) -> None:
    first = subject.record()
    second = TxtRecord(first.name, secrets.token_urlsafe(32), first.domain)
    for record in (first, second):
        await subject.provider.add_txt(record)
    for record in (first, second):
        await subject.provider.remove_txt(record)
    assert subject.served(first.name) == set()


async def test_concurrent_adds_of_five_names_all_land(subject: Subject) -> None:
    records = [subject.record() for _ in range(5)]
    await asyncio.gather(*(subject.provider.add_txt(record) for record in records))
    try:
        for record in records:
            assert subject.served(record.name) == {record.value}, record.name
    finally:
        await asyncio.gather(*(subject.provider.remove_txt(record) for record in records))
    for record in records:
        assert subject.served(record.name) == set(), record.name


async def test_concurrent_adds_at_one_name_both_land(subject: Subject) -> None:
    """A wildcard and its base name share one ``_acme-challenge`` name, presented at once."""
    base = subject.record()
    wildcard = TxtRecord(base.name, secrets.token_urlsafe(32), base.domain)
    await asyncio.gather(subject.provider.add_txt(base), subject.provider.add_txt(wildcard))
    try:
        assert subject.served(base.name) == {base.value, wildcard.value}
    finally:
        await asyncio.gather(
            subject.provider.remove_txt(base), subject.provider.remove_txt(wildcard)
        )
    assert subject.served(base.name) == set()


# -- discovery: every provider is reachable by name ------------------------------------


def test_builtin_providers_are_listed() -> None:
    names = [info.name for info in available_providers()]
    assert names[:3] == ["rfc2136", "exec", "lexicon"]


def test_unknown_provider_name_lists_the_choices() -> None:
    with pytest.raises(ConfigError) as caught:
        create_provider("no such provider!", {}, {})
    message = str(caught.value)
    assert "\n" not in message
    for choice in ("rfc2136", "exec", "lexicon:<provider>", "certherd.dns_providers"):
        assert choice in message
