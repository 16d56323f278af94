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
from typing import Any

import click

from certherd.cli.common import Context
from certherd.errors import safe_text
from certherd.manager.outcome import Outcome
from certherd.manager.service import Manager

__all__ = ["Progress", "TrackedManager", "tracked_manager"]


class Progress:
    """Counts and current steps of a run over ``total`` certificates."""

    def __init__(self, ctx: Context, total: int) -> None:
        self.ctx = ctx
        self.total = total
        self.done = 0
        self.failed = 0
        self.working: dict[str, str] = {}  # lineage -> its current step
        self.failures: list[tuple[str, str]] = []
        self.enabled = not (ctx.quiet or ctx.json) and total > 0
        self.live_display = self.enabled and sys.stderr.isatty()
        self._live: Any = None
        self._started = time.monotonic()

    @property
    def left(self) -> int:
        return self.total - self.done - self.failed

    def __enter__(self) -> Progress:
        if self.live_display:
            from rich.console import Console
            from rich.live import Live

            console = Console(stderr=True, highlight=False)
            self._live = Live(
                get_renderable=self._render, console=console, transient=True, refresh_per_second=8
            )
            self._live.__enter__()
        return self

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


class TrackedManager(Manager):
    """A Manager that tells a :class:`Progress` when each certificate starts and ends."""

    progress: Progress | None = None

    async def renew_one(self, name: str, *, force: bool = False, dry_run: bool = False) -> Outcome:
        if self.progress is not None:
            self.progress.start(name)
        outcome = await super().renew_one(name, force=force, dry_run=dry_run)
        if self.progress is not None:
            self.progress.finish(name, outcome.action, outcome.error)
        return outcome

    async def issue(self, settings: Any, ca: Any, *, precondition: Any = None) -> Outcome:
        if self.progress is None:
            return await super().issue(settings, ca, precondition=precondition)
        self.progress.start(settings.name)
        try:
            outcome = await super().issue(settings, ca, precondition=precondition)
        except Exception as exc:
            self.progress.finish(settings.name, "failed", safe_text(exc, 300))
            raise
        self.progress.finish(settings.name, outcome.action, outcome.error)
        return outcome


def tracked_manager(
    ctx: Context, storage: Any, concurrency: int, total: int
) -> tuple[TrackedManager, Progress]:
    """A manager for ``total`` certificates whose steps and ends feed a new Progress."""
    progress = Progress(ctx, total)
    manager = TrackedManager(
        storage,
        solvers=ctx.solver_pool(),
        concurrency=concurrency,
        on_event=progress.step,
    )
    manager.progress = progress
    return manager, progress
