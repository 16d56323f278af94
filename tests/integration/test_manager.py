"""The certificate manager on its own: memory storage, a fake clock and a real Pebble.

``Manager`` is driven directly (no CLI, no config dir): issue a lineage, renew it when
the fake clock says a third of its lifetime is left, record a failure, revoke, delete,
refresh renewal info, repair a state a crash left behind, and share one ACME client per
CA and account. The manager's clock is fake (it decides what is due); the ACME client
talks to Pebble on real time, so the certificates it checks are valid when it checks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from acme_helpers import forget_authorizations
from tests.unit.fakes import FakeClock

from certherd.acme import AcmeClient, RevocationReason
from certherd.challenges.spec import SolverSpec
from certherd.crypto.certs import CertificateInfo, describe_certificate, load_pem_chain
from certherd.errors import AlreadyRevokedError, TransportError
from certherd.manager.accounts import CaOptions, open_client
from certherd.manager.accounts import ca_options as options_of
from certherd.manager.ari import ARI_MAX_RECHECK
from certherd.manager.clients import ClientPool
from certherd.manager.lineage import LineageState
from certherd.manager.outcome import Outcome
from certherd.manager.policy import FAILURE_BACKOFF, renewal_threshold
from certherd.manager.service import Manager
from certherd.settings import HookSettings, LineageSettings
from certherd.storage.base import Storage, has_value
from certherd.storage.layout import archive_file, pending_key, renewal_settings, state_file
from certherd.storage.lineages import archive_versions, live_version
from certherd.storage.memory import MemoryStorage
from certherd.testing.pebble import PebbleServer

pytestmark = pytest.mark.integration

LIFETIME = dt.timedelta(days=90)
NAME = "lineage.manager.test"


@pytest.fixture(scope="module")
def ca(pebble_factory: Callable[..., PebbleServer]) -> PebbleServer:
    """A Pebble issuing 90-day certificates that never reuses an authorization (so a
    failing solver really fails a renewal) and never refuses a good nonce."""
    return pebble_factory(
        authz_reuse_percent=0,
        nonce_reject_percent=0,
        certificate_validity_seconds=int(LIFETIME.total_seconds()),
    )


@pytest.fixture
def clock() -> FakeClock:
    """Starts at the real time (Pebble's certificates begin now), then moves only when told."""
    return FakeClock(start=dt.datetime.now(dt.UTC).replace(microsecond=0))


@pytest.fixture
def storage() -> MemoryStorage:
    return MemoryStorage()


@pytest.fixture
async def manager(storage: MemoryStorage, clock: FakeClock) -> AsyncIterator[Manager]:
    manager = Manager(storage, clock=clock)
    yield manager
    await manager.aclose()


def ca_options(ca: PebbleServer, account: str = "default") -> CaOptions:
    """How the manager reaches ``ca`` for a lineage of ``account``."""
    return options_of(settings_for(ca, account=account))


def settings_for(ca: PebbleServer, name: str = NAME, **changes: Any) -> LineageSettings:
    settings = LineageSettings(
        name=name,
        names=(name,),
        directory_url=ca.directory_url,
        ca_bundle=str(ca.ca_bundle),
        solvers=(SolverSpec("http", {"listen": f"127.0.0.1:{ca.options.http_port}"}),),
        agree_tos=True,
    )
    return replace(settings, **changes)


async def issue(manager: Manager, ca: PebbleServer, name: str = NAME) -> Outcome:
    outcome = await manager.issue(settings_for(ca, name))
    assert (outcome.lineage, outcome.action, outcome.version) == (name, "issued", 1), outcome
    return outcome


async def leaf(storage: Storage, version: int, name: str = NAME) -> CertificateInfo:
    pem = await storage.read(archive_file(name, "cert.pem", version))
    return describe_certificate(load_pem_chain(pem)[0])


async def live(storage: Storage, name: str) -> int | None:
    """The version of ``name`` that is live (served), None if none is."""
    return await live_version(storage, name)


async def values(storage: Storage, prefix: str = "") -> dict[str, bytes]:
    """Every key under ``prefix`` with its value, read through the storage protocol."""
    return {key: await storage.read(key) for key in await storage.list(prefix)}


def stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


async def past_the_threshold(clock: FakeClock, certificate: CertificateInfo) -> None:
    """Move the fake clock a minute past the moment a third of the lifetime is left."""
    threshold = renewal_threshold(certificate.not_before, certificate.not_after)
    await clock.sleep((threshold - clock.now()).total_seconds() + 60)


async def test_issue_makes_version_one_live_with_its_state(
    manager: Manager, storage: MemoryStorage, clock: FakeClock, ca: PebbleServer
) -> None:
    outcome = await issue(manager, ca)

    assert await live(storage, NAME) == 1
    first = await leaf(storage, 1)
    assert tuple(first.dns_names) == (NAME,)
    assert first.not_after - first.not_before >= LIFETIME - dt.timedelta(seconds=1)
    state = await LineageState.load(storage, NAME)
    assert (state.version, state.serial, state.names) == (1, first.serial_hex, (NAME,))
    assert state.not_after == first.not_after == outcome.not_after
    assert state.next_check == renewal_threshold(first.not_before, first.not_after)
    assert state.last_success == clock.now()
    assert (state.failures, state.last_error, state.order_url) == (0, None, None)
    # Saved for renewals, and nothing of the order is left.
    assert await LineageSettings.load(storage, NAME) == settings_for(ca)
    assert not await has_value(storage, pending_key(NAME))


async def test_renew_before_the_threshold_is_not_due_and_says_until_when(
    manager: Manager, storage: MemoryStorage, ca: PebbleServer
) -> None:
    await issue(manager, ca)
    orders = ca.orders_created()
    first = await leaf(storage, 1)
    threshold = renewal_threshold(first.not_before, first.not_after)

    [outcome] = await manager.renew([NAME])

    assert (outcome.action, outcome.version) == ("not-due", 1)
    assert outcome.reason == f"not due until {stamp(threshold)} (a third of the lifetime left)"
    assert (await LineageState.load(storage, NAME)).next_check == threshold
    assert ca.orders_created() == orders
    assert await live(storage, NAME) == 1


async def test_past_two_thirds_of_the_lifetime_it_renews_to_version_two(
    manager: Manager, storage: MemoryStorage, clock: FakeClock, ca: PebbleServer
) -> None:
    await issue(manager, ca)
    first = await leaf(storage, 1)
    await past_the_threshold(clock, first)

    [outcome] = await manager.renew([NAME])

    assert (outcome.action, outcome.version) == ("renewed", 2), outcome
    assert outcome.reason == f"a third of the lifetime remains (expires {stamp(first.not_after)})"
    assert await live(storage, NAME) == 2
    second = await leaf(storage, 2)
    state = await LineageState.load(storage, NAME)
    assert (state.version, state.serial) == (2, second.serial_hex)
    assert second.serial_hex != first.serial_hex
    assert state.last_success == clock.now()
    assert (await leaf(storage, 1)).serial_hex == first.serial_hex  # version 1 is kept


async def test_a_failed_renewal_is_counted_backs_off_and_leaves_live_alone(
    manager: Manager, storage: MemoryStorage, clock: FakeClock, ca: PebbleServer, tmp_path: Path
) -> None:
    await issue(manager, ca)
    versions = f"archive/{NAME}/"
    live_before = await values(storage, versions)
    told = tmp_path / "failure-hook.out"
    hook = tmp_path / "failure-hook"
    hook.write_text(f'#!/bin/sh\necho "$CERTHERD_FAILURES $CERTHERD_VERSION" > {told}\n')
    hook.chmod(0o700)
    # The next renewal answers challenges with a program that fails.
    failing = settings_for(
        ca,
        solvers=(SolverSpec("hook", {"challenge": "http-01", "command": "/bin/false"}),),
        hooks=HookSettings(failure=(str(hook),)),
    )
    await failing.save(storage)
    await past_the_threshold(clock, await leaf(storage, 1))
    # Else Pebble now and then reuses the issuance's authorization: no challenge, a pass.
    assert await forget_authorizations(await manager.client(manager.ca_for(failing)))

    [outcome] = await manager.renew([NAME])

    assert (outcome.action, outcome.version) == ("failed", 1), outcome
    state = await LineageState.load(storage, NAME)
    assert state.failures == 1
    assert state.last_error == outcome.error
    assert state.last_error is not None
    assert "/bin/false" in state.last_error
    assert state.last_failure == clock.now()
    assert state.next_check == clock.now() + FAILURE_BACKOFF[0]
    assert told.read_text() == "1 1\n"
    # live/ and the archive are as they were.
    assert await live(storage, NAME) == 1
    archive = await values(storage, versions)
    archive.pop(pending_key(NAME), None)  # the open order's key, checked below
    assert archive == live_before
    assert state.version == 1
    # The order stays open, with its key, for the next attempt to resume.
    assert state.order_url is not None
    assert await has_value(storage, pending_key(NAME))
    # Asked again at once, it backs off instead of hammering the CA.
    again = await manager.renew_one(NAME)
    assert again.action == "not-due"
    retry_at = stamp(clock.now() + FAILURE_BACKOFF[0])
    assert again.reason == f"backing off after 1 failed attempt(s) until {retry_at}"


async def test_revoke_marks_the_live_version_revoked_and_due_now(
    manager: Manager, storage: MemoryStorage, clock: FakeClock, ca: PebbleServer
) -> None:
    await issue(manager, ca)
    first = await leaf(storage, 1)

    state = await manager.revoke(NAME, RevocationReason.SUPERSEDED)

    assert (state.version, state.revoked_at, state.revocation_reason) == (
        1,
        clock.now(),
        "superseded",
    )
    assert state.next_check == clock.now()
    assert await LineageState.load(storage, NAME) == state
    assert ca.cert_status(first.serial_hex)["Status"] == "Revoked"
    decision = await manager.decide(settings_for(ca), state, force=False)
    assert decision.due
    assert decision.reason == f"the certificate was revoked ({stamp(clock.now())})"
    # The CA saying "already revoked" is believed too (and still raised).
    await clock.sleep(60)
    with pytest.raises(AlreadyRevokedError):
        await manager.revoke(NAME)
    again = await LineageState.load(storage, NAME)
    assert (again.revoked_at, again.revocation_reason) == (
        clock.now(),
        "the CA answered alreadyRevoked",
    )
    # Due now: the next renewal replaces it with a new key.
    [renewed] = await manager.renew([NAME])
    assert (renewed.action, renewed.version) == ("renewed", 2), renewed
    replaced = await LineageState.load(storage, NAME)
    assert replaced.revoked_at is None
    key_1 = await storage.read(archive_file(NAME, "privkey.pem", 1))
    assert await storage.read(archive_file(NAME, "privkey.pem", 2)) != key_1


async def test_delete_removes_every_key_of_the_lineage_and_nothing_else(
    manager: Manager, storage: MemoryStorage, ca: PebbleServer
) -> None:
    other = "other.manager.test"
    await issue(manager, ca)
    await issue(manager, ca, other)
    everything = await values(storage)
    own = sorted(k for k in everything if NAME in k)
    assert renewal_settings(NAME) in own
    assert state_file(NAME) in own
    kept = {k: v for k, v in everything.items() if NAME not in k and k != "index.json"}

    removed = await manager.delete(NAME)

    # Its settings, its state and version 1's four files (a live pointer is no file).
    files = [k for k in own if k.startswith(("archive/", "renewal/", "state/"))]
    assert removed == len(files) == 2 + 4
    after = await values(storage)
    assert [k for k in after if NAME in k] == []
    assert await live(storage, NAME) is None
    assert await manager.lineages() == [other]
    assert {k: v for k, v in after.items() if k in kept} == kept
    assert any(k.startswith("accounts/") for k in kept)  # the account is not the lineage's
    assert await live(storage, other) == 1


async def test_a_ca_without_renewal_info_is_asked_again_a_day_later(
    manager: Manager, storage: MemoryStorage, clock: FakeClock, ca: PebbleServer
) -> None:
    """Pebble has no renewalInfo: the manager notes when to look again (a day), does
    not ask before, and asks again after; the certificate's own rule decides meanwhile."""
    await issue(manager, ca)
    assert (await LineageState.load(storage, NAME)).ari_retry_at is None

    [outcome] = await manager.renew([NAME])

    assert outcome.action == "not-due"
    state = await LineageState.load(storage, NAME)
    assert state.ari_retry_at == clock.now() + ARI_MAX_RECHECK
    assert (state.ari_start, state.ari_end, state.ari_pick) == (None, None, None)
    await clock.sleep(3600)
    assert await manager.refresh_renewal_info(settings_for(ca), state) is state  # not yet
    await clock.sleep(ARI_MAX_RECHECK.total_seconds())
    later = await manager.refresh_renewal_info(settings_for(ca), state)
    assert later.ari_retry_at == clock.now() + ARI_MAX_RECHECK
    assert (await LineageState.load(storage, NAME)).ari_retry_at == later.ari_retry_at


async def test_load_rebuilds_a_state_older_than_the_live_version(
    manager: Manager, storage: MemoryStorage, clock: FakeClock, ca: PebbleServer
) -> None:
    """A crash after ``live/`` switched to version 2 but before its state was saved:
    the state still names version 1. Loading rebuilds it from the live certificate,
    keeps the failure history and owes the deploy hooks (they never ran for it)."""
    settings = settings_for(ca, hooks=HookSettings(deploy=("/bin/true",)))
    outcome = await manager.issue(settings)
    assert outcome.version == 1
    before_crash = replace(
        await LineageState.load(storage, NAME), failures=2, last_error="an earlier failure"
    )
    [renewed] = await manager.renew([NAME], force=True)
    assert renewed.version == 2
    second = await leaf(storage, 2)
    await before_crash.save(storage)  # the state as the crash left it
    await clock.sleep(30)

    loaded_settings, state = await manager.load(NAME)

    assert loaded_settings == settings
    assert (state.version, state.serial, state.not_after) == (
        2,
        second.serial_hex,
        second.not_after,
    )
    assert (state.failures, state.last_error) == (2, "an earlier failure")
    assert state.deploy_owed is True
    assert state.next_check == renewal_threshold(second.not_before, second.not_after)
    assert await LineageState.load(storage, NAME) == state  # saved, not only returned
    # The owed deploy hooks run at the next renewal check.
    [deployed] = await manager.renew([NAME])
    assert (deployed.action, deployed.version) == ("deployed", 2), deployed
    assert (await LineageState.load(storage, NAME)).deploy_owed is False


async def test_one_client_per_ca_and_account(clock: FakeClock, ca: PebbleServer) -> None:
    opened: list[tuple[str, str]] = []

    async def counting(storage: Storage, options: CaOptions) -> AcmeClient:
        opened.append((options.directory_url, options.account))
        return await open_client(storage, options)

    manager = Manager(MemoryStorage(), clock=clock, client_factory=counting)
    try:
        await issue(manager, ca, "one.manager.test")
        await issue(manager, ca, "two.manager.test")
        assert opened == [(ca.directory_url, "default")]
        assert len(manager.clients) == 1
        # Five tasks asking at once for another account: one client, opened once.
        second = ca_options(ca, account="second")
        clients = await asyncio.gather(*(manager.client(second) for _ in range(5)))
        assert len({id(client) for client in clients}) == 1
        assert opened == [(ca.directory_url, "default"), (ca.directory_url, "second")]
        assert clients[0] is not await manager.client(ca_options(ca))
        assert len(manager.clients) == 2
    finally:
        await manager.aclose()
    assert len(manager.clients) == 0


async def test_a_client_that_failed_to_open_is_not_kept(ca: PebbleServer) -> None:
    attempts: list[str] = []

    async def flaky(storage: Storage, options: CaOptions) -> AcmeClient:
        attempts.append(options.account)
        if len(attempts) == 1:
            raise TransportError("the CA did not answer")
        return await open_client(storage, options)

    pool = ClientPool(MemoryStorage(), flaky)
    with pytest.raises(TransportError):
        await pool.client(ca_options(ca))
    assert len(pool) == 0
    client = await pool.client(ca_options(ca))
    assert await pool.client(ca_options(ca)) is client
    assert (attempts, len(pool)) == (["default", "default"], 1)
    await pool.aclose()
    assert len(pool) == 0


class _Killed(BaseException):
    """A process killed -9 mid-write: nothing after it runs in that process."""


class _DiesWriting(MemoryStorage):
    """A memory storage shared with a holder that dies just before writing ``fatal``."""

    def __init__(self, shared: MemoryStorage, fatal: str) -> None:
        self.__dict__ = shared.__dict__  # the same values and leases
        self.fatal = fatal

    async def write(self, key: str, data: bytes, **options: Any) -> None:
        if key == self.fatal:
            raise _Killed(key)
        await super().write(key, data, **options)


async def test_a_holder_killed_while_storing_a_version_leaves_it_to_be_stored_once(
    storage: MemoryStorage, clock: FakeClock, ca: PebbleServer
) -> None:
    """A fleet node killed -9 after the first file of version 2 reached a storage that
    keeps no leftovers of its own to tidy (PostgreSQL, memory): the holder that takes
    the lineage over resumes the same order, gets the same certificate and stores it as
    version 2 again, not as a version 3 beside a broken version 2 (one issuance kept as
    two versions, the first never complete: seen in tests/e2e/test_cli_fleet_thousand.py,
    3 lineages of 1,000 live at version 2)."""
    first_manager = Manager(storage, clock=clock)
    await issue(first_manager, ca)
    await first_manager.aclose()
    await past_the_threshold(clock, await leaf(storage, 1))
    dying = Manager(_DiesWriting(storage, archive_file(NAME, "chain.pem", 2)), clock=clock)
    try:
        with pytest.raises(_Killed):
            await dying.renew([NAME])
    finally:
        await dying.aclose()  # (a killed process's connections close with it)
    orders, issued = ca.orders_created(), ca.log_tail(10**7).count("Issued certificate serial ")
    assert (await archive_versions(storage, NAME))[2] == [archive_file(NAME, "cert.pem", 2)]
    half = await leaf(storage, 2)

    taker = Manager(storage, clock=clock)
    try:
        [outcome] = await taker.renew([NAME])
    finally:
        await taker.aclose()
    assert (outcome.action, outcome.version) == ("renewed", 2), outcome
    assert "resuming" in outcome.reason
    assert ca.orders_created() == orders
    assert ca.log_tail(10**7).count("Issued certificate serial ") == issued
    assert await live(storage, NAME) == 2
    assert (await leaf(storage, 2)).serial_hex == half.serial_hex
    assert sorted(await archive_versions(storage, NAME)) == [1, 2]
    assert len((await archive_versions(storage, NAME))[2]) == 4  # all of version 2
