"""Progress of multi-certificate work (``apply``, ``renew``): done / failed / left.

On a terminal (stderr is a TTY) a live ``rich`` display shows the counts and, per
certificate at work, its current step; ``rich`` is imported only then. Otherwise one
plain line per certificate as it finishes. Nothing with ``-q`` or ``--json`` (stdout
stays the one document; errors still reach stderr). All of it on stderr: stdout holds
the result table.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import click

from certherd.cli.common import Context
from certherd.errors import safe_text

if TYPE_CHECKING:
    from certherd.app import Event

__all__ = ["Progress"]


class Progress:
    """Counts and current steps of a run, fed by the entry point's events (``on_event``):
    ``planned`` says how many certificates; the live display starts then."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.total = 0
        self.done = 0
        self.failed = 0
        self.working: dict[str, str] = {}  # lineage -> its current step
        self.failures: list[tuple[str, str]] = []
        self.enabled = False
        self.live_display = False
        self._live: Any = None
        self._started = time.monotonic()

    def __call__(self, event: Event) -> None:
        """One event of the entry point (:class:`certherd.app.Event`)."""
        if event.kind == "planned":
            self.plan(event.total)
        elif event.kind == "started":
            self.start(event.lineage)
        elif event.kind == "step":
            self.step(event.lineage, event.text)
        elif event.kind == "finished" and event.outcome is not None:
            self.finish(event.lineage, event.outcome.action, event.outcome.error)
        else:
            self.ctx.tell(event)  # propagation rounds, warnings

    @property
    def left(self) -> int:
        return self.total - self.done - self.failed

    def __enter__(self) -> Progress:
        return self

    def plan(self, total: int) -> None:
        """A run over ``total`` certificates starts: on a terminal, the live display."""
        self.total = total
        self._started = time.monotonic()
        self.enabled = not (self.ctx.quiet or self.ctx.json) and total > 0
        self.live_display = self.enabled and sys.stderr.isatty()
        if self.live_display and self._live is None:
            from rich.console import Console
            from rich.live import Live

            console = Console(stderr=True, highlight=False)
            self._live = Live(
                get_renderable=self._render, console=console, transient=True, refresh_per_second=8
            )
            self._live.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    # -- what the manager reports ------------------------------------------------------

    def start(self, lineage: str) -> None:
        self.working[lineage] = "starting"

    def step(self, lineage: str, text: str) -> None:
        """A step of one certificate (the manager's events): shown live, or with -v."""
        if self.live_display:
            if lineage in self.working:
                self.working[lineage] = text
        elif self.ctx.verbose:
            self.ctx.say(f"{lineage}: {text}")

    def finish(self, lineage: str, action: str, error: str | None = None) -> None:
        self.working.pop(lineage, None)
        if error is not None:
            error = self.ctx.words(error, lineage=lineage)  # its settings, as the user sets them
        if error is not None or action == "failed":
            self.failed += 1
            self.failures.append((lineage, error or "failed"))
        else:
            self.done += 1
        if self.enabled and not self.live_display:
            finished = self.done + self.failed
            what = f"failed: {safe_text(error, 300)}" if error else action
            click.echo(
                f"certherd: [{finished}/{self.total}] {safe_text(lineage)}: {what} "
                f"(done {self.done}, failed {self.failed}, left {self.left})",
                err=True,
            )

    # -- the live display --------------------------------------------------------------

    def _render(self) -> Any:
        from rich.markup import escape
        from rich.table import Table

        elapsed = time.monotonic() - self._started
        table = Table.grid(padding=(0, 2))
        table.add_column()
        table.add_column()
        table.add_row(
            f"[bold]{self.done + self.failed}/{self.total}[/]",
            f"[green]done {self.done}[/]  [red]failed {self.failed}[/]  left {self.left}"
            f"  ({elapsed:.0f} s)",
        )
        for lineage, step in list(self.working.items())[:20]:
            table.add_row(escape(safe_text(lineage)), escape(safe_text(step, 120)))
        if len(self.working) > 20:
            table.add_row("...", f"{len(self.working) - 20} more at work")
        for lineage, error in self.failures[-5:]:
            table.add_row(
                f"[red]{escape(safe_text(lineage))}[/]", escape(f"failed: {safe_text(error, 120)}")
            )
        return table
