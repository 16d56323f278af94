"""Turning outcomes and lineages into JSON documents and human tables."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from certherd.cli.common import Context
from certherd.manager.lineage import LineageState
from certherd.manager.outcome import Outcome
from certherd.names import describe_name
from certherd.settings import LineageSettings
from certherd.storage.base import Lease
from certherd.storage.fleet import ScheduleEntry

__all__ = [
    "damaged_document",
    "human_time",
    "lineage_document",
    "outcome_document",
    "print_lineages",
    "print_outcomes",
    "show_rows",
]


def _iso(value: dt.datetime | None) -> str | None:
    """ISO 8601 with its offset (``+00:00``): what --json carries."""
    return None if value is None else value.astimezone(dt.UTC).isoformat()


def human_time(value: dt.datetime | str | None, *, seconds: bool = False) -> str:
    """A time for people, always with its zone: ``2031-12-03 22:04 UTC``."""
    if value is None:
        return "-"
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:  # stored times are UTC; never shown without saying so
        value = value.replace(tzinfo=dt.UTC)
    shown = value.astimezone(dt.UTC)
    return shown.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


def _expiry(not_after: dt.datetime | str | None, now: dt.datetime, *, seconds: bool = False) -> str:
    if not_after is None:
        return "-"
    moment = dt.datetime.fromisoformat(not_after) if isinstance(not_after, str) else not_after
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    text = human_time(moment, seconds=seconds)
    return f"EXPIRED {text}" if moment <= now else text


def outcome_document(
    outcomes: Sequence[Outcome], config_dir: Path | None, words: Callable[..., str] | None = None
) -> dict[str, Any]:
    """The results as one JSON document (``config_dir``: where live files are on this
    host, None for none: ``live_dir`` is then null); ``words`` names the settings an error or a
    reason names as the command's user sets them (:meth:`Context.words`, given the text
    and the ``lineage``)."""
    if words is None:
        words = _as_is
    return {
        "results": [
            {
                "lineage": o.lineage,
                "action": o.action,
                "reason": words(o.reason, lineage=o.lineage),
                "version": o.version,
                "not_after": _iso(o.not_after),
                "error": words(o.error, lineage=o.lineage) if o.error else o.error,
                "hook_errors": list(o.hook_errors),
                "live_dir": str(config_dir / "live" / o.lineage)
                if o.version and config_dir is not None
                else None,
            }
            for o in outcomes
        ],
        "failed": sum(1 for o in outcomes if o.failed),
    }


def _as_is(text: str, *, lineage: str | None = None) -> str:
    return text


SUMMARY_OVER = 30


def print_outcomes(ctx: Context, outcomes: Sequence[Outcome]) -> None:
    """A table of what happened; with many lineages, "not due" ones become one line."""
    if not outcomes:  # no table of headers alone: say why there is nothing (on stderr)
        ctx.say(f"nothing to do: no lineages in {ctx.where}")
        return

    for action, words in (("not-due", "not due"), ("stored", "stored for the fleet's nodes")):
        quiet_ones = [o for o in outcomes if o.action == action]
        if len(outcomes) > SUMMARY_OVER and quiet_ones:
            outcomes = [o for o in outcomes if o.action != action]
            ctx.result(f"{len(quiet_ones)} lineage(s) {words}")
    if not outcomes:
        return

    rows = []
    for o in outcomes:
        why = ctx.words(o.error if o.error else o.reason, lineage=o.lineage)
        if o.hook_errors:
            why += " | hook failed: " + "; ".join(o.hook_errors)
        expires = _expiry(o.not_after, dt.datetime.now(dt.UTC))
        rows.append((o.lineage, o.action, why, expires))
    print_table(ctx, ("lineage", "result", "why", "expires"), rows, status_column=1)


def lineage_document(
    settings: LineageSettings,
    state: LineageState,
    config_dir: Path | None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """``config_dir``: where live files are on this host (None: ``files`` is empty)."""
    live = config_dir / "live" / settings.name if config_dir is not None else None
    now = now or dt.datetime.now(dt.UTC)
    return {
        "name": settings.name,
        "names": list(settings.names),
        "ca": settings.directory_url,
        "key_type": settings.key_type,
        "profile": settings.profile,
        "solvers": [s.to_json() for s in settings.solvers],
        "account": settings.account,
        "email": settings.email,
        "agree_tos": settings.agree_tos,
        "eab": settings.eab.to_json() if settings.eab is not None else None,  # key redacted
        "cas": [ca.to_json() for ca in settings.cas],  # in the order tried; keys redacted
        "issued_by": (state.issued_by or settings.directory_url) if state.version else None,
        "notify": [target.to_json() for target in settings.notify],  # references, or ***
        "notify_expiry_days": settings.notify_expiry_days,
        "notify_timeout": settings.notify_timeout,
        "installer": settings.installer.to_json() if settings.installer else None,
        "version": state.version,
        "serial": state.serial,
        "issuer": state.issuer,
        "not_before": _iso(state.not_before),
        "not_after": _iso(state.not_after),
        "expired": state.not_after is not None and state.not_after <= now,
        "next_renewal": _iso(state.ari_pick or state.next_check),
        "ari_window": {"start": _iso(state.ari_start), "end": _iso(state.ari_end)}
        if state.ari_start
        else None,
        "failures": state.failures,
        "last_error": state.last_error,
        "deploy_owed": state.deploy_owed,
        "revoked": state.revoked_at is not None,
        "revoked_at": _iso(state.revoked_at),
        "revocation_reason": state.revocation_reason,
        "waiting_on_ca_until": _iso(state.order_retry_at),
        "last_success": _iso(state.last_success),
        "damaged": None,
        "files": {
            f: str(live / f) for f in ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem")
        }
        if state.version and live is not None
        else {},
    }


def _remark(document: dict[str, Any]) -> str:
    """What a person must know first about a lineage: revoked, last error, owed hooks."""
    notes = []
    if document.get("damaged"):
        notes.append(f"damaged: {document['damaged']}")
    if document.get("revoked"):
        when = human_time(document.get("revoked_at"))
        notes.append(f"REVOKED {when}: the next renew replaces it")
    if document.get("waiting_on_ca_until"):
        notes.append(f"waiting on the CA until {human_time(document['waiting_on_ca_until'])}")
    if document["last_error"]:
        notes.append(document["last_error"])
    elif document["deploy_owed"]:
        notes.append("deploy hooks owed: next renew runs them")
    return "; ".join(notes)


def schedule_document(entry: ScheduleEntry | None) -> dict[str, Any]:
    """A lineage in a fleet's schedule: when it was last obtained and by which node (the
    lease holder that made its live version live), and when a node looks at it next."""
    from certherd.storage.fleet import node_of

    if entry is None:
        return {"obtained": None, "obtained_by": None, "scheduled": None}
    return {
        "obtained": _iso(entry.obtained),
        "obtained_by": node_of(entry.obtained_by),
        "scheduled": _iso(entry.due),
    }


def lease_document(lease: Lease | None) -> dict[str, Any] | None:
    """Who holds a lineage's lease now (a node working on it), for a shared storage."""
    if lease is None:
        return None
    expires = dt.datetime.fromtimestamp(lease.expires, dt.UTC)
    return {"holder": lease.holder, "token": lease.token, "expires": _iso(expires)}


