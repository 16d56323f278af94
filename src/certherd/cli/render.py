"""Turning outcomes and lineages into JSON documents and human tables."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

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

    quiet_ones = [o for o in outcomes if o.action == "not-due"]
    if len(outcomes) > SUMMARY_OVER and quiet_ones:
        outcomes = [o for o in outcomes if o.action != "not-due"]
        ctx.result(f"{len(quiet_ones)} lineage(s) not due")
        if not outcomes:
            return

    rows = []
    for o in outcomes:
        why = o.error if o.error else o.reason
        if o.hook_errors:
            why += " | hook failed: " + "; ".join(o.hook_errors)
        expires = o.not_after.strftime("%Y-%m-%d %H:%M") if o.not_after else "-"
        rows.append((o.lineage, o.action, why, expires))
    print_table(ctx, ("lineage", "result", "why", "expires"), rows, status_column=1)


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
        "deploy_owed": state.deploy_owed,
        "last_success": _iso(state.last_success),
        "files": {
            f: str(live / f) for f in ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem")
        }
        if state.version
        else {},
    }


def print_lineages(ctx: Context, documents: Sequence[dict[str, Any]]) -> None:
    rows = [
        (
            d["name"],
            ", ".join(d["names"]),
            (d["not_after"] or "-")[:16].replace("T", " "),
            (d["next_renewal"] or "-")[:16].replace("T", " "),
            d["last_error"]
            or ("deploy hooks owed: next renew runs them" if d["deploy_owed"] else ""),
        )
        for d in documents
    ]
    print_table(ctx, ("lineage", "names", "expires", "next renewal", "last error"), rows)


STYLES = {
    "failed": "red",
    "renewed": "green",
    "issued": "green",
    "deployed": "green",
    "imported": "green",
    "would-import": "green",
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
