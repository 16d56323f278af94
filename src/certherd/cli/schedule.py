"""``certherd schedule install``: a systemd timer or cron entry running renew twice a day."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click

from certherd.cli.common import Context, pass_context

__all__ = ["schedule"]


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
    from certherd.manager.schedule import detect_schedule_kind, install_schedule

    chosen = kind or detect_schedule_kind(root)
    program = shutil.which("certherd") or str(Path(sys.argv[0]).resolve())
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
    ctx.emit(
        {"kind": chosen, "files": [str(p) for p in written]},
        lambda: ctx.say("\n".join(f"wrote {p}" for p in written) + f"\n{hint}"),
    )
