"""``certherd schedule install``: the systemd timer and the cron.d entry, written under a root.

``--root`` (hidden) puts ``/etc/...`` under a test folder. The written command is run
too: a timer that names a program that cannot be executed fails only at 3 a.m.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from e2e_runner import Certherd


def _exec_start(service: str) -> list[str]:
    [line] = [line for line in service.splitlines() if line.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))


def _cron_command(cron: str) -> list[str]:
    [line] = [line for line in cron.splitlines() if line and line[0].isdigit()]
    minute, hours, day, month, weekday, user, *command = shlex.split(line)
    first, second = (int(hour) for hour in hours.split(","))
    assert 0 <= int(minute) < 60
    assert second == first + 12  # twice a day, 12 hours apart
    assert (day, month, weekday, user) == ("*", "*", "*", "root")
    return command


def _runs(command: list[str], certherd: Certherd) -> None:
    """The scheduled command works as written: ``PROGRAM --config-dir DIR -q renew``."""
    program = command[0]
    assert os.path.isabs(program)
    assert os.access(program, os.X_OK), f"{program} is not executable"
    assert command[1:] == ["--config-dir", str(certherd.config_dir.resolve()), "-q", "renew"]
    done = subprocess.run(
        command,
        env=certherd.environment(None),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")  # nothing due, -q


def test_systemd_units_are_written_and_listed(certherd: Certherd, tmp_path: Path) -> None:
    root = tmp_path / "root"
    document = certherd("--json", "schedule", "install", "--systemd", "--root", str(root)).json()
    units = root / "etc" / "systemd" / "system"
    service, timer = units / "certherd-renew.service", units / "certherd-renew.timer"
    assert document == {"kind": "systemd", "files": [str(service), str(timer)]}
    text = service.read_text()
    assert "Type=oneshot" in text
    assert "--config-dir" in text
    assert str(certherd.config_dir.resolve()) in text
    command = _exec_start(text)
    assert Path(command[0]).name == "certherd"
    _runs(command, certherd)
    timer_text = timer.read_text()
    assert "OnCalendar=*-*-* 00,12:00:00" in timer_text
    assert "RandomizedDelaySec=" in timer_text
    assert "WantedBy=timers.target" in timer_text

    # Again: the same bytes, and a human summary with the next step.
    before = {path: path.read_bytes() for path in (service, timer)}
    human = certherd("schedule", "install", "--systemd", "--root", str(root))
    assert {path: path.read_bytes() for path in (service, timer)} == before
    assert f"wrote {service}" in human.stdout  # the result; the next step is advice
    assert "systemctl enable --now certherd-renew.timer" in human.stderr


def test_cron_entry_is_written_and_listed(certherd: Certherd, tmp_path: Path) -> None:
    root = tmp_path / "root"
    document = certherd("--json", "schedule", "install", "--cron", "--root", str(root)).json()
    cron = root / "etc" / "cron.d" / "certherd"
    assert document == {"kind": "cron", "files": [str(cron)]}
    assert (cron.stat().st_mode & 0o777) == 0o644  # cron ignores group/other-writable files
    text = cron.read_text()
    assert "--config-dir" in text
    assert "PATH=" in text
    command = _cron_command(text)
    assert Path(command[0]).name == "certherd"
    _runs(command, certherd)
    assert not (root / "etc" / "systemd").exists()


def test_the_program_is_runnable_when_certherd_is_not_on_path(
    certherd: Certherd, tmp_path: Path
) -> None:
    """Run as ``python -m certherd.cli.main`` with no ``certherd`` on PATH, ``argv[0]``
    is main.py (not executable): the schedule must name the installed script instead."""
    root = tmp_path / "root"
    certherd(
        "--json",
        "schedule",
        "install",
        "--cron",
        "--root",
        str(root),
        env={"PATH": "/usr/bin:/bin"},
    )
    command = _cron_command((root / "etc" / "cron.d" / "certherd").read_text())
    assert command[0] == str(Path(sys.executable).parent / "certherd")
    _runs(command, certherd)


def test_without_a_kind_the_root_decides(certherd: Certherd, tmp_path: Path) -> None:
    """sd_booted(3): systemd when ``/run/systemd/system`` exists, else cron."""
    plain = tmp_path / "plain"
    assert certherd("--json", "schedule", "install", "--root", str(plain)).json()["kind"] == "cron"
    booted = tmp_path / "booted"
    (booted / "run" / "systemd" / "system").mkdir(parents=True)
    document = certherd("--json", "schedule", "install", "--root", str(booted)).json()
    assert document["kind"] == "systemd"
    assert all(Path(p).is_file() for p in document["files"])
