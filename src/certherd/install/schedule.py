"""Installing the twice-daily ``certherd renew`` run: a systemd timer or a cron.d file.

Let's Encrypt asks clients to check twice a day at a random time, so that a fleet does
not hit the CA on the hour; certherd writes either

* ``certherd-renew.service`` + ``certherd-renew.timer`` (``OnCalendar`` at 00:00 and 12:00
  with ``RandomizedDelaySec=3600`` and ``Persistent=true``) into
  ``/etc/systemd/system`` (or ``~/.config/systemd/user``), or
* ``/etc/cron.d/certherd`` with two runs a day, 12 hours apart, at an hour and minute
  drawn once from the host name (the same host always gets the same time, different hosts
  spread out).

Nothing is enabled or printed here: the caller runs ``systemctl daemon-reload`` and
``systemctl enable --now certherd-renew.timer`` (with ``--user`` for user units) and tells
the user. Every file is written atomically.
"""

from __future__ import annotations

import os
import random
import re
import shlex
import socket
from pathlib import Path
from typing import Final, Literal

from certherd.crypto.files import atomic_write
from certherd.errors import ConfigError, safe_text

__all__ = [
    "CRON_FILE",
    "SERVICE_UNIT",
    "TIMER_UNIT",
    "ScheduleKind",
    "cron_time",
    "detect_schedule_kind",
    "install_schedule",
    "renew_command",
]

ScheduleKind = Literal["systemd", "cron"]

SERVICE_UNIT: Final = "certherd-renew.service"
TIMER_UNIT: Final = "certherd-renew.timer"
CRON_FILE: Final = "certherd"
"""The file name in ``/etc/cron.d``: run-parts skips names with dots, so it has none."""

CRON_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_SYSTEMD_PLAIN = re.compile(r"^[A-Za-z0-9/._+,:@=-]+$")


def detect_schedule_kind(root: Path = Path("/")) -> ScheduleKind:
    """``systemd`` if systemd is the running init (``/run/systemd/system`` exists), else ``cron``.

    This is the test ``sd_booted(3)`` documents.
    """
    return "systemd" if (root / "run/systemd/system").is_dir() else "cron"


def renew_command(certherd_path: str, config_dir: str) -> list[str]:
    """The argument vector both schedules run: ``<certherd> --config-dir <dir> -q renew``."""
    return [certherd_path, "--config-dir", config_dir, "-q", "renew"]


def cron_time(hostname: str) -> tuple[int, int]:
    """The (minute, hour) of the first daily run for ``hostname``; the second is 12 h later."""
    draw = random.Random(f"certherd-renew:{hostname}")
    return draw.randrange(60), draw.randrange(12)


def _check_value(what: str, value: str) -> str:
    if not value or not os.path.isabs(value):
        raise ConfigError(f"{what} {safe_text(value, 200)!r} must be an absolute path")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise ConfigError(
            f"{what} {safe_text(value, 200)!r} contains a control character (a newline?); "
            "a schedule line cannot hold it"
        )
    return value


def _check_systemd_program(path: str) -> None:
    """systemd refuses (fatally) a program path with a quote or backslash, quoted or not.

    Its ``string_is_safe()`` check ("Executable name contains special characters"),
    seen with ``systemd-analyze verify`` on systemd 252.
    """
    if any(char in path for char in "'\"\\"):
        raise ConfigError(
            f"systemd cannot run {safe_text(path, 200)!r}: it refuses a program path that "
            "holds a quote or a backslash; install certherd elsewhere or give a symlink "
            "to it whose path has none"
        )


def _systemd_word(value: str, *, executable: bool = False) -> str:
    """One ExecStart word: specifiers and variables escaped, double quotes unless plain.

    systemd.service(5) "Command lines": words are split on whitespace and may be quoted
    with C-style escapes; ``%`` starts a specifier (``%%`` is a literal one) everywhere,
    and ``$`` a variable (``$$`` is a literal one) in the arguments only: the program,
    the first word, is taken literally.
    """
    escaped = value.replace("%", "%%")
    if not executable:
        escaped = escaped.replace("$", "$$")
    if _SYSTEMD_PLAIN.match(value):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _cron_word(value: str) -> str:
    """One shell word for a cron command line.

    crontab(5): an unescaped ``%`` in the command becomes a newline; cron drops the
    backslash of ``\\%`` before the shell sees the line, even inside shell quotes.
    """
    return shlex.quote(value).replace("%", "\\%")


