"""The certificate manager: issue, renew, revoke and delete lineages in storage.

Writes follow one order so a crash at any point loses nothing: the new version's files
go to ``archive/`` (each atomic), then ``live/`` is switched to it, then the state is
saved. A failed issuance never touches ``live/``. Each lineage is worked on under its
lock, and after taking the lock the state is read again: another process may have
renewed it while we waited.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any

from certherd.acme.client import AcmeClient, RevocationReason
from certherd.challenges.factory import SolverPool
from certherd.challenges.spec import SolverSpec
from certherd.clock import Clock, SystemClock
from certherd.crypto.ari import pick_in_window
from certherd.crypto.certs import load_pem_chain
from certherd.errors import (
    AlreadyRevokedError,
    CertherdError,
    FeatureUnsupportedError,
    LockTimeoutError,
    NotFoundError,
    StorageError,
    safe_text,
)
from certherd.manager.accounts import CaOptions, open_client
from certherd.manager.hooks import run_lineage_hooks
from certherd.manager.hygiene import clear_interrupted, tidy_lineage, working_on
from certherd.manager.index import plan_renewal
from certherd.manager.issuance import Issuer
from certherd.manager.lineage import LineageSettings, LineageState
from certherd.manager.outcome import Action, Outcome, describe_failure
from certherd.manager.policy import RenewalDecision, needs_renewal
from certherd.manager.tasks import finish_all
from certherd.names import name_set
from certherd.storage.base import Storage
from certherd.storage.layout import (
    archive_file,
    renewal_settings,
    state_file,
)

__all__ = ["Manager", "Outcome"]

ARI_MIN_RECHECK = dt.timedelta(minutes=10)
ARI_MAX_RECHECK = dt.timedelta(days=1)
STATE_LOCK_WAIT = 5.0

log = logging.getLogger(__name__)


def _note_unexpected(name: str, error: BaseException) -> None:
    """Keep the traceback of an error that is not certherd's own (``-v`` shows it)."""
    if not isinstance(error, CertherdError):
        log.debug("lineage %s: unexpected error", name, exc_info=error)


