"""Turning outcomes and lineages into JSON documents and human tables."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from certherd.cli.common import Context
from certherd.manager.lineage import LineageSettings, LineageState
from certherd.manager.outcome import Outcome

__all__ = ["lineage_document", "outcome_document", "print_lineages", "print_outcomes"]


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat()


def outcome_document(outcomes: Sequence[Outcome], config_dir: Path) -> dict[str, Any]:
    return {
        "results": [
            {
                "lineage": o.lineage,
                "action": o.action,
                "reason": o.reason,
                "version": o.version,
                "not_after": _iso(o.not_after),
                "error": o.error,
                "hook_errors": list(o.hook_errors),
                "live_dir": str(config_dir / "live" / o.lineage) if o.version else None,
            }
            for o in outcomes
        ],
        "failed": sum(1 for o in outcomes if o.failed),
    }


SUMMARY_OVER = 30


def print_outcomes(ctx: Context, outcomes: Sequence[Outcome]) -> None:
    """A table of what happened; with many lineages, "not due" ones become one line."""
    from rich.table import Table

    quiet_ones = [o for o in outcomes if o.action == "not-due"]
    if len(outcomes) > SUMMARY_OVER and quiet_ones:
        outcomes = [o for o in outcomes if o.action != "not-due"]
        ctx.say(f"{len(quiet_ones)} lineage(s) not due")
        if not outcomes:
            return

    table = Table(show_header=True, header_style="bold")
    for column in ("lineage", "result", "why", "expires"):
        table.add_column(column)
    for o in outcomes:
        style = {"failed": "red", "renewed": "green", "issued": "green"}.get(o.action, "")
        why = o.error if o.error else o.reason
        if o.hook_errors:
            why += " | hook failed: " + "; ".join(o.hook_errors)
        expires = o.not_after.strftime("%Y-%m-%d %H:%M") if o.not_after else "-"
        table.add_row(o.lineage, f"[{style}]{o.action}[/]" if style else o.action, why, expires)
    ctx.console().print(table)


def lineage_document(
    settings: LineageSettings, state: LineageState, config_dir: Path
) -> dict[str, Any]:
    live = config_dir / "live" / settings.name
    return {
        "name": settings.name,
        "names": list(settings.names),
        "ca": settings.directory_url,
        "key_type": settings.key_type,
        "profile": settings.profile,
        "solvers": [s.to_json() for s in settings.solvers],
        "version": state.version,
        "serial": state.serial,
        "issuer": state.issuer,
        "not_before": _iso(state.not_before),
        "not_after": _iso(state.not_after),
        "next_renewal": _iso(state.ari_pick or state.next_check),
        "ari_window": {"start": _iso(state.ari_start), "end": _iso(state.ari_end)}
        if state.ari_start
        else None,
        "failures": state.failures,
        "last_error": state.last_error,
        "last_success": _iso(state.last_success),
        "files": {
            f: str(live / f) for f in ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem")
        }
        if state.version
        else {},
    }


def print_lineages(ctx: Context, documents: Sequence[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(show_header=True, header_style="bold")
    for column in ("lineage", "names", "expires", "next renewal", "last error"):
        table.add_column(column)
    for d in documents:
        table.add_row(
            d["name"],
            ", ".join(d["names"]),
            (d["not_after"] or "-")[:16].replace("T", " "),
            (d["next_renewal"] or "-")[:16].replace("T", " "),
            f"[red]{d['last_error']}[/]" if d["last_error"] else "",
        )
    ctx.console().print(table)
