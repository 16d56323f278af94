"""Putting certherd to work on a host: the twice-daily renewal schedule (systemd timer or
cron.d file), and the web-server installers (:mod:`certherd.install.base`: the protocol;
:mod:`certherd.install.nginx`, :mod:`certherd.install.apache`,
:mod:`certherd.install.haproxy`: issue 13) that point a server at its certificate and
reload it (or, HAProxy, hot-swap it).

Installers sit above :mod:`certherd.manager` and below the CLI: they are built from typed
settings, write files atomically and never see command-line flags.
"""

import typing as _typing

from certherd import _lazy

__all__ = [
    "Installer",
    "ScheduleKind",
    "detect_schedule_kind",
    "install_schedule",
    "installer_for",
]

if _typing.TYPE_CHECKING:
    from certherd.install.base import Installer, installer_for
    from certherd.install.schedule import ScheduleKind, detect_schedule_kind, install_schedule
else:
    __getattr__ = _lazy.exports_getattr(__name__)  # the imports above, on first use
