"""``certherd schedule install``: a systemd timer or cron entry running renew twice a day."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import click

from certherd.cli.common import Context, pass_context

__all__ = ["schedule"]


def _program() -> str:
    """The certherd program a timer can run: on PATH, else the script installed next to
    this Python (``python -m certherd.cli.main`` has no runnable ``argv[0]``: main.py is
    neither executable nor has a ``#!`` line), else ``argv[0]`` if it can be run."""
    from certherd.errors import ConfigError

    beside_python = Path(sys.executable).parent / "certherd"
    for candidate in (shutil.which("certherd"), str(beside_python), sys.argv[0]):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return str(Path(candidate).absolute())
    raise ConfigError(
        "cannot find the certherd program for the schedule: install certherd so that "
        "`certherd` is on PATH (pip install certherd)"
    )


@click.group("schedule")
def schedule() -> None:
    """Install the twice-daily `renew` schedule."""


@schedule.command("install")
@click.option("--systemd", "kind", flag_value="systemd", help="A systemd service and timer.")
@click.option("--cron", "kind", flag_value="cron", help="An /etc/cron.d entry.")
@click.option("--user", is_flag=True, help="A systemd user timer (no root needed).")
@click.option(
    "--root", type=click.Path(file_okay=False, path_type=Path), default=Path("/"), hidden=True
)
@pass_context
def install(ctx: Context, kind: str | None, user: bool, root: Path) -> None:
    """Install the schedule (systemd when it runs this machine, else cron)."""
    from certherd.install.schedule import detect_schedule_kind, install_schedule

    chosen = kind or detect_schedule_kind(root)
    program = _program()
    written = install_schedule(
        chosen,  # type: ignore[arg-type]
        certherd_path=program,
        config_dir=str(ctx.config_dir.resolve()),
        root=root,
        user=user,
    )
    hint = (
        "run `systemctl daemon-reload && systemctl enable --now certherd-renew.timer`"
        if chosen == "systemd"
        else "cron picks it up by itself"
    )

    def human() -> None:
        for path in written:
            ctx.result(f"wrote {path}")
        ctx.say(hint)

    ctx.emit({"kind": chosen, "files": [str(p) for p in written]}, human)
