"""The renewal index: trusted only while a lineage's files are unchanged, rebuilt when not.

Each test runs the way ``Manager.renew`` does: plan, (check what the plan says), refresh
the entries of what was checked, save. A counting wrapper around the storage shows which
state files a plan had to read.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from certherd.challenges.spec import SolverSpec
from certherd.manager.index import LineageIndex, RenewalPlan, plan_renewal
from certherd.manager.lineage import LineageState
from certherd.settings import LineageSettings
from certherd.storage import FilesystemStorage, MemoryStorage, Storage
from certherd.storage.base import has_value
from certherd.storage.layout import INDEX, renewal_settings, state_file

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


class CountingStorage:
    """A Storage that records every key read, and passes everything else through."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.reads: list[str] = []

    async def read(self, key: str) -> bytes:
        self.reads.append(key)
        return await self.inner.read(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture(params=["memory", "filesystem"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> CountingStorage:
    inner: Storage = MemoryStorage() if request.param == "memory" else FilesystemStorage(tmp_path)
    return CountingStorage(inner)


def settings_for(name: str, **changes: Any) -> LineageSettings:
    settings = LineageSettings(
        name=name,
        names=(name,),
        directory_url="https://acme.test/directory",
        solvers=(SolverSpec("http"),),
    )
    return replace(settings, **changes)


def not_due_state(name: str, **changes: Any) -> LineageState:
    """Issued, next check in 20 days, ARI checked recently (next ARI check in 6 hours)."""
    state = LineageState(
        name=name,
        version=1,
        serial="01",
        names=(name,),
        not_before=NOW - 10 * DAY,
        not_after=NOW + 80 * DAY,
        ari_retry_at=NOW + dt.timedelta(hours=6),
        next_check=NOW + 20 * DAY,
    )
    return replace(state, **changes)


async def add_lineage(storage: Storage, name: str, **state_changes: Any) -> None:
    await settings_for(name).save(storage)
    await not_due_state(name, **state_changes).save(storage)


async def renew_run(
    storage: CountingStorage,
    names: Iterable[str] | None = None,
    *,
    force: bool = False,
    now: dt.datetime = NOW,
) -> RenewalPlan:
    """Plan as a renew run does, record what it read, then refresh and save the index."""
    storage.reads.clear()
    plan = await plan_renewal(storage, names, force=force, now=now)
    planned_reads = list(storage.reads)
    if plan.to_check:
        await plan.index.refresh(plan.to_check)
    await plan.index.save()
    storage.reads[:] = planned_reads
    return plan


def not_due_names(plan: RenewalPlan) -> list[str]:
    return [outcome.lineage for outcome in plan.not_due]


async def saved_index(storage: Storage) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(await storage.read(INDEX))
    return document


@pytest.fixture
async def three(storage: CountingStorage) -> CountingStorage:
    """Three not-due lineages and an index that knows them all."""
    for name in ("a.example", "b.example", "c.example"):
        await add_lineage(storage, name)
    await renew_run(storage)
    return storage


async def test_a_first_run_checks_everything_and_builds_the_index(
    storage: CountingStorage,
) -> None:
    for name in ("b.example", "a.example"):
        await add_lineage(storage, name)
    assert not await has_value(storage, INDEX)
    plan = await renew_run(storage)
    assert plan.to_check == ["a.example", "b.example"]
    assert plan.not_due == []
    document = await saved_index(storage)
    assert document["version"] == 1
    assert sorted(document["lineages"]) == ["a.example", "b.example"]
    entry = document["lineages"]["a.example"]
    assert entry["v"] == 1
    assert dt.datetime.fromisoformat(entry["next"]) == NOW + 20 * DAY


async def test_an_unchanged_run_reads_only_the_index(three: CountingStorage) -> None:
    plan = await renew_run(three)
    assert plan.to_check == []
    assert not_due_names(plan) == ["a.example", "b.example", "c.example"]
    assert three.reads == [INDEX]
    outcome = plan.not_due[0]
    assert outcome.action == "not-due"
    assert outcome.reason == "not due until 2025-06-21 12:00 UTC"
    assert outcome.version == 1
    assert outcome.not_after == NOW + 80 * DAY


async def test_an_empty_storage_plans_nothing(storage: CountingStorage) -> None:
    plan = await renew_run(storage)
    assert plan.to_check == []
    assert plan.not_due == []


async def test_a_lineage_whose_state_changed_is_checked_again(three: CountingStorage) -> None:
    await not_due_state("b.example", failures=1).save(three)
    plan = await renew_run(three)
    assert plan.to_check == ["b.example"]
    assert not_due_names(plan) == ["a.example", "c.example"]
    again = await renew_run(three)
    assert again.to_check == []


async def test_a_state_that_became_due_is_checked(three: CountingStorage) -> None:
    await not_due_state("c.example", next_check=NOW - DAY).save(three)
    plan = await renew_run(three)
    assert plan.to_check == ["c.example"]


async def test_a_deleted_state_file_makes_the_lineage_checked(three: CountingStorage) -> None:
    await three.delete(state_file("a.example"))
    plan = await renew_run(three)
    assert plan.to_check == ["a.example"]
    entry = (await saved_index(three))["lineages"]["a.example"]
    assert entry["v"] is None
    assert (await renew_run(three)).to_check == ["a.example"], "no certificate: never skipped"


async def test_a_lineage_whose_settings_changed_is_checked_again(three: CountingStorage) -> None:
    await settings_for("a.example", key_type="rsa2048").save(three)
    plan = await renew_run(three)
    assert plan.to_check == ["a.example"]
    assert not_due_names(plan) == ["b.example", "c.example"]


async def test_a_not_due_lineage_is_checked_once_its_ari_retry_passed(
    three: CountingStorage,
) -> None:
    later = NOW + dt.timedelta(hours=6)
    plan = await renew_run(three, now=later - dt.timedelta(seconds=1))
    assert plan.to_check == []
    plan = await renew_run(three, now=later)
    assert plan.to_check == ["a.example", "b.example", "c.example"]


async def test_a_lineage_never_asked_for_ari_is_checked(storage: CountingStorage) -> None:
    await add_lineage(storage, "a.example", ari_retry_at=None)
    await renew_run(storage)
    assert (await renew_run(storage)).to_check == ["a.example"]


async def test_a_due_lineage_is_checked(storage: CountingStorage) -> None:
    await add_lineage(storage, "a.example", next_check=NOW)
    await renew_run(storage)
    assert (await renew_run(storage)).to_check == ["a.example"]
    assert (await renew_run(storage, now=NOW - DAY)).to_check == []


async def test_force_checks_everything(three: CountingStorage) -> None:
    plan = await renew_run(three, force=True)
    assert plan.to_check == ["a.example", "b.example", "c.example"]
    assert plan.not_due == []
    plan = await renew_run(three, ["b.example"], force=True)
    assert plan.to_check == ["b.example"]


async def test_named_lineages_only(three: CountingStorage) -> None:
    await not_due_state("c.example", failures=2).save(three)
    plan = await renew_run(three, ["c.example", "a.example"])
    assert plan.to_check == ["c.example"]
    assert not_due_names(plan) == ["a.example"]
    assert three.reads == [INDEX]
    plan = await renew_run(three, ["nope.example"])
    assert plan.to_check == ["nope.example"], "an unknown name fails later, with its error"
    assert plan.not_due == []
    assert "nope.example" not in (await saved_index(three))["lineages"]


async def test_a_deleted_lineage_leaves_the_index(three: CountingStorage) -> None:
    await three.delete(renewal_settings("b.example"))
    await three.delete(state_file("b.example"))
    plan = await renew_run(three)
    assert plan.to_check == []
    assert not_due_names(plan) == ["a.example", "c.example"]
    assert "b.example" not in plan.index.entries
    assert sorted((await saved_index(three))["lineages"]) == ["a.example", "c.example"]


def _without_time_zones(document: bytes) -> bytes:
    data = json.loads(document)
    for entry in data["lineages"].values():
        for key in ("next", "ari", "exp"):
            if entry[key]:
                entry[key] = entry[key].removesuffix("+00:00")
    return json.dumps(data).encode()


def _wrong_fingerprints(document: bytes) -> bytes:
    data = json.loads(document)
    for entry in data["lineages"].values():
        entry["f"] = "0:0|0:0"
    return json.dumps(data).encode()


DAMAGED = {
    "not json": lambda _: b"{ this is not json",
    "not utf-8": lambda _: b"\xff\xfe\x00",
    "empty": lambda _: b"",
    "a list": lambda _: b"[]",
    "a number": lambda _: b"1",
    "no lineages": lambda _: b'{"version": 1}',
    "lineages a list": lambda _: b'{"version": 1, "lineages": []}',
    "entry a string": lambda _: b'{"version": 1, "lineages": {"a.example": "x"}}',
    "bad time": lambda _: b'{"version": 1, "lineages": {"a.example": {"f": "", "next": "soon"}}}',
    "time a number": lambda _: b'{"version": 1, "lineages": {"a.example": {"f": "", "next": 5}}}',
    "foreign version": lambda doc: doc.replace(b'"version":1', b'"version":2'),
    "no version": lambda doc: doc.replace(b'"version":1,', b""),
    "naive times": _without_time_zones,
    "stale fingerprints": _wrong_fingerprints,
}


@pytest.mark.parametrize("damage", DAMAGED.values(), ids=DAMAGED.keys())
async def test_a_damaged_index_is_ignored_and_rebuilt(three: CountingStorage, damage: Any) -> None:
    good = await three.read(INDEX)
    await three.write(INDEX, damage(good))
    plan = await renew_run(three)
    if damage is _without_time_zones:
        # Naive times read as UTC: the entries are still good, nothing to check.
        assert plan.to_check == []
        return
    assert plan.to_check == ["a.example", "b.example", "c.example"]
    assert plan.not_due == []
    rebuilt = await saved_index(three)
    assert rebuilt["version"] == 1
    assert sorted(rebuilt["lineages"]) == ["a.example", "b.example", "c.example"]
    assert (await renew_run(three)).to_check == []


async def test_an_unreadable_index_counts_as_missing(three: CountingStorage) -> None:
    await three.delete(INDEX)
    plan = await renew_run(three)
    assert plan.to_check == ["a.example", "b.example", "c.example"]
    assert await has_value(three, INDEX)


async def test_a_failed_index_write_costs_only_speed(three: CountingStorage) -> None:
    from certherd.errors import StorageError

    await not_due_state("a.example", failures=1).save(three)
    plan = await plan_renewal(three, None, force=False, now=NOW)
    await plan.index.refresh(plan.to_check)

    async def refuse(key: str, data: bytes, *, private: bool = False) -> None:
        raise StorageError("the disk is full")

    original = three.inner.write
    three.inner.write = refuse  # type: ignore[method-assign]
    try:
        await plan.index.save()
    finally:
        three.inner.write = original  # type: ignore[method-assign]
    assert (await renew_run(three)).to_check == ["a.example"]


async def test_the_index_loads_what_it_saved(three: CountingStorage) -> None:
    index = LineageIndex(three)
    await index.load()
    await index.scan()
    assert index.names == ["a.example", "b.example", "c.example"]
    entry = index.skippable("a.example", NOW)
    assert entry is not None
    assert entry.next_check == NOW + 20 * DAY
    assert entry.ari_retry_at == NOW + dt.timedelta(hours=6)
    assert entry.not_after == NOW + 80 * DAY
    assert entry.version == 1
    assert index.skippable("a.example", NOW + 20 * DAY) is None
    assert index.skippable("zzz.example", NOW) is None


async def test_a_damaged_state_file_does_not_break_the_refresh(three: CountingStorage) -> None:
    await three.write(state_file("b.example"), b"{ damaged")
    plan = await renew_run(three)  # the renew itself reports b.example as failed
    assert plan.to_check == ["b.example"]
    assert "b.example" not in (await saved_index(three))["lineages"]
    assert (await renew_run(three)).to_check == ["b.example"], "checked until repaired"
    await not_due_state("b.example").save(three)
    await renew_run(three)
    assert (await renew_run(three)).to_check == []


# -- the files the index summarises ---------------------------------------------------


def test_settings_round_trip() -> None:
    from certherd.settings import HookSettings

    settings = settings_for(
        "a.example",
        names=("a.example", "*.a.example"),
        solvers=(
            SolverSpec("dns", {"provider": "rfc2136"}, ("*.a.example",)),
            SolverSpec("http", {"port": "8080"}),
        ),
        account="shop",
        ca_bundle="/etc/ssl/ca.pem",
        key_type="rsa3072",
        reuse_key=True,
        profile="shortlived",
        preferred_chain="ISRG Root X2",
        hooks=HookSettings(pre=("a",), post=("b", "c"), deploy=("d",)),
        allow_http=True,
    )
    raw = settings.to_json()
    assert json.loads(raw)["schema"] == 1
    assert LineageSettings.from_json(raw, "renewal/a.example.json") == settings


def test_state_round_trip() -> None:
    state = not_due_state(
        "a.example",
        issuer="Test CA",
        certificate_id="aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE",
        ari_start=NOW + 50 * DAY,
        ari_end=NOW + 52 * DAY,
        ari_pick=NOW + 51 * DAY,
        ari_explanation="https://ca.example/why",
        failures=2,
        last_failure=NOW - DAY,
        last_error="rate limited",
        last_success=NOW - 10 * DAY,
    )
    assert LineageState.from_json(state.to_json(), "state/a.example.json") == state


def test_state_times_without_a_zone_are_utc() -> None:
    raw = b'{"name": "a.example", "not_after": "2025-09-01T00:00:00"}'
    state = LineageState.from_json(raw, "state/a.example.json")
    assert state.not_after == dt.datetime(2025, 9, 1, tzinfo=dt.UTC)


def test_unknown_fields_in_state_are_ignored() -> None:
    raw = b'{"name": "a.example", "version": 3, "from_the_future": true}'
    assert LineageState.from_json(raw, "state/a.example.json").version == 3


async def test_a_missing_state_is_a_lineage_without_a_certificate(
    storage: CountingStorage,
) -> None:
    assert await LineageState.load(storage, "a.example") == LineageState(name="a.example")


@pytest.mark.parametrize(
    "raw",
    [b"{ damaged", b"\xff", b"null", b"[]", b'{"name": "a", "not_after": "soon"}', b"{}"],
    ids=["syntax", "bytes", "null", "list", "bad time", "no name"],
)
def test_a_damaged_state_file_names_itself_and_the_fix(raw: bytes) -> None:
    from certherd.errors import StorageError

    with pytest.raises(StorageError) as caught:
        LineageState.from_json(raw, "state/a.example.json")
    message = str(caught.value)
    assert message.startswith("state/a.example.json is damaged (")
    assert message.endswith("delete it to rebuild")


@pytest.mark.parametrize(
    "raw",
    [
        b"{ damaged",
        b"\xff",
        b'{"name": "a"}',
        b'{"name": "a", "names": ["a"], "directory_url": "u", "solvers": [{"kind": 1}, 5]}',
        b'{"name": "a", "names": 5, "directory_url": "u"}',
    ],
    ids=["syntax", "bytes", "no names", "bad solver", "names a number"],
)
def test_damaged_settings_name_the_file_and_the_fix(raw: bytes) -> None:
    from certherd.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        LineageSettings.from_json(raw, "renewal/a.json")
    message = str(caught.value)
    assert message.startswith("renewal/a.json is damaged (")
    assert message.endswith("or run `certherd delete a` and issue it again")


@pytest.mark.parametrize(
    "raw",
    [b"null", b"[]", b'{"name": "a", "names": ["a"], "directory_url": "u", "hooks": ["x"]}'],
    ids=["null", "a list", "hooks a list"],
)
def test_damaged_settings_of_the_wrong_shape(raw: bytes) -> None:
    from certherd.errors import ConfigError

    with pytest.raises(ConfigError, match="is damaged"):
        LineageSettings.from_json(raw, "renewal/a.json")


async def test_loading_unknown_settings_names_the_lineage(storage: CountingStorage) -> None:
    from certherd.errors import NotFoundError

    with pytest.raises(NotFoundError, match=r"no lineage named 'nope\.example'"):
        await LineageSettings.load(storage, "nope.example")
