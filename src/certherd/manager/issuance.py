"""Obtaining a lineage's next version: resume or place the order, store, switch, deploy.

The part of :class:`~certherd.manager.service.Manager` that turns an order into a live
version, in an order chosen so nothing the CA issued is lost:

1. the order's URL and key are saved when it is placed, so a crash, or a CA whose
   Retry-After reaches past what this run waits, resumes that order instead of placing
   another (issue 9.4); an order that turned invalid or expired is dropped;
2. the downloaded, verified certificate is stored as an archive version before anything
   that can still fail (an alternate chain, ``live/``, the state, hooks) (issue 10.2);
3. a version stored but never made live is made live by the next attempt, no order.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from cryptography import x509

from certherd.acme.client import AcmeClient, CertificateChain
from certherd.acme.messages import Identifier, Order
from certherd.challenges.factory import SolverPool
from certherd.challenges.spec import SolverSpec
from certherd.clock import Clock
from certherd.crypto.certs import load_pem_chain
from certherd.crypto.keys import PrivateKey, generate_key, load_private_key, private_key_to_pem
from certherd.errors import (
    CaFailoverError,
    CaHeldBackError,
    CertherdError,
    ConfigError,
    OrderFailedError,
    PollDeferredError,
    ProblemError,
    RateLimitedError,
    safe_text,
)
from certherd.manager.accounts import CaOptions
from certherd.manager.failover import fails_over
from certherd.manager.hooks import run_lineage_hooks
from certherd.manager.lineage import LineageState
from certherd.manager.notify import EventKind
from certherd.manager.obtain import complete_order, open_order, select_chain
from certherd.manager.outcome import Action, Outcome, describe_failure
from certherd.manager.versions import find_stored_version, version_to_store, write_version
from certherd.names import normalize_names
from certherd.settings import LineageSettings
from certherd.storage.base import Storage
from certherd.storage.fleet import Fleet, fleet_of
from certherd.storage.layout import archive_file, pending_key
from certherd.storage.leases import held_lease, refresh_lease
from certherd.storage.lineages import publish

__all__ = ["Issuer"]

log = logging.getLogger(__name__)


class Issuer:
    """Obtains and switches versions; the Manager supplies storage, clock and clients."""

    storage: Storage
    clock: Clock
    solvers: SolverPool
    deployed_here: Callable[[str, int], bool] | None

    async def client(self, ca: CaOptions) -> AcmeClient:
        raise NotImplementedError

    def _say(self, lineage: str, text: str) -> None:
        raise NotImplementedError

    def solver_specs(self, settings: LineageSettings) -> tuple[SolverSpec, ...]:
        raise NotImplementedError

    async def notify(
        self,
        settings: LineageSettings,
        kind: EventKind,
        text: str,
        details: Mapping[str, str] | None = None,
    ) -> bool:
        """Tell the lineage's notify targets (a CA fail-over, say); never raises."""
        raise NotImplementedError

    async def _obtain(
        self,
        settings: LineageSettings,
        cas: Sequence[CaOptions],
        state: LineageState,
        action: Action,
        reason: str,
        *,
        save_settings: bool = False,
    ) -> Outcome:
        """Make a new version live: one stored earlier if there is one, else the
        certificate of the open order (resumed) or of a new order, from the first of
        ``cas`` (the lineage's CAs in order) that gives one.

        The next CA is tried only when a CA fails in a way another could fix
        (:func:`~certherd.manager.failover.fails_over`); each is told as a step. An
        open order is resumed only at the CA it was placed at, and ``replaces`` (RFC
        9773 §5) names a certificate only to the CA that issued it.
        """
        name = settings.name
        stored = await find_stored_version(
            self.storage, name, state.version, settings.names, self.clock.now()
        )
        if stored is not None:
            issued_by = state.order_ca if stored.version == state.stored_version else None
            return await self._promote(
                settings, stored.version, action, save_settings, issued_by or cas[0].directory_url
            )
        retry_at = state.order_retry_at
        if (
            retry_at is not None
            and self.clock.now() < retry_at
            and set(state.order_names) == set(settings.names)
        ):
            # `issue` again, or a forced run: the CA's requested time still holds.
            return _waiting(state, retry_at)
        first = cas[0].directory_url
        failures: list[tuple[CaOptions, CertherdError]] = []
        fleet = fleet_of(self.storage)
        held = await fleet.held_back() if fleet is not None else {}
        for index, ca in enumerate(cas):
            at_ca = state
            if state.order_url is not None and (state.order_ca or first) != ca.directory_url:
                at_ca = replace(at_ca, order_url=None, order_names=(), order_retry_at=None)
            creating_account = True
            try:
                backoff = held.get(ca.directory_url)
                if backoff is not None:
                    until = backoff.until.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
                    raise CaHeldBackError(
                        f"not asked: the fleet leaves this CA alone until {until} "
                        f"({safe_text(backoff.by, 100)} was told: {safe_text(backoff.reason, 300)})"
                    )
                client = await self.client(ca)
                creating_account = False
                outcome = await self._obtain_at(
                    settings,
                    ca,
                    client,
                    at_ca,
                    action,
                    reason,
                    save_settings=save_settings,
                    # RFC 9773 §5: `replaces` names a certificate of the CA asked.
                    replaces=(state.issued_by or first) == ca.directory_url,
                )
            except CertherdError as exc:
                if fleet is not None and isinstance(exc, RateLimitedError):
                    await _hold_fleet_back(fleet, ca.directory_url, exc)
                last = index == len(cas) - 1
                moving_on = not last and fails_over(exc, creating_account=creating_account)
                if moving_on and await self._stored_meanwhile(name, state):
                    moving_on = False  # this CA's certificate is stored: made live next run
                if not moving_on:
                    if failures and not isinstance(exc, ConfigError):
                        raise CaFailoverError(
                            [(f.directory_url, e) for f, e in [*failures, (ca, exc)]]
                        ) from exc
                    raise  # a ConfigError as it is (exit 2); the steps told the rest
                failures.append((ca, exc))
                following = cas[index + 1].directory_url
                self._say(
                    name,
                    f"fail-over: {safe_text(ca.directory_url, 200)} failed "
                    f"({describe_failure(exc, 300)}): trying {safe_text(following, 200)}",
                )
                continue
            if failures:
                await self._tell_failover(settings, failures, ca)
            return outcome
        raise AssertionError("unreachable: the last CA's failure is raised")  # pragma: no cover

    async def _stored_meanwhile(self, name: str, state: LineageState) -> bool:
        """Whether this attempt stored a new version before it failed (a later step,
        such as an alternate chain, went wrong): then no other CA is asked, the stored
        version is made live by the next attempt without an order (issue 10.2)."""
        try:
            current = await LineageState.load(self.storage, name)
        except CertherdError:
            return False
        stored = current.stored_version
        return stored is not None and stored not in (state.version, state.stored_version)

    async def _tell_failover(
        self,
        settings: LineageSettings,
        failures: Sequence[tuple[CaOptions, CertherdError]],
        issuer: CaOptions,
    ) -> None:
        """A CA after the first issued: say so, and tell the notify targets (the
        ``failover`` event of :mod:`certherd.manager.notify`)."""
        said = "; ".join(
            f"{safe_text(ca.directory_url, 200)} failed: {describe_failure(exc, 300)}"
            for ca, exc in failures
        )
        text = f"{said}; issued by {safe_text(issuer.directory_url, 200)}"
        self._say(settings.name, f"fail-over: {text}")
        details = {"issued by": issuer.directory_url, "first CA": failures[0][0].directory_url}
        await self.notify(settings, "failover", text, details)

    async def _obtain_at(
        self,
        settings: LineageSettings,
        ca: CaOptions,
        client: AcmeClient,
        state: LineageState,
        action: Action,
        reason: str,
        *,
        save_settings: bool = False,
        replaces: bool = True,
    ) -> Outcome:
        """Obtain from one CA (``client``, opened for ``ca``): resume its open order or
        place a new one. Steps, each saved before the next can fail: the order's URL and
        key (so a crash or a CA that says "later" resumes it), the downloaded and
        verified certificate as an archive version (so it is never lost), ``live/``, the
        state (with the CA that issued it), the hooks.
        """
        name = settings.name
        hook_errors = list(await run_lineage_hooks("pre", settings, self.storage, None))
        try:
            solvers = self.solvers.choice(self.solver_specs(settings))
            solvers.preflight()  # after the pre hooks: they may mount or create a webroot
            identifiers = normalize_names(settings.names)  # as the CA judges them
            order, key, state = await self._open_or_place(
                client, settings, state, identifiers, ca.directory_url, replaces=replaces
            )
            opened = state

            async def still_holding() -> None:
                """A fenced write of the state: FencedError (no finalize) if the lineage
                was granted to another holder since (this one was paused past its lease);
                then the lease renewed, so no other node can take the lineage over (and
                finalize the same order too) while this one finalizes, even if its lease
                ran out while this process stalled (LeaseLostError if it was granted
                again in between)."""
                if held_lease(name) is not None:
                    await opened.save(self.storage)
                    await refresh_lease(name)

            try:
                order, _ = await complete_order(
                    client, order, identifiers, solvers, key, before_finalize=still_holding
                )
            except PollDeferredError as deferred:
                return await self._wait_on_ca(settings, state, deferred, save_settings)
            except (OrderFailedError, ProblemError) as exc:
                if _order_is_dead(exc):
                    await self._forget_order(state)  # never resumed again: a new one next
                raise
            assert order.certificate is not None  # complete_order checked it
            chain = await client.download_certificate(order.certificate)
            client.verify_chain(chain, key.public_key(), identifiers)
            # Issued: store it before anything else can fail (issue 10.2).
            version = await version_to_store(self.storage, name, chain)
            await write_version(self.storage, name, version, chain, key)
            state = replace(
                state,
                order_url=None,
                order_names=(),
                order_retry_at=None,
                stored_version=version,
                order_ca=ca.directory_url,  # the CA of the stored version, until it is live
            )
            await state.save(self.storage)
            await self.storage.delete(pending_key(name), fence=held_lease(name))
            if settings.preferred_chain:
                chosen = await self._preferred_chain(client, order, chain, settings, key)
                if chosen is not chain:
                    await write_version(self.storage, name, version, chosen, key)
            await publish(self.storage, name, version, fence=held_lease(name))
            # State (and, for a new lineage, its settings) right after the switch, before
            # any hook: a crash in a hook must not leave a live certificate nobody renews.
            new_state = replace(
                self._state_from(name, chain.leaf, version),
                deploy_owed=bool(settings.hooks.deploy or settings.installer),
                issued_by=ca.directory_url,
            )
            await new_state.save(self.storage)
            if save_settings:
                await settings.save(self.storage)
            self._say(name, f"saved version {version}")
        finally:
            hook_errors += await run_lineage_hooks("post", settings, self.storage, None)
        hook_errors += await self._deploy(settings, new_state)
        return Outcome(
            name, action, reason, version, new_state.not_after, hook_errors=tuple(hook_errors)
        )

    async def _open_or_place(
        self,
        client: AcmeClient,
        settings: LineageSettings,
        state: LineageState,
        identifiers: Sequence[Identifier],
        directory_url: str,
        *,
        replaces: bool = True,
    ) -> tuple[Order, PrivateKey, LineageState]:
        """The lineage's open order (resumed, with its stored key) if it can still lead
        to a certificate for these names; else a new order, whose URL and key are saved
        before anything is asked of the solvers."""
        name = settings.name
        if state.order_url is not None and set(state.order_names) == set(settings.names):
            try:
                key: PrivateKey | None = load_private_key(
                    await self.storage.read(pending_key(name))
                )
            except CertherdError:
                key = None  # lost or damaged: the order cannot be finalized with it
            if key is not None:
                order = await open_order(client, state.order_url, identifiers, self.clock.now())
                if order is not None:
                    self._say(name, f"resuming order {order.url} ({order.status.value})")
                    return order, key, state
            self._say(name, f"order {state.order_url} cannot be resumed: placing a new one")
        key = None
        # Never the key of a revoked certificate: it may be why it was revoked.
        if settings.reuse_key and state.version is not None and state.revoked_at is None:
            raw = await self.storage.read(archive_file(name, "privkey.pem", state.version))
            key = load_private_key(raw)
        key = key or generate_key(settings.key_type)
        self._say(name, f"ordering a certificate for {', '.join(settings.names)}")
        order = await client.new_order(
            identifiers,
            profile=settings.profile,
            replaces=state.certificate_id if state.version is not None and replaces else None,
        )
        await self.storage.write(
            pending_key(name), private_key_to_pem(key), private=True, fence=held_lease(name)
        )
        state = replace(
            state,
            order_url=order.url,
            order_names=settings.names,
            order_retry_at=None,
            order_ca=directory_url,
            next_check=self.clock.now(),  # a crash from here on: resume at the next run
        )
        await state.save(self.storage)
        return order, key, state

    async def _forget_order(self, state: LineageState) -> None:
        """Drop the lineage's open order (it can never lead to a certificate)."""
        current = await LineageState.load(self.storage, state.name)
        if current.order_url is not None:
            await replace(current, order_url=None, order_names=(), order_retry_at=None).save(
                self.storage
            )
        await self.storage.delete(pending_key(state.name), fence=held_lease(state.name))

    async def _wait_on_ca(
        self,
        settings: LineageSettings,
        state: LineageState,
        deferred: PollDeferredError,
        save_settings: bool,
    ) -> Outcome:
        """The CA asked to be asked again later than this run waits: remember when, and
        resume the same order then. Not a failure: no backoff, no failure hook."""
        retry_at = deferred.retry_at
        waiting = replace(state, order_retry_at=retry_at, next_check=retry_at)
        await waiting.save(self.storage)
        if save_settings:
            await settings.save(self.storage)  # so `renew` and the daemon resume it
        self._say(settings.name, f"stopped waiting: {deferred}")
        return _waiting(state, retry_at)

    async def _preferred_chain(
        self,
        client: AcmeClient,
        order: Order,
        default: CertificateChain,
        settings: LineageSettings,
        key: PrivateKey,
    ) -> CertificateChain:
        """The chain named by ``preferred_chain`` among the CA's alternates (§7.4.2),
        verified like the default; the default when none matches."""
        chains = [default]
        for url in default.alternates:
            chains.append(await client.download_certificate(url))
        chosen = select_chain(chains, settings.preferred_chain)
        if chosen is not default:
            client.verify_chain(chosen, key.public_key(), normalize_names(settings.names))
        return chosen

    async def _promote(
        self,
        settings: LineageSettings,
        version: int,
        action: Action,
        save_settings: bool,
        issued_by: str,
    ) -> Outcome:
        """Make ``version``, stored after an earlier issuance but never made live, the
        live one: no new order (issue 10.2)."""
        name = settings.name
        self._say(name, f"version {version} was stored but not made live: making it live")
        pem = await self.storage.read(archive_file(name, "cert.pem", version))
        await publish(self.storage, name, version, fence=held_lease(name))
        await self.storage.delete(pending_key(name), fence=held_lease(name))
        new_state = replace(
            self._state_from(name, load_pem_chain(pem)[0], version),
            deploy_owed=bool(settings.hooks.deploy or settings.installer),
            issued_by=issued_by,
        )
        await new_state.save(self.storage)
        if save_settings:
            await settings.save(self.storage)
        hook_errors = await self._deploy(settings, new_state)
        return Outcome(
            name,
            action,
            f"version {version} was issued and stored earlier but not made live: made live "
            "now, no new order",
            version,
            new_state.not_after,
            hook_errors=tuple(hook_errors),
        )

    async def _deploy(self, settings: LineageSettings, state: LineageState) -> list[str]:
        """Run the deploy hooks for the live ``state`` (under the lineage lock); once all
        succeed, remember it, so a failed or interrupted deploy is run again next time.
        On a fleet node whose host ran them for this version already (it copied the
        version from another node's work), they are not run again here."""
        done_here = self.deployed_here
        version = state.version
        if version is not None and done_here is not None and done_here(settings.name, version):
            if state.deploy_owed:
                await replace(state, deploy_owed=False).save(self.storage)
            return []
        errors = await run_lineage_hooks("deploy", settings, self.storage, state.version)
        errors += await self._after_deploy(settings)
        if not errors and state.deploy_owed:
            await replace(state, deploy_owed=False).save(self.storage)
        return errors

    async def _after_deploy(self, settings: LineageSettings) -> list[str]:
        """After the deploy hooks of a new live version: the web server reloads (the
        installer, above this layer: certherd.app overrides this); failures as text."""
        return []

    def _state_from(self, name: str, leaf: x509.Certificate, version: int) -> LineageState:
        now = self.clock.now()
        return LineageState.of_certificate(name, leaf, version, now, last_success=now)


