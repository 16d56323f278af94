"""Putting certherd to work on a host: the twice-daily renewal schedule (systemd timer or
cron.d file) today; the web-server installers (nginx, Apache, HAProxy: pointing a server at
its certificate and reloading it) go here too (issue 13).

Installers sit above :mod:`certherd.manager` and below the CLI: they are built from typed
settings, write files atomically and never see command-line flags.
"""

import typing as _typing

from certherd import _lazy

if _typing.TYPE_CHECKING:
    from certherd.install.schedule import ScheduleKind, detect_schedule_kind, install_schedule

_EXPORTS: dict[str, str] = {
    "ScheduleKind": "certherd.install.schedule",
    "detect_schedule_kind": "certherd.install.schedule",
    "install_schedule": "certherd.install.schedule",
}

__all__ = ["ScheduleKind", "detect_schedule_kind", "install_schedule"]


if not _typing.TYPE_CHECKING:
    # Hidden from type checkers, so that a misspelt import is an error, not an Any.
    __getattr__ = _lazy.exports_getattr(__name__, _EXPORTS)
