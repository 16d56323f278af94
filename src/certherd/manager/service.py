"""The certificate manager: the one object that issues, renews, revokes and deletes
lineages in storage, composed from the parts that do each.

Writes follow one order so a crash at any point loses nothing: the new version's files
go to ``archive/`` (each atomic), then ``live/`` is switched to it, then the state is
saved. A failed issuance never touches ``live/``. Each lineage is worked on under its
lock, and after taking the lock the state is read again: another process may have
renewed it while we waited.

The parts: :mod:`~certherd.manager.clients` (one ACME client per CA and account),
:mod:`~certherd.manager.issuance` (obtaining and switching a version),
:mod:`~certherd.manager.renewal` (what is due, renewing, owed deploys),
:mod:`~certherd.manager.ari` (renewal info cached in the state),
:mod:`~certherd.manager.failures` (failure count, backoff, failure hooks),
:mod:`~certherd.manager.revocation` (revoke, delete), and crash repair where a lineage
is loaded (:func:`~certherd.manager.lineage.load_lineage`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace

from certherd.acme.client import AcmeClient, RevocationReason
from certherd.challenges.factory import SolverPool
from certherd.challenges.spec import SolverSpec
from certherd.clock import Clock, SystemClock
from certherd.errors import CertherdError, NotFoundError
from certherd.manager import renewal, revocation
from certherd.manager.accounts import CaOptions, ca_options, ca_options_all
from certherd.manager.ari import refresh_renewal_info
from certherd.manager.clients import ClientFactory, ClientPool
from certherd.manager.failures import (
    note_unexpected,
    notify_failure,
    notify_recovery,
    record_failure,
    tell_failure,
)
from certherd.manager.hygiene import working_on
from certherd.manager.issuance import Issuer
from certherd.manager.lineage import LineageState, load_lineage
from certherd.manager.notify import EventKind, notify_event
from certherd.manager.outcome import Action, Outcome, describe_failure
from certherd.manager.policy import RenewalDecision
from certherd.schema import looks_secret
from certherd.settings import LineageSettings
from certherd.storage.base import Lease, Storage, has_value
from certherd.storage.layout import state_file
from certherd.storage.lineages import lineage_names

__all__ = ["Manager", "Outcome"]


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
        client_factory: ClientFactory | None = None,
    ) -> None:
        """``client_factory`` opens the ACME client of a CA and account (default:
        :func:`~certherd.manager.accounts.open_client`, from the stored account)."""
        self.storage = storage
        self.clock = clock or SystemClock()
        self.solvers = solvers or SolverPool()
        self.clients = ClientPool(storage, client_factory)
        """One ACME client per CA and account, shared by every lineage."""
        self._gate = asyncio.Semaphore(max(1, concurrency))
        self._on_event = on_event
        self._config_files: dict[str, tuple[tuple[int, int], dict[str, LineageSettings]]] = {}
        self.deployed_here: Callable[[str, int], bool] | None = None
        """A fleet node's answer to "did this host run the deploy hooks of this version
        already?" (another path brought it here): then they are not run a second time."""

    def ca_for(self, settings: LineageSettings) -> CaOptions:
        """How to reach the lineage's CA with its account, from its own settings (which
        carry the contact, the terms of service and the EAB key's reference, so a renewal
        can create the account they describe)."""
        return ca_options(
            settings, environ=self.solvers.environ, configured=self._configured(settings)
        )

    def cas_for(self, settings: LineageSettings) -> tuple[CaOptions, ...]:
        """:meth:`ca_for` of every CA of the lineage, in the order they are tried."""
        return ca_options_all(
            settings, environ=self.solvers.environ, configured=self._configured(settings)
        )

    def issuer_ca(self, settings: LineageSettings, state: LineageState) -> CaOptions | None:
        """The CA (of the lineage's list) that issued its live certificate, with its
        account: the one asked for its renewal info and to revoke it; None when the
        settings no longer list it. A state written before certherd kept the issuer
        means the first CA."""
        wanted = state.issued_by or settings.directory_url
        return next((ca for ca in self.cas_for(settings) if ca.directory_url == wanted), None)

    def solver_specs(self, settings: LineageSettings) -> tuple[SolverSpec, ...]:
        """The lineage's solvers with every secret read from where it comes from: the
        environment, a file, certherd.toml (read again), or the lineage's own settings
        file."""
        configured = self._configured(settings)
        given = configured.solvers if configured is not None else ()
        resolved = []
        for index, spec in enumerate(settings.solvers):
            twin = given[index] if index < len(given) else None
            if twin is not None and twin.kind != spec.kind:
                twin = None
            resolved.append(spec.resolve(self.solvers.environ, twin))
        return tuple(resolved)

    def _working_on(self, name: str) -> AbstractAsyncContextManager[Lease]:
        """The lineage's lease, with what killed runs left of it tidied (manager.hygiene);
        the work's writes carry it (``held_lease(name)``)."""
        return working_on(self.storage, name, say=self._say)

    def _configured(self, settings: LineageSettings) -> LineageSettings | None:
        """The lineage as the config file its secrets are written in gives it now
        (secrets given in certherd.toml are stored as references to the file, which
        this reads: once per manager while the file is unchanged)."""
        paths = settings.config_files()
        if len(paths) != 1:
            return None
        from pathlib import Path

        from certherd.config import load_config_file

        path = Path(paths.pop())
        try:
            info = path.stat()
        except OSError:
            return None  # SecretRef.read names the file and the setting
        seen = (info.st_mtime_ns, info.st_size)
        cached = self._config_files.get(str(path))
        if cached is None or cached[0] != seen:
            entries = {entry.name: entry for entry in load_config_file(path).certificates}
            cached = self._config_files[str(path)] = (seen, entries)
        entries = cached[1]
        if settings.name in entries:
            return entries[settings.name]
        from certherd.names import name_set  # kept under an earlier name (apply's wildcard rule)

        names = name_set(settings.names)
        return next((e for e in entries.values() if name_set(e.names) == names), None)

    def notify_urls(self, settings: LineageSettings) -> list[str]:
        """The lineage's notify URLs read from where they come from (certherd.toml read
        again, a file, the environment); ConfigError naming the source, never a URL."""
        configured = self._configured(settings)
        given = configured.notify if configured is not None else ()
        return [
            target.read(self.solvers.environ, given[index] if index < len(given) else None)
            for index, target in enumerate(settings.notify)
        ]

    def known_secrets(self, settings: LineageSettings) -> set[str]:
        """Every secret value of the lineage that can be read now (solver credentials,
        the EAB key, and the values of environment variables named like secrets, such
        as ``CERTHERD_RFC2136_KEY_SECRET``): kept out of notifications (manager.notify)."""
        found: set[str] = {
            value for name, value in self.solvers.environ.items() if looks_secret(name)
        }
        with contextlib.suppress(CertherdError):
            for spec in self.solver_specs(settings):
                found.update(spec.options[key] for key in spec.secrets if key in spec.options)
                found.update(v for k, v in spec.options.items() if looks_secret(k))
        for ca in settings.cas:  # every CA's EAB key (fail-over: each CA has its own)
            eab = ca.eab
            if eab is None:
                continue
            with contextlib.suppress(CertherdError):
                configured = self._configured(settings)
                twins = configured.cas if configured is not None else ()
                twin = next((c.eab for c in twins if c.directory_url == ca.directory_url), None)
                given = twin.value if twin is not None else None
                environ = self.solvers.environ
                found.add(eab.hmac_key.read(environ, given or eab.value or None, "eab_hmac_key"))
        return found

    async def notify(
        self,
        settings: LineageSettings,
        kind: EventKind,
        text: str,
        details: Mapping[str, str] | None = None,
    ) -> bool:
        """Tell the lineage's notify targets about ``kind`` (deduplicated; never raises):
        see :func:`certherd.manager.notify.notify_event`."""
        return await notify_event(self, settings, kind, text, details=details)

    def _say(self, lineage: str, text: str) -> None:
        if self._on_event is not None:
            self._on_event(lineage, text)

    async def aclose(self) -> None:
        """Close every CA connection pool opened by this manager."""
        await self.clients.aclose()

    async def client(self, ca: CaOptions) -> AcmeClient:
        """One shared client (one pool, one directory fetch) per CA and account."""
        return await self.clients.client(ca)

    # -- reading ------------------------------------------------------------------------

    async def lineages(self) -> list[str]:
        return await lineage_names(self.storage)

    async def load(self, name: str) -> tuple[LineageSettings, LineageState]:
        """Settings and state of ``name``; the state follows what is actually live.

        After a crash between switching ``live/`` and saving the state, the state still
        names the old version: it is rebuilt from the live certificate, so renewals,
        ``replaces`` and revocation concern the certificate being served.
        """
        return await load_lineage(self.storage, name, self.clock.now())

    # -- issuing ------------------------------------------------------------------------

    async def request(
        self, settings: LineageSettings, *, force: bool = False, named: bool = False
    ) -> Outcome:
        """``certherd issue``: a certificate for ``settings.names``, ordered only when no
        lineage holds them or it is due; a lineage holding some of them is expanded.
        ``named``: ``settings.name`` was chosen by the user (see manager.request)."""
        from certherd.manager.request import request_certificate

        return await request_certificate(self, settings, force=force, named=named)

    async def issue(
        self,
        settings: LineageSettings,
        *,
        precondition: Callable[[LineageSettings | None], None] | None = None,
        unless: Callable[[LineageSettings | None, LineageState], str | None] | None = None,
    ) -> Outcome:
        """Obtain a certificate for ``settings`` now (from its CA, with its account) and
        make it the live version.

        ``precondition`` is called under the lineage lock with the stored settings (None
        for a new lineage) and may raise to stop before anything is ordered. ``unless``
        is called there too, with the stored settings and state: a reason it returns
        (another certherd obtained it while this one waited for the lease) makes the
        outcome ``skipped``, nothing ordered."""
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
            skip = unless(stored, state) if unless is not None else None
            if skip is not None:
                return Outcome(settings.name, "skipped", skip, state.version, state.not_after)
            action: Action = "issued" if state.version is None else "renewed"
            ordering = state
            if stored is not None and state.issued_by is None:
                # Written before certherd kept which CA issued it: the stored first CA.
                # Another CA now (staging -> production): RFC 9773 §5 `replaces` names a
                # certificate of the CA asked, so the old CA's is not sent (a CA refuses
                # the order for it), nor is the old CA's open order resumed (_obtain).
                ordering = replace(
                    state,
                    issued_by=stored.directory_url,
                    order_ca=state.order_ca or stored.directory_url,
                )
            try:
                outcome = await self._obtain(
                    settings,
                    self.cas_for(settings),
                    ordering,
                    action,
                    "requested",
                    save_settings=True,
                )
                await notify_recovery(self, settings, state, outcome)
                return outcome
            except Exception as exc:
                # Any exception, not only ours (issue 9.3): the failure is remembered and
                # told; the caller gets a certherd error, never a traceback.
                note_unexpected(settings.name, exc)
                if await has_value(self.storage, state_file(settings.name)):
                    # A lineage (or an order of one) that exists: remember the failure.
                    state = await record_failure(self.storage, state, exc, self.clock.now())
                for problem in await tell_failure(self.storage, settings, state, exc):
                    self._say(settings.name, f"failure hook failed: {problem}")
                await notify_failure(self, settings, state, exc)
                if isinstance(exc, CertherdError):
                    raise
                raise CertherdError(describe_failure(exc)) from exc

    # -- renewing -----------------------------------------------------------------------

    async def renew(
        self, names: Sequence[str] | None = None, *, force: bool = False, dry_run: bool = False
    ) -> list[Outcome]:
        """Renew what is due (every lineage, or those named), concurrently."""
        return await renewal.renew(self, names, force=force, dry_run=dry_run)

    async def decide(
        self, settings: LineageSettings, state: LineageState, *, force: bool
    ) -> RenewalDecision:
        """Whether the lineage is due now, and why (see :func:`renewal.decide`)."""
        return renewal.decide(settings, state, now=self.clock.now(), force=force)

    async def renew_one(self, name: str, *, force: bool = False, dry_run: bool = False) -> Outcome:
        """Check one lineage (refreshing ARI when its Retry-After has passed) and renew if due.

        Never raises (but for cancellation): whatever goes wrong with one lineage, even
        an exception that is not certherd's own (issue 9.3), becomes its failed outcome,
        and the others go on.
        """
        try:
            return await renewal.renew_one(self, name, force=force, dry_run=dry_run)
        except Exception as exc:
            note_unexpected(name, exc)
            return Outcome(
                name, "failed", "cannot work on the lineage", error=describe_failure(exc)
            )

    async def refresh_renewal_info(
        self, settings: LineageSettings, state: LineageState, *, save: bool = True
    ) -> LineageState:
        """``state`` with the renewal window of the CA that issued the live certificate
        (RFC 9773: only it knows the certificate), when its Retry-After has passed."""
        issuer = self.issuer_ca(settings, state)
        if issuer is None:
            return state  # that CA is no longer listed: the lifetime alone decides
        return await refresh_renewal_info(
            self.storage,
            self.clients,
            settings,
            state,
            issuer,
            now=self.clock.now(),
            save=save,
        )

    # -- revoking and deleting ----------------------------------------------------------

    async def revoke(self, name: str, reason: RevocationReason | None = None) -> LineageState:
        """Revoke the live certificate of ``name`` with its lineage's account; the live
        version is flagged revoked and due at once (also when the CA says it already is)."""
        return await revocation.revoke(self, name, reason)

    async def delete(self, name: str) -> int:
        """Remove every file of lineage ``name`` (its lock and folders too); returns how
        many files were removed."""
        return await revocation.delete_lineage(self.storage, name, say=self._say)
