"""What a web-server installer does, whatever the server (nginx, Apache, HAProxy:
issue 13).

An installer is built from a lineage's :class:`~certherd.settings.InstallerSettings`
(:func:`installer_for`) and:

- ``check(lineage, names)``: refuses (:class:`~certherd.errors.InstallError`) a server
  whose config already fails its own test, and a name it has no place to serve, before
  anything is ordered or changed;
- ``prepare_http01(names)`` / ``finish_http01()``: answers http-01 through the running
  server while an order is under way (the ``nginx`` and ``apache`` solver kinds call them);
- ``install(lineage, names, certificate, key)``: serves the lineage's ``live/`` files
  over TLS for its names; ``uninstall(lineage)`` takes that away again;
- ``after_renewal(lineage, certificate, key)``: a new version of those live files is
  live: reload gracefully (nginx) or hot-swap it (HAProxy's runtime API).

Every change is tested with the server's own config test and undone byte for byte when
it fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from certherd.errors import ConfigError

if TYPE_CHECKING:
    from certherd.settings import InstallerSettings

__all__ = ["INSTALLER_KINDS", "Installer", "installer_for"]

INSTALLER_KINDS = ("nginx", "apache", "haproxy")


class Installer(Protocol):
    """A web server certherd installs certificates into (see the module's docstring)."""

    kind: str

    async def check(self, lineage: str = "", names: Sequence[str] = ()) -> None: ...

    async def prepare_http01(self, names: Sequence[str]) -> object: ...

    async def finish_http01(self) -> None: ...

    async def install(
        self, lineage: str, names: Sequence[str], certificate: Path, key: Path
    ) -> object: ...

    async def uninstall(self, lineage: str) -> bool: ...

    async def after_renewal(
        self, lineage: str = "", certificate: Path | None = None, key: Path | None = None
    ) -> None: ...


def installer_for(settings: InstallerSettings) -> Installer:
    """The installer ``settings`` describe; ConfigError for an unknown kind or option."""
    options = dict(settings.options)
    if settings.kind == "nginx":
        from certherd.install.nginx.installer import NginxInstaller

        try:
            port = int(options.pop("https_port", "443"))
        except ValueError:
            raise ConfigError("installer https_port must be a port number") from None
        if not 0 < port < 65536:
            raise ConfigError(f"installer https_port {port} is not a port (1-65535)")
        redirect = options.pop("redirect", "false").lower() in ("true", "1", "yes")
        installer = NginxInstaller(
            Path(options.pop("server_root", "/etc/nginx")),
            options.pop("ctl", "nginx"),
            port,
            redirect,
        )
        if options:
            raise ConfigError(
                f"unknown nginx installer option {sorted(options)[0]!r}: use server_root, "
                "ctl, https_port, redirect"
            )
        return installer
    if settings.kind == "apache":
        return _apache(options)
    if settings.kind == "haproxy":
        return _haproxy(options)
    raise ConfigError(
        f"unknown installer kind {settings.kind!r}: use one of {', '.join(INSTALLER_KINDS)}"
    )


def _apache(options: dict[str, str]) -> Installer:
    from certherd.install.apache.installer import ApacheInstaller

    try:
        port = int(options.pop("https_port", "443"))
    except ValueError:
        raise ConfigError("installer https_port must be a port number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"installer https_port {port} is not a port (1-65535)")
    installer = ApacheInstaller(
        Path(options.pop("server_root", "/etc/apache2")),
        options.pop("ctl", "apache2ctl"),
        port,
        options.pop("redirect", "false").lower() in ("true", "1", "yes"),
    )
    if options:
        raise ConfigError(
            f"unknown apache installer option {sorted(options)[0]!r}: use server_root, "
            "ctl, https_port, redirect"
        )
    return installer


def _haproxy(options: dict[str, str]) -> Installer:
    from certherd.install.haproxy.installer import HaproxyInstaller

    try:
        port = int(options.pop("https_port", "443"))
    except ValueError:
        raise ConfigError("installer https_port must be a port number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"installer https_port {port} is not a port (1-65535)")
    socket = options.pop("socket", "")
    installer = HaproxyInstaller(
        Path(options.pop("config", "/etc/haproxy/haproxy.cfg")),
        Path(options.pop("crt_dir", "/etc/haproxy/certs")),
        Path(socket) if socket else None,
        options.pop("ctl", "haproxy"),
        port,
        options.pop("frontend", ""),
    )
    if options:
        raise ConfigError(
            f"unknown haproxy installer option {sorted(options)[0]!r}: use config, crt_dir, "
            "socket, ctl, https_port, frontend"
        )
    return installer