def _service(command: list[str], user: bool) -> str:
    # network-online.target is a system unit: a user manager cannot order against it.
    network = "" if user else "Wants=network-online.target\nAfter=network-online.target\n"
    program = _systemd_word(command[0], executable=True)
    arguments = " ".join(_systemd_word(word) for word in command[1:])
    return (
        "# Written by certherd, which rewrites it when the schedule is installed again.\n"
        "[Unit]\n"
        "Description=Renew certificates with certherd\n"
        f"{network}"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={program} {arguments}\n"
    )


def _timer() -> str:
    return (
        "# Written by certherd, which rewrites it when the schedule is installed again.\n"
        "[Unit]\n"
        "Description=Run certherd renew twice a day\n"
        "\n"
        "[Timer]\n"
        "OnCalendar=*-*-* 00,12:00:00\n"
        "RandomizedDelaySec=3600\n"
        "Persistent=true\n"
        "\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )


def _cron(command: list[str], hostname: str) -> str:
    minute, hour = cron_time(hostname)
    line = " ".join(_cron_word(word) for word in command)
    return (
        "# Written by certherd, which rewrites it when the schedule is installed again.\n"
        "# Renew certificates twice a day at a time drawn once for this host.\n"
        "SHELL=/bin/sh\n"
        f"PATH={CRON_PATH}\n"
        "\n"
        f"{minute} {hour},{hour + 12} * * * root {line}\n"
    )


def _user_unit_dir(root: Path) -> Path:
    """``$XDG_CONFIG_HOME/systemd/user`` (default ``~/.config``), placed under ``root``."""
    config_home = os.environ.get("XDG_CONFIG_HOME") or ""
    base = Path(config_home) if os.path.isabs(config_home) else Path.home() / ".config"
    return root / base.relative_to(base.anchor) / "systemd" / "user"


def _write(path: Path, text: str) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    except OSError as exc:
        raise ConfigError(f"cannot create {path.parent}: {exc.strerror or exc}") from None
    atomic_write(path, text.encode("utf-8"), mode=0o644)
    return path


def install_schedule(
    kind: ScheduleKind,
    *,
    certherd_path: str,
    config_dir: str,
    root: Path = Path("/"),
    user: bool = False,
    hostname: str | None = None,
) -> list[Path]:
    """Write the schedule files for ``kind`` under ``root`` and return their paths.

    ``certherd_path`` and ``config_dir`` MUST be absolute (a timer or cron job does not
    run in the user's folder or PATH); each is quoted for its format, so spaces, quotes,
    ``%`` and ``$`` are safe. Running it again writes the same bytes. ``user=True``
    installs systemd user units; cron has no per-user cron.d, so that is a ConfigError.
    ``hostname`` (default :func:`socket.gethostname`) seeds the cron time. Nothing is
    printed and nothing is enabled; a file that cannot be written is a ConfigError.
    """
    command = renew_command(
        _check_value("the certherd program", certherd_path),
        _check_value("the config folder", config_dir),
    )
    if kind == "systemd":
        _check_systemd_program(certherd_path)
        folder = _user_unit_dir(root) if user else root / "etc/systemd/system"
        return [
            _write(folder / SERVICE_UNIT, _service(command, user)),
            _write(folder / TIMER_UNIT, _timer()),
        ]
    if kind == "cron":
        if user:
            raise ConfigError(
                "cron has no per-user cron.d: install the systemd schedule with {user}, "
                "or add the renew line to your crontab with `crontab -e`",
                settings=("user",),
            )
        host = socket.gethostname() if hostname is None else hostname
        return [_write(root / "etc/cron.d" / CRON_FILE, _cron(command, host))]
    raise ConfigError(f"schedule kind {safe_text(kind, 50)!r} is not 'systemd' or 'cron'")