class Manager(Issuer):
    """Works on the lineages in one storage; safe for concurrent tasks on one loop."""

    def __init__(
        self,
        storage: Storage,
        *,
        clock: Clock | None = None,
        concurrency: int = 10,
        solvers: SolverPool | None = None,
        on_event: Callable[[str, str], None] | None = None,
        client_factory: Callable[[Storage, CaOptions], Awaitable[AcmeClient]] | None = None,
    ) -> None:
        """``client_factory`` opens the ACME client of a CA and account (default:
        :func:`~certherd.manager.accounts.open_client`, from the stored account)."""
        self.storage = storage
        self.clock = clock or SystemClock()
        self.solvers = solvers or SolverPool()
        self._gate = asyncio.Semaphore(max(1, concurrency))
        self._clients: dict[tuple[str, str], AcmeClient] = {}
        self._client_lock = asyncio.Lock()
        self._on_event = on_event
        self._open_client = client_factory or open_client
        self.known_cas: dict[tuple[str, str], CaOptions] = {}
        self.configured: dict[str, LineageSettings] = {}
        """Lineages as certherd.toml gives them now: their secrets (stored as references
        to the file) are read from here."""

    def ca_for(self, settings: LineageSettings) -> CaOptions:
        """How to reach the lineage's CA: the options of certherd.toml when given (so
        ``renew`` can create the account the file describes), else its own settings."""
        known = self.known_cas.get((settings.directory_url, settings.account))
        if known is not None:
            return known
        return CaOptions(
            settings.directory_url,
            settings.ca_bundle,
            allow_http=settings.allow_http,
            account=settings.account,
        )

    def solver_specs(self, settings: LineageSettings) -> tuple[SolverSpec, ...]:
        """The lineage's solvers with every secret read from where it comes from: the
        environment, a file, certherd.toml (as loaded into ``configured``), or the
        lineage's own settings file."""
        configured = self.configured.get(settings.name) or self._configured_in_file(settings)
        given = configured.solvers if configured is not None else ()
        resolved = []
        for index, spec in enumerate(settings.solvers):
            twin = given[index] if index < len(given) else None
            if twin is not None and twin.kind != spec.kind:
                twin = None
            resolved.append(spec.resolve(self.solvers.environ, twin))
        return tuple(resolved)

    def _working_on(self, name: str) -> AbstractAsyncContextManager[None]:
        """The lineage's lock, with what killed runs left of it tidied (manager.hygiene)."""
        return working_on(self.storage, name, say=self._say)

    def _configured_in_file(self, settings: LineageSettings) -> LineageSettings | None:
        """The lineage as the config file its secrets come from gives it, for a lineage
        applied from another file (``apply --config FILE``) than the one this run read."""
        paths = {
            ref.where
            for spec in settings.solvers
            for ref in spec.secrets.values()
            if ref.source == "config" and ref.where
        }
        if len(paths) != 1:
            return None
        from pathlib import Path

        from certherd.config import load_config_file
        from certherd.manager.apply import settings_for

        path = Path(paths.pop())
        if not path.is_file():
            return None  # SolverSpec.resolve names the file and the setting
        for entry in load_config_file(path).certificates:
            if entry.lineage == settings.name:
                wanted = settings_for(entry)
                self.configured.setdefault(settings.name, wanted)
                return wanted
        return None

    def _say(self, lineage: str, text: str) -> None:
        if self._on_event is not None:
            self._on_event(lineage, text)

    async def aclose(self) -> None:
        """Close every CA connection pool opened by this manager."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    async def client(self, ca: CaOptions) -> AcmeClient:
        """One shared client (one pool, one directory fetch) per CA and account."""
        key = (ca.directory_url, ca.account)
        async with self._client_lock:
            client = self._clients.get(key)
            if client is None:
                client = await self._open_client(self.storage, ca)
                self._clients[key] = client
            return client

    # -- reading ------------------------------------------------------------------------

    async def lineages(self) -> list[str]:
        keys = await self.storage.list("renewal")
        return [
            k.removeprefix("renewal/").removesuffix(".json") for k in keys if k.endswith(".json")
        ]

    async def load(self, name: str) -> tuple[LineageSettings, LineageState]:
        """Settings and state of ``name``; the state follows what is actually live.

        After a crash between switching ``live/`` and saving the state, the state still
        names the old version: it is rebuilt from the live certificate, so renewals,
        ``replaces`` and revocation concern the certificate being served.
        """
        settings = await LineageSettings.load(self.storage, name)
        state = await LineageState.load(self.storage, name)
        live = await self.storage.live_version(name)
        if live is not None and live != state.version:
            pem = await self.storage.read(archive_file(name, "cert.pem", live))
            rebuilt = self._state_from(name, load_pem_chain(pem)[0], live)
            state = replace(
                rebuilt,
                failures=state.failures,
                last_error=state.last_error,
                last_failure=state.last_failure,
                last_success=state.last_success,
                deploy_owed=bool(settings.hooks.deploy),  # they never ran for it
            )
            await state.save(self.storage)
        return settings, state

    # -- issuing ------------------------------------------------------------------------

    async def request(
        self, settings: LineageSettings, ca: CaOptions, *, force: bool = False, named: bool = False
    ) -> Outcome:
        """``certherd issue``: a certificate for ``settings.names``, ordered only when no
        lineage holds them or it is due; a lineage holding some of them is expanded.
        ``named``: ``settings.name`` was chosen by the user (see manager.request)."""
        from certherd.manager.request import request_certificate

        return await request_certificate(self, settings, ca, force=force, named=named)

    async def issue(
        self,
        settings: LineageSettings,
        ca: CaOptions,
        *,
        precondition: Callable[[LineageSettings | None], None] | None = None,
    ) -> Outcome:
        """Obtain a certificate for ``settings`` now and make it the live version.

        ``precondition`` is called under the lineage lock with the stored settings (None
        for a new lineage) and may raise to stop before anything is ordered."""
        async with self._gate, self._working_on(settings.name):
            try:
                stored: LineageSettings | None = await LineageSettings.load(
                    self.storage, settings.name
                )
            except NotFoundError:
                stored = None
            if precondition is not None:
                precondition(stored)
            state = await LineageState.load(self.storage, settings.name)
            action: Action = "issued" if state.version is None else "renewed"
            ordering = state
            if stored is not None and stored.directory_url != settings.directory_url:
                # Another CA now (staging -> production): RFC 9773 §5 `replaces` names a
                # certificate of the CA asked, so the old CA's is not sent (a CA refuses
                # the order for it), nor is the old CA's open order resumed.
                ordering = replace(
                    state, certificate_id=None, order_url=None, order_names=(), order_retry_at=None
                )
            try:
                return await self._obtain(
                    settings, ca, ordering, action, "requested", save_settings=True
                )
            except Exception as exc:
                # Any exception, not only ours (issue 9.3): the failure is remembered and
                # told; the caller gets a certherd error, never a traceback.
                _note_unexpected(settings.name, exc)
                if await self.storage.exists(state_file(settings.name)):
                    # A lineage (or an order of one) that exists: remember the failure.
                    state = await self._record_failure(state, exc)
                for problem in await self._tell_failure(settings, state, exc):
                    self._say(settings.name, f"failure hook failed: {problem}")
                if isinstance(exc, CertherdError):
                    raise
                raise CertherdError(describe_failure(exc)) from exc

    async def _deploy_owed(self, settings: LineageSettings, state: LineageState) -> Outcome:
        """Deploy hooks still owed for the live version: run them now."""
        name = settings.name
        async with self._gate, self._working_on(name):
            current = await LineageState.load(self.storage, name)
            if not current.deploy_owed:
                return Outcome(
                    name, "not-due", "deployed meanwhile", current.version, current.not_after
                )
            if settings.hooks.deploy:
                self._say(name, f"running the deploy hooks owed for version {current.version}")
            errors = await self._deploy(settings, current)
        if not settings.hooks.deploy:
            return Outcome(name, "not-due", "no deploy hooks", current.version, current.not_after)
        return Outcome(
            name,
            "deployed",
            f"the deploy hooks of version {current.version} had not succeeded",
            current.version,
            current.not_after,
            hook_errors=tuple(errors),
        )

    async def _tell_failure(
        self, settings: LineageSettings, state: LineageState, error: BaseException
    ) -> list[str]:
        """Run the failure hooks (notifications): the error, how many in a row, and when
        the live certificate expires are in their environment."""
        if not settings.hooks.failure:
            return []
        extra = {
            "CERTHERD_ERROR": describe_failure(error, 1000),
            "CERTHERD_FAILURES": str(max(state.failures, 1)),
            "CERTHERD_NOT_AFTER": state.not_after.isoformat() if state.not_after else "",
        }
        return await run_lineage_hooks("failure", settings, self.storage, state.version, extra)

    async def _record_failure(self, state: LineageState, error: BaseException) -> LineageState:
        """Count the failure on the stored state (under the lineage lock): it may hold
        more than ``state`` does now (an open order, a version stored meanwhile)."""
        with contextlib.suppress(CertherdError):
            stored = await LineageState.load(self.storage, state.name)
            if stored.version == state.version:
                state = stored
        failed = state.with_failure(describe_failure(error), self.clock.now())
        if failed.not_before and failed.not_after:
            decision = needs_renewal(
                not_before=failed.not_before,
                not_after=failed.not_after,
                now=self.clock.now(),
                failures=failed.failures,
                last_failure=failed.last_failure,
            )
            failed = replace(failed, next_check=decision.next_check)
        if failed.stored_version is not None and failed.stored_version != failed.version:
            # An issued certificate waits in the archive: making it live needs no CA,
            # so the next run does it at once (issue 10.2).
            failed = replace(failed, next_check=self.clock.now())
        with contextlib.suppress(StorageError):
            await failed.save(self.storage)
        return failed

    # -- renewing -----------------------------------------------------------------------

    async def renew(
        self, names: Sequence[str] | None = None, *, force: bool = False, dry_run: bool = False
    ) -> list[Outcome]:
        """Renew what is due (every lineage, or those named), concurrently."""
        if not dry_run:
            for name, removed in (await clear_interrupted(self.storage)).items():
                self._say(name, "removed what an interrupted run left: " + ", ".join(removed))
        plan = await plan_renewal(self.storage, names, force=force, now=self.clock.now())
        # Every lineage to its end; stopped, every one cleans up (not only the first).
        checked = await finish_all(
            self.renew_one(n, force=force, dry_run=dry_run) for n in plan.to_check
        )
        if not dry_run:
            if plan.to_check:
                await plan.index.refresh(plan.to_check)
            await plan.index.save()
        by_name = {o.lineage: o for o in checked + plan.not_due}
        order = list(names) if names else plan.index.names
        return [by_name[n] for n in order if n in by_name]

    async def decide(
        self, settings: LineageSettings, state: LineageState, *, force: bool
    ) -> RenewalDecision:
        now = self.clock.now()
        same_order = state.order_url is not None and set(state.order_names) == set(settings.names)
        if same_order and state.order_retry_at is not None and now < state.order_retry_at:
            # The CA's requested time is respected even by --force: asking before it is
            # what it asked us not to do, and a new order could issue twice.
            when = state.order_retry_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
            return RenewalDecision(
                False,
                f"waiting on the CA until {when}: it asked to be asked again about "
                f"order {safe_text(state.order_url, 200)} then",
                state.order_retry_at,
            )
        if state.stored_version is not None and state.stored_version != state.version:
            return RenewalDecision(
                True, f"version {state.stored_version} was issued but not made live", now
            )
        if same_order and state.failures == 0:
            return RenewalDecision(True, "an order placed earlier is still open: resuming it", now)
        if state.version is None or state.not_before is None or state.not_after is None:
            return RenewalDecision(True, "no certificate yet", now)
        if state.names and name_set(state.names) != name_set(settings.names):
            return RenewalDecision(True, "the names changed", now)
        return needs_renewal(
            not_before=state.not_before,
            not_after=state.not_after,
            now=now,
            ari_start=state.ari_start,
            ari_end=state.ari_end,
            ari_pick=state.ari_pick,
            failures=state.failures,
            last_failure=state.last_failure,
            force=force,
            revoked_at=state.revoked_at,
        )

    async def renew_one(self, name: str, *, force: bool = False, dry_run: bool = False) -> Outcome:
        """Check one lineage (refreshing ARI when its Retry-After has passed) and renew if due.

        Never raises (but for cancellation): whatever goes wrong with one lineage, even
        an exception that is not certherd's own (issue 9.3), becomes its failed outcome,
        and the others go on.
        """
        try:
            return await self._renew_one(name, force=force, dry_run=dry_run)
        except Exception as exc:
            _note_unexpected(name, exc)
            return Outcome(
                name, "failed", "cannot work on the lineage", error=describe_failure(exc)
            )

    async def _renew_one(self, name: str, *, force: bool, dry_run: bool) -> Outcome:
        settings, state = await self.load(name)
        ca = self.ca_for(settings)
        try:
            state = await self._refresh_ari(settings, state, ca, save=not dry_run)
        except Exception as exc:  # advisory: a broken renewalInfo never blocks a renewal
            _note_unexpected(name, exc)
            self._say(name, f"renewal info unavailable: {describe_failure(exc, 200)}")
        decision = await self.decide(settings, state, force=force)
        if not decision.due:
            if state.next_check != decision.next_check and not dry_run:
                state = await self._update_state(state, next_check=decision.next_check)
            if state.deploy_owed:
                if dry_run:
                    reason = f"the deploy hooks of version {state.version} had not succeeded"
                    return Outcome(name, "would-deploy", reason, state.version, state.not_after)
                return await self._deploy_owed(settings, state)
            waiting = state.order_retry_at is not None and state.order_retry_at > self.clock.now()
            action: Action = "waiting" if waiting else "not-due"
            return Outcome(name, action, decision.reason, state.version, state.not_after)
        if dry_run:
            self.solvers.choice(self.solver_specs(settings))  # they must at least be buildable
            return Outcome(name, "would-renew", decision.reason, state.version, state.not_after)
        async with self._gate, self._working_on(name):
            # Check again under the lock: another process may have renewed meanwhile.
            current = await LineageState.load(self.storage, name)
            if current.version != state.version and not force:
                return Outcome(
                    name,
                    "skipped",
                    "renewed by another certherd meanwhile",
                    current.version,
                    current.not_after,
                )
            try:
                return await self._obtain(settings, ca, current, "renewed", decision.reason)
            except Exception as exc:  # any exception: this lineage's failure, not the run's
                _note_unexpected(name, exc)
                failed = await self._record_failure(current, exc)
                return Outcome(
                    name,
                    "failed",
                    decision.reason,
                    current.version,
                    current.not_after,
                    error=failed.last_error,
                    hook_errors=tuple(await self._tell_failure(settings, failed, exc)),
                )

    async def _update_state(self, seen: LineageState, **changes: Any) -> LineageState:
        """Write ``changes`` (cached facts: ARI window, next check) onto the stored state,
        under the lineage lock and only if it still describes the version we looked at.

        A renewal that saved a newer version meanwhile wins; a lock held by a running
        renewal is not waited for long: these facts are only a cache.
        """
        try:
            async with self.storage.lock(seen.name, timeout=STATE_LOCK_WAIT):
                current = await LineageState.load(self.storage, seen.name)
                if current.version != seen.version:
                    return current
                updated = replace(current, **changes)
                await updated.save(self.storage)
                return updated
        except LockTimeoutError:
            return replace(seen, **changes)

    async def _refresh_ari(
        self, settings: LineageSettings, state: LineageState, ca: CaOptions, *, save: bool
    ) -> LineageState:
        now = self.clock.now()
        if state.version is None or (state.ari_retry_at is not None and now < state.ari_retry_at):
            return state

        async def keep(**changes: Any) -> LineageState:
            if not save:
                return replace(state, **changes)
            return await self._update_state(state, **changes)

        client = await self.client(ca)
        directory = await client.directory()
        if directory.renewal_info is None:
            return await keep(ari_retry_at=now + ARI_MAX_RECHECK)
        pem = await self.storage.read(archive_file(settings.name, "cert.pem", state.version))
        try:
            info = await client.renewal_info(load_pem_chain(pem)[0])
        except FeatureUnsupportedError:
            return await keep(ari_retry_at=now + ARI_MAX_RECHECK)
        pick = state.ari_pick
        if pick is None or not (info.start <= pick <= info.end):
            # Chosen once and stored, so every node sharing this storage agrees.
            pick = pick_in_window(info.start, info.end)
        wait = dt.timedelta(seconds=info.retry_after) if info.retry_after else dt.timedelta(hours=6)
        wait = min(max(wait, ARI_MIN_RECHECK), ARI_MAX_RECHECK)
        return await keep(
            ari_start=info.start,
            ari_end=info.end,
            ari_pick=pick,
            ari_retry_at=now + wait,
            ari_explanation=info.explanation_url,
        )

    # -- revoking and deleting ----------------------------------------------------------

    async def revoke(self, name: str, reason: RevocationReason | None = None) -> LineageState:
        """Revoke the live certificate of ``name`` with its lineage's account."""
        settings, state = await self.load(name)
        if state.version is None:
            raise NotFoundError(f"lineage {name!r} has no certificate to revoke")
        ca = self.ca_for(settings)
        client = await self.client(ca)
        pem = await self.storage.read(archive_file(name, "cert.pem", state.version))
        why = "unspecified" if reason is None else RevocationReason(reason).name.lower()
        try:
            await client.revoke(load_pem_chain(pem)[0], reason=reason)
        except AlreadyRevokedError:
            # The CA says so: the certificate is revoked whatever we thought (issue 10.5).
            await self._mark_revoked(state, "the CA answered alreadyRevoked")
            raise
        return await self._mark_revoked(state, why)

    async def _mark_revoked(self, seen: LineageState, reason: str) -> LineageState:
        """Flag the live version ``seen`` as revoked and due now (if still live)."""
        now = self.clock.now()
        async with self.storage.lock(seen.name):
            current = await LineageState.load(self.storage, seen.name)
            if current.version != seen.version:
                return current  # replaced meanwhile: the new version is not revoked
            revoked = replace(current, revoked_at=now, revocation_reason=reason, next_check=now)
            await revoked.save(self.storage)
            return revoked

    async def delete(self, name: str) -> int:
        """Remove every file of lineage ``name`` (its lock and folders too); returns how
        many files were removed."""
        async with self._working_on(name):
            await tidy_lineage(self.storage, name)  # temporary files would keep its folder
            keys = await self.storage.list(f"archive/{name}")
            keys += [renewal_settings(name), state_file(name)]
            for key in keys:
                await self.storage.delete(key)
            await self.storage.unpublish(name)
        return len(keys)
