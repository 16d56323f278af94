"""A request for a certificate (``certherd issue``), run twice, does nothing the second time.

Which lineage the requested names go to, as Certbot decides (``--expand``,
``--cert-name``), and whether an order is needed at all:

- a lineage holds exactly these names and is not due: nothing is ordered; new settings
  (hooks, solvers) are saved for its renewals; ``force`` reissues;
- a lineage holds some of them (a subset): it is expanded to all of them;
- else a new lineage, under the default name (:func:`~certherd.storage.layout.lineage_for`);
  when a lineage of that name holds other names, it is never silently replaced: the
  caller has to name the lineage (``settings.name``, ``named=True``), and then its names
  are replaced, and said so.

The plan is pure (:func:`plan_issue`); :func:`request_certificate` carries it out under
the lineage's lock, after checking that nobody changed the lineage meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Literal

from certherd.errors import CertherdError, ConfigError, NotFoundError, SettingsText
from certherd.manager.outcome import Outcome
from certherd.names import describe_name, name_set
from certherd.settings import LineageSettings
from certherd.storage.base import Storage, has_value
from certherd.storage.layout import lineage_for, renewal_settings
from certherd.storage.leases import holding

if TYPE_CHECKING:
    from certherd.manager.service import Manager

__all__ = [
    "IssuePlan",
    "earlier_wildcard_lineage",
    "plan_issue",
    "request_certificate",
    "settings_changes",
]

PlanKind = Literal["new", "same", "expand", "replace"]
PLAN_ATTEMPTS = 3
"""How often a plan is made again when another process changed the lineage meanwhile."""


@dataclass(frozen=True)
class IssuePlan:
    """Where requested names go: ``lineage``, and what becomes of its ``previous`` names."""

    lineage: str
    kind: PlanKind
    previous: tuple[str, ...] = ()

    def change(self, names: Sequence[str]) -> str:
        """The names change in words: ``adds www.example.com; drops old.example.com``."""
        before, after = name_set(self.previous), name_set(names)
        parts = []
        added = [n for n in names if n not in before]
        dropped = sorted(before - after)
        if added:
            parts.append("adds " + ", ".join(describe_name(n) for n in added))
        if dropped:
            parts.append("drops " + ", ".join(describe_name(n) for n in dropped))
        return "; ".join(parts)


def plan_issue(
    names: Sequence[str],
    existing: Mapping[str, Sequence[str] | None],
    *,
    lineage: str | None = None,
) -> IssuePlan:
    """Where ``names`` go, given every lineage's names (None: its settings are damaged).

    ``lineage`` is a name the user gave: that lineage is used, whatever it holds.
    ConfigError when the default lineage holds other names and none was given.
    """
    wanted = name_set(names)
    if lineage is not None:
        held = existing.get(lineage, ())
        if lineage not in existing:
            return IssuePlan(lineage, "new")
        previous = tuple(held or ())
        if held is not None and name_set(held) == wanted:
            return IssuePlan(lineage, "same", previous)
        if held is not None and name_set(held) < wanted:
            return IssuePlan(lineage, "expand", previous)
        return IssuePlan(lineage, "replace", previous)
    default = lineage_for(names[0])

    def preference(name: str) -> tuple[int, int, str]:
        held = existing[name] or ()
        return (-len(name_set(held)), 0 if name == default else 1, name)

    readable = {name: name_set(held) for name, held in existing.items() if held is not None}
    same = sorted((n for n, held in readable.items() if held == wanted), key=preference)
    if same:
        return IssuePlan(same[0], "same", tuple(existing[same[0]] or ()))
    subsets = sorted((n for n, held in readable.items() if held < wanted), key=preference)
    if subsets:
        return IssuePlan(subsets[0], "expand", tuple(existing[subsets[0]] or ()))
    if default not in existing:
        return IssuePlan(default, "new")
    held = existing[default]
    if held is None:
        raise ConfigError(
            f"lineage {default!r} exists but its settings are damaged: repair or delete it, "
            "or give another lineage's {name}",
            settings=("name",),
        )
    shown = ", ".join(describe_name(n) for n in held)
    raise ConfigError(
        f"lineage {default!r} holds other names ({shown}): give "
        "{name}"
        f" {default} to replace them with these, or "
        "{name}"
        " NEW for a separate certificate",
        settings=("name",),
    )


def settings_changes(wanted: LineageSettings, stored: LineageSettings) -> list[str]:
    """The settings (names aside) in which ``wanted`` differs from ``stored``, in words."""
    return [
        _WORDS.get(item.name, item.name.replace("_", " "))
        for item in fields(LineageSettings)
        if item.name not in ("name", "names")
        and getattr(wanted, item.name) != getattr(stored, item.name)
    ]


_WORDS = {
    "directory_url": "CA",
    "agree_tos": "terms of service",
    "eab": "EAB",
    "fallback_cas": "fallback CAs",
}


REISSUE_ON = ("CA", "account", "key type", "profile")
"""Changes that a certificate already issued does not satisfy (as ``apply`` judges)."""


async def existing_names(manager: Manager) -> dict[str, tuple[str, ...] | None]:
    """Every lineage's names (None for damaged settings), read concurrently."""
    names = await manager.lineages()

    async def read(name: str) -> tuple[str, ...] | None:
        try:
            return (await LineageSettings.load(manager.storage, name)).names
        except ConfigError:
            return None

    return dict(zip(names, await asyncio.gather(*(read(n) for n in names)), strict=True))