def damaged_document(name: str, reason: str, config_dir: Path | None) -> dict[str, Any]:
    """The row of a lineage whose stored files cannot be read: every field empty, and
    ``damaged`` saying what is wrong and how to fix it."""
    return {
        "name": name,
        "names": [],
        "ca": None,
        "key_type": None,
        "profile": None,
        "solvers": [],
        "account": None,
        "email": None,
        "agree_tos": False,
        "eab": None,
        "cas": [],
        "issued_by": None,
        "notify": [],
        "notify_expiry_days": None,
        "notify_timeout": None,
        "installer": None,
        "version": None,
        "serial": None,
        "issuer": None,
        "not_before": None,
        "not_after": None,
        "expired": False,
        "next_renewal": None,
        "ari_window": None,
        "failures": None,
        "last_error": None,
        "deploy_owed": False,
        "revoked": False,
        "revoked_at": None,
        "revocation_reason": None,
        "waiting_on_ca_until": None,
        "last_success": None,
        "files": {},
        "damaged": reason,
    }


def print_lineages(ctx: Context, documents: Sequence[dict[str, Any]]) -> None:
    now = dt.datetime.now(dt.UTC)
    rows: list[tuple[Any, ...]] = [
        (
            d["name"],
            ", ".join(describe_name(str(n)) for n in d["names"]),  # an IDN in both forms
            _expiry(d["not_after"], now),
            human_time(d["next_renewal"]),
            _remark(d),
        )
        for d in documents
    ]
    headers: tuple[str, ...] = ("lineage", "names", "expires", "next renewal", "last error")
    if any("obtained_by" in d for d in documents):  # a fleet's storage: who did what
        headers += ("obtained by", "held by")
        rows = [
            (*row, _text(d.get("obtained_by")), _holder_node(d.get("lease")))
            for row, d in zip(rows, documents, strict=True)
        ]
    print_table(ctx, headers, rows)


def _holder_node(lease: Any) -> str:
    """The node working on a lineage now (the node part of its lease holder), or "-"."""
    from certherd.storage.fleet import node_of

    if not isinstance(lease, dict):
        return "-"
    return node_of(str(lease.get("holder") or "")) or "-"


_ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)?$")