def _waiting(state: LineageState, retry_at: dt.datetime) -> Outcome:
    """The outcome of a lineage whose open order the CA asked to be asked about later."""
    when = retry_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return Outcome(
        state.name,
        "waiting",
        f"waiting on the CA until {when}: it asked to be asked again about order "
        f"{safe_text(state.order_url, 200)} then; certherd resumes that order",
        state.version,
        state.not_after,
    )


CA_BACKOFF_DEFAULT = 3600.0
"""Seconds a fleet leaves a CA alone after rateLimited without a Retry-After."""


async def _hold_fleet_back(fleet: Fleet, ca: str, error: RateLimitedError) -> None:
    """Every node of the fleet leaves ``ca`` alone until its Retry-After (an hour when
    it gave none); a failure to say so is logged, never the lineage's failure."""
    wait = error.retry_at
    seconds = wait.total_seconds() if wait is not None else CA_BACKOFF_DEFAULT
    try:
        await fleet.hold_back(ca, seconds=seconds, reason=describe_failure(error, 300))
    except CertherdError as exc:
        log.warning("cannot tell the fleet to leave %s alone: %s", safe_text(ca, 200), exc)


def _order_is_dead(error: CertherdError) -> bool:
    """Whether ``error`` means the order cannot lead to a certificate any more: it or an
    authorization ended invalid, or the CA refused a step of it for good (a 4xx problem
    other than a rate limit, RFC 8555 §6.7). Network and server errors keep it."""
    if isinstance(error, OrderFailedError):
        return True
    status = getattr(error, "status", None)
    return isinstance(status, int) and 400 <= status < 500 and status != 429
