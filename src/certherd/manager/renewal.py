"""Renewing lineages: decide which are due, renew them concurrently, run owed deploys.

``renew`` plans from the index (lineages not due are not even read), clears what killed
runs left, and checks each remaining lineage to its end, even when another fails or the
run is stopped. For one lineage: refresh its renewal info (advisory: a broken
renewalInfo never blocks a renewal), :func:`decide`, and when due obtain the next
version under the lineage lock, after reading the state again (another process may have
renewed it meanwhile). A lineage not due whose deploy hooks never succeeded for the live
version gets them run again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from certherd.errors import safe_text
from certherd.manager.ari import update_state
from certherd.manager.failures import (
    note_unexpected,
    notify_expiring,
    notify_failure,
    notify_recovery,
    record_failure,
    tell_failure,
)
from certherd.manager.hygiene import clear_interrupted
from certherd.manager.index import plan_renewal
from certherd.manager.lineage import LineageState
from certherd.manager.outcome import Action, Outcome, describe_failure
from certherd.manager.policy import RenewalDecision, needs_renewal
from certherd.manager.tasks import finish_all
from certherd.names import name_set
from certherd.settings import LineageSettings

if TYPE_CHECKING:
    from certherd.manager.service import Manager

__all__ = ["decide", "deploy_owed", "renew", "renew_one"]


async def renew(
    manager: Manager, names: Sequence[str] | None, *, force: bool, dry_run: bool
) -> list[Outcome]:
    """Renew what is due (every lineage, or those named), concurrently; outcomes in the
    order of ``names`` (or of the index)."""
    storage = manager.storage
    if not dry_run:
        for name, removed in (await clear_interrupted(storage)).items():
            manager._say(name, "removed what an interrupted run left: " + ", ".join(removed))
    plan = await plan_renewal(storage, names, force=force, now=manager.clock.now())
    # Every lineage to its end; stopped, every one cleans up (not only the first).
    checked = await finish_all(
        manager.renew_one(n, force=force, dry_run=dry_run) for n in plan.to_check
    )
    if not dry_run:
        if plan.to_check:
            await plan.index.refresh(plan.to_check)
        await plan.index.save()
    by_name = {o.lineage: o for o in checked + plan.not_due}
    if not dry_run:
        await _tell_expiring(manager, list(by_name.values()))
    order = list(names) if names else plan.index.names
    return [by_name[n] for n in order if n in by_name]


def decide(
    settings: LineageSettings, state: LineageState, *, now: dt.datetime, force: bool
) -> RenewalDecision:
    """Whether the lineage is due now, and why: an open order or a stored version first,
    then new names, then the renewal policy (ARI window, a third of the lifetime left,
    failure backoff, revocation)."""
    same_order = state.order_url is not None and set(state.order_names) == set(settings.names)
    if same_order and state.order_retry_at is not None and now < state.order_retry_at:
        # The CA's requested time is respected even when forced: asking before it is
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
    if state.reissue:
        return RenewalDecision(True, state.reissue, now)
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


async def renew_one(manager: Manager, name: str, *, force: bool, dry_run: bool) -> Outcome:
    """Check one lineage and renew it if due; see :meth:`Manager.renew_one`."""
    settings, state = await manager.load(name)
    try:
        state = await manager.refresh_renewal_info(settings, state, save=not dry_run)
    except Exception as exc:  # advisory: a broken renewalInfo never blocks a renewal
        note_unexpected(name, exc)
        manager._say(name, f"renewal info unavailable: {describe_failure(exc, 200)}")
    decision = decide(settings, state, now=manager.clock.now(), force=force)
    if not decision.due:
        if state.next_check != decision.next_check and not dry_run:
            state = await update_state(manager.storage, state, next_check=decision.next_check)
        if state.deploy_owed:
            if dry_run:
                reason = f"the deploy hooks of version {state.version} had not succeeded"
                return Outcome(name, "would-deploy", reason, state.version, state.not_after)
            return await deploy_owed(manager, settings)
        waiting = state.order_retry_at is not None and state.order_retry_at > manager.clock.now()
        action: Action = "waiting" if waiting else "not-due"
        return Outcome(name, action, decision.reason, state.version, state.not_after)
    if dry_run:
        manager.solvers.choice(manager.solver_specs(settings))  # they must at least be buildable
        return Outcome(name, "would-renew", decision.reason, state.version, state.not_after)
    async with manager._gate, manager._working_on(name):
        # Check again under the lock: another process may have renewed meanwhile.
        current = await LineageState.load(manager.storage, name)
        if current.version != state.version and not force:
            return Outcome(
                name,
                "skipped",
                "renewed by another certherd meanwhile",
                current.version,
                current.not_after,
            )
        try:
            outcome = await manager._obtain(
                settings, manager.cas_for(settings), current, "renewed", decision.reason
            )
            await notify_recovery(manager, settings, current, outcome)
            return outcome
        except Exception as exc:  # any exception: this lineage's failure, not the run's
            note_unexpected(name, exc)
            failed = await record_failure(manager.storage, current, exc, manager.clock.now())
            await notify_failure(manager, settings, failed, exc)
            return Outcome(
                name,
                "failed",
                decision.reason,
                current.version,
                current.not_after,
                error=failed.last_error,
                hook_errors=tuple(await tell_failure(manager.storage, settings, failed, exc)),
            )


EXPIRY_NOTICE_MAX = dt.timedelta(days=60)
"""Lineages further from expiry are not even read for the expiring-soon check."""


async def _tell_expiring(manager: Manager, outcomes: Sequence[Outcome]) -> None:
    """The expiring-soon event: each lineage this run did not renew whose certificate
    expires soon (read only when within :data:`EXPIRY_NOTICE_MAX`) is told."""
    now = manager.clock.now()
    for outcome in outcomes:
        if outcome.action in ("issued", "renewed") or outcome.not_after is None:
            continue
        if outcome.not_after - now > EXPIRY_NOTICE_MAX:
            continue
        try:
            settings, state = await manager.load(outcome.lineage)
        except Exception as exc:  # a damaged lineage: renew reported it already
            note_unexpected(outcome.lineage, exc)
            continue
        await notify_expiring(manager, settings, state, outcome)


async def deploy_owed(manager: Manager, settings: LineageSettings) -> Outcome:
    """Deploy hooks still owed for the live version: run them now (under the lock)."""
    name = settings.name
    async with manager._gate, manager._working_on(name):
        current = await LineageState.load(manager.storage, name)
        if not current.deploy_owed:
            return Outcome(
                name, "not-due", "deployed meanwhile", current.version, current.not_after
            )
        if settings.hooks.deploy:
            manager._say(name, f"running the deploy hooks owed for version {current.version}")
        errors = await manager._deploy(settings, current)
    if not settings.hooks.deploy and not settings.installer:
        return Outcome(name, "not-due", "no deploy hooks", current.version, current.not_after)
    return Outcome(
        name,
        "deployed",
        f"the deploy hooks of version {current.version} had not succeeded",
        current.version,
        current.not_after,
        hook_errors=tuple(errors),
    )