def _text(value: Any) -> str:
    """One value of ``show`` as text: times with their zone, yes/no, lists joined,
    mappings as ``key=value``; never a Python repr."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return human_time(value, seconds=True) if _ISO_TIME.match(value) else value
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) or "-"
    return str(value)


def _solver_text(solver: dict[str, Any]) -> str:
    options = ", ".join(f"{k}={_text(v)}" for k, v in dict(solver.get("options", {})).items())
    names = solver.get("names") or []
    text = str(solver.get("kind", "?")) + (f" ({options})" if options else "")
    return text + (f" for {', '.join(map(str, names))}" if names else "")


def show_rows(document: dict[str, Any], now: dt.datetime | None = None) -> list[tuple[str, str]]:
    """``show``'s rows: one per setting; a list of solvers or files one row per item."""
    now = now or dt.datetime.now(dt.UTC)
    rows: list[tuple[str, str]] = []

    def several(key: str, values: Sequence[str]) -> None:
        for index, value in enumerate(values or ["-"]):
            rows.append((key if index == 0 else "", value))

    for key, value in document.items():
        label = key.replace("_", " ")
        if key == "damaged" and value is None:
            continue  # said only of a damaged lineage
        if key == "not_after":
            rows.append((label, _expiry(value, now, seconds=True)))
        elif key == "names" and isinstance(value, list):
            several(label, [describe_name(str(n)) for n in value])  # an IDN in both forms
        elif key == "solvers" and isinstance(value, list):
            several(label, [_solver_text(s) if isinstance(s, dict) else _text(s) for s in value])
        elif key == "files" and isinstance(value, dict):
            several(label, [f"{name}: {path}" for name, path in value.items()])
        elif key == "eab" and isinstance(value, dict):
            rows.append((label, _eab_text(value)))
        elif key == "cas" and isinstance(value, list):
            issuer = document.get("issued_by")
            several("CAs in order", [_ca_text(ca, issuer) for ca in value if isinstance(ca, dict)])
        elif key == "notify" and isinstance(value, list):
            several(label, [_reference_text(t) for t in value if isinstance(t, dict)])
        elif key == "installer" and isinstance(value, dict):
            options = value.get("options") or {}
            shown = ", ".join(f"{k} {_text(v)}" for k, v in sorted(options.items()))
            rows.append((label, f"{_text(value.get('kind'))} ({shown})"))
        elif key == "lease":
            if isinstance(value, dict):
                held = f"{value['holder']} (token {value['token']}) until {value['expires']}"
                rows.append((label, held))
            else:
                rows.append((label, "none"))
        elif key == "ari_window" and isinstance(value, dict):
            start, end = value.get("start"), value.get("end")
            rows.append((label, f"{_text(start)} to {_text(end)}"))
        else:
            rows.append((label, _text(value)))
    return rows


def _ca_text(ca: dict[str, Any], issuer: Any) -> str:
    """One CA of a lineage's list as ``show`` says it: its directory, the account there
    (when not the default) and its EAB key id; marked if it issued the live version."""
    text = str(ca.get("directory_url"))
    details = []
    if ca.get("account") not in (None, "default"):
        details.append(f"account {ca['account']}")
    if isinstance(ca.get("eab"), dict):
        details.append(f"EAB key id {_text(ca['eab'].get('kid'))}")
    if ca.get("ca_bundle"):
        details.append(f"roots {ca['ca_bundle']}")
    text += f" ({', '.join(details)})" if details else ""
    return text + (" <- issued the live certificate" if ca.get("directory_url") == issuer else "")


def _reference_text(reference: dict[str, Any]) -> str:
    """Where a secret comes from, as ``show`` says it (never the secret)."""
    from certherd.challenges.spec import SOURCES, SecretRef

    for source in SOURCES:
        if source != "value" and isinstance(reference.get(source), str):
            return "from " + SecretRef(source, reference[source]).describe()
    return "from " + SecretRef("value").describe()


def _eab_text(eab: dict[str, Any]) -> str:
    """External Account Binding as ``show`` says it: the key id and where the key comes
    from (never the key)."""
    from certherd.challenges.spec import SOURCES, SecretRef

    reference = eab.get("hmac_key") or {}
    ref = SecretRef("value")
    for source in SOURCES:
        if source != "value" and isinstance(reference.get(source), str):
            ref = SecretRef(source, reference[source])
    described = ref.describe()
    return f"key id {_text(eab.get('kid'))}, HMAC key from {described}"


STYLES = {
    "failed": "red",
    "renewed": "green",
    "issued": "green",
    "deployed": "green",
    "imported": "green",
    "would-import": "green",
    "waiting": "yellow",
}


def print_table(
    ctx: Context,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    status_column: int | None = None,
) -> None:
    """A rich table on a terminal; plain aligned text otherwise (pipes, cron, logs).

    Every cell is escaped: names and errors can carry CA text, which must never be
    taken as rich markup or terminal control sequences.
    """
    from certherd.errors import safe_text

    cells = [[safe_text(cell, 2000) for cell in row] for row in rows]
    if not ctx.interactive:
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
        for row in [list(columns), *cells]:
            line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            click.echo(line.rstrip())
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_header=True, header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in cells:
        shown = [escape(cell) for cell in row]
        if status_column is not None and row[status_column] in STYLES:
            style = STYLES[row[status_column]]
            shown[status_column] = f"[{style}]{shown[status_column]}[/]"
        table.add_row(*shown)
    ctx.console().print(table)
