"""``certherd check``: what would stop the next renewal, from this host (a doctor)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from certherd.cli.common import Context, exit_for, pass_context, run_async
from certherd.cli.completion import complete_lineages

if TYPE_CHECKING:
    from certherd.app.check import Finding

__all__ = ["check"]

MARKS = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


@click.command("check")
@click.argument("names", nargs=-1, metavar="[NAME]...", shell_complete=complete_lineages)
@click.option(
    "--http-port",
    type=click.IntRange(1, 65535),
    default=80,
    show_default=True,
    help="The port the CA fetches http-01 answers from (a test CA may use another).",
)
@pass_context
def check(ctx: Context, names: tuple[str, ...], http_port: int) -> None:
    """Check, from this host, what would stop the next renewal of each lineage (all,
    or those named): settings and secrets, the CA and the clock, the account, each
    name's solver (an http-01 probe fetched over HTTP, the DNS provider's credentials),
    disk space. One line each; exit 1 if any would fail."""
    findings = run_async(_check(ctx, names, http_port))
    exit_for(any(f.status == "fail" for f in findings))


async def _check(ctx: Context, names: tuple[str, ...], http_port: int) -> list[Finding]:
    async with ctx.certherd() as certherd:
        findings = await certherd.check(names, http_port=http_port)

    def document() -> dict[str, Any]:
        items = []
        for finding in findings:
            item = finding.to_json()
            item["text"] = ctx.words(finding.text, lineage=finding.lineage or None)
            items.append(item)
        return {"ok": not any(f.status == "fail" for f in findings), "checks": items}

    def human() -> None:
        width = max((len(f.lineage) for f in findings), default=0)
        for finding in findings:
            text = ctx.words(finding.text, lineage=finding.lineage or None)
            where = (finding.lineage or "(host)").ljust(max(width, 6))
            ctx.result(f"{where}  {MARKS[finding.status]:<4}  {finding.check}: {text}")

    ctx.emit(document, human)
    if ctx.quiet or ctx.json:  # cron mails stderr: the failures still show
        for finding in findings:
            if finding.status == "fail":
                text = ctx.words(finding.text, lineage=finding.lineage or None)
                click.echo(f"certherd: {finding.lineage}: {finding.check}: {text}", err=True)
    return findings