class _LineageChangedError(CertherdError):
    """The lineage changed between planning and taking its lock: plan again."""


async def _stored(manager: Manager, name: str) -> LineageSettings | None:
    try:
        return await LineageSettings.load(manager.storage, name)
    except NotFoundError:
        return None


def _still(plan: IssuePlan) -> Callable[[LineageSettings | None], None]:
    """A check, run under the lineage lock, that it still holds what the plan saw."""

    def check(stored: LineageSettings | None) -> None:
        now = None if stored is None else stored.names
        if (plan.kind == "new") != (now is None) or (
            now is not None and name_set(now) != name_set(plan.previous)
        ):
            raise _LineageChangedError(f"lineage {plan.lineage!r} changed meanwhile")

    return check


async def request_certificate(
    manager: Manager,
    settings: LineageSettings,
    *,
    force: bool = False,
    named: bool = False,
) -> Outcome:
    """Make sure a certificate for ``settings.names`` exists; order one only if needed.

    ``named``: ``settings.name`` was given by the user, else it is chosen
    (:func:`plan_issue`). ``force`` reissues even when nothing is due.
    """
    for _ in range(PLAN_ATTEMPTS):
        plan = plan_issue(
            settings.names, await existing_names(manager), lineage=settings.name if named else None
        )
        wanted = replace(settings, name=plan.lineage)
        try:
            why = "reissue forced" if force else ""
            if plan.kind == "same" and not force:
                kept = await _keep_if_not_due(manager, wanted, plan)
                if isinstance(kept, Outcome):
                    return kept
                why = kept
            return await _order(manager, wanted, plan, why)
        except _LineageChangedError:
            continue
    raise ConfigError(
        f"lineage {settings.name!r} keeps changing while certherd works on it: run again"
    )


async def _order(manager: Manager, wanted: LineageSettings, plan: IssuePlan, why: str) -> Outcome:
    name = wanted.name
    if plan.kind == "expand":
        reason = f"expanded: {plan.change(wanted.names)}"
    elif plan.kind == "replace":
        changed = plan.change(wanted.names)
        reason = SettingsText("names replaced, as {name} asked: " + changed, ("name",))
    else:
        reason = why or "requested"
    if plan.kind in ("expand", "replace"):
        manager._say(name, reason)
    outcome = await manager.issue(wanted, precondition=_still(plan))
    return replace(outcome, reason=reason) if outcome.reason == "requested" else outcome


async def _keep_if_not_due(
    manager: Manager, wanted: LineageSettings, plan: IssuePlan
) -> Outcome | str:
    """The lineage holds these names: why it must be reissued (due, or a change the
    certificate does not satisfy), else save new settings and say it is covered."""
    stored, state = await manager.load(plan.lineage)
    changes = settings_changes(wanted, stored)
    if state.version is None:
        return "no certificate yet"
    reissue = [c for c in changes if c in REISSUE_ON]
    if reissue:
        return f"{', '.join(reissue)} changed"
    with contextlib.suppress(CertherdError):  # no renewal info: decide without it
        state = await manager.refresh_renewal_info(stored, state)
    # Asked for by a person: earlier failures do not delay it (no back-off).
    decision = await manager.decide(stored, replace(state, failures=0), force=False)
    if decision.due:
        return decision.reason
    when = decision.next_check or state.next_check
    reason = f"already covered by version {state.version}"
    if when is not None:
        reason += f"; renewal from {when.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"
    if changes:
        async with holding(manager.storage, wanted.name):
            _still(plan)(await _stored(manager, wanted.name))
            await wanted.save(manager.storage)
        reason += f"; new settings saved for renewals ({', '.join(changes)})"
    reason = SettingsText(reason + "; {force} reissues now", ("force",))
    return Outcome(wanted.name, "not-due", reason, state.version, state.not_after)


async def earlier_wildcard_lineage(storage: Storage, lineage: str, names: Sequence[str]) -> str:
    """``lineage``, or for a wildcard-first ``_.example.com`` that does not exist yet the
    ``example.com`` an earlier certherd named it, if that one holds exactly ``names``:
    certherd.toml files written before keep their lineage instead of gaining a twin."""
    if not lineage.startswith("_."):
        return lineage
    try:
        if await has_value(storage, renewal_settings(lineage)):
            return lineage
        earlier = await LineageSettings.load(storage, lineage[2:])
    except CertherdError:  # not there, damaged or unreadable: the new name, as before
        return lineage
    return earlier.name if name_set(earlier.names) == name_set(names) else lineage
