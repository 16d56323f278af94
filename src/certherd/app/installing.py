"""The web-server installers wired in (docs/installers.md): the ``nginx`` and ``apache``
solver kinds, installing a lineage's ``live/`` files into the server, taking them away
again, and the graceful reload after each new version (after the deploy hooks)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from certherd.errors import CertherdError, ConfigError, safe_text
from certherd.settings import InstallerSettings, LineageSettings

if TYPE_CHECKING:
    from certherd.challenges.base import Solver
    from certherd.challenges.spec import SolverSpec
    from certherd.config import ConfigFile
    from certherd.install.base import Installer
    from certherd.manager.outcome import Outcome
    from certherd.storage.base import Storage

__all__ = [
    "after_deploy",
    "apache_solver",
    "check_installer",
    "install_configured",
    "install_lineage",
    "nginx_solver",
    "uninstall_lineage",
]


def nginx_solver(spec: SolverSpec) -> Solver:
    """The ``nginx`` solver kind: http-01 through the running nginx."""
    from certherd.install.http01 import ServerSolver
    from certherd.install.nginx.installer import NginxInstaller

    installer = NginxInstaller(
        Path(spec.options.get("server_root", "/etc/nginx")), spec.options.get("ctl", "nginx")
    )
    return ServerSolver(installer)


def apache_solver(spec: SolverSpec) -> Solver:
    """The ``apache`` solver kind: http-01 through the running Apache."""
    from certherd.install.apache.installer import ApacheInstaller
    from certherd.install.http01 import ServerSolver

    installer = ApacheInstaller(
        Path(spec.options.get("server_root", "/etc/apache2")),
        spec.options.get("ctl", "apache2ctl"),
    )
    return ServerSolver(installer)


def _installer(settings: InstallerSettings) -> Installer:
    from certherd.install.base import installer_for

    return installer_for(settings)


async def check_installer(settings: LineageSettings) -> None:
    """Before anything is ordered: the server's config passes its own test and has a
    place for every name (InstallError / ConfigError otherwise)."""
    if settings.installer is not None:
        await _installer(settings.installer).check(settings.name, settings.names)


def _live_files(config_dir: Path | None, name: str) -> tuple[Path, Path]:
    if config_dir is None:
        raise ConfigError(
            "a web-server installer points the server at live/NAME/ files: it needs a "
            "config dir (a folder), not another storage"
        )
    live = config_dir.resolve() / "live" / name
    return live / "fullchain.pem", live / "privkey.pem"


async def install_lineage(
    storage: Storage,
    config_dir: Path | None,
    settings: LineageSettings,
    installer: InstallerSettings,
) -> LineageSettings:
    """Serve the lineage's live files through ``installer`` and remember it in the
    lineage's settings (so renewals reload it). Returns the settings saved."""
    certificate, key = _live_files(config_dir, settings.name)
    if not certificate.exists():
        raise ConfigError(
            f"the lineage {settings.name} has no live certificate yet ({certificate}): "
            "issue it first"
        )
    await _installer(installer).install(settings.name, settings.names, certificate, key)
    updated = replace(settings, installer=installer)
    if updated != settings:
        await updated.save(storage)
    return updated


async def uninstall_lineage(storage: Storage, settings: LineageSettings) -> bool:
    """Take away what the installer added for the lineage (the previous config bytes
    again) and forget the installer; False when nothing was installed."""
    if settings.installer is None:
        raise ConfigError(
            f"the lineage {settings.name} is not installed into a web server "
            "(no installer in its settings)"
        )
    removed = await _installer(settings.installer).uninstall(settings.name)
    await replace(settings, installer=None).save(storage)
    return removed


async def after_deploy(settings: LineageSettings, live: Path | None = None) -> list[str]:
    """Reload (or hot-swap) the lineage's web server after a new version (config tested
    first); ``live``: the folder of its live files on this host."""
    if settings.installer is None:
        return []
    certificate = key = None
    if live is not None:
        certificate, key = live / "fullchain.pem", live / "privkey.pem"
    try:
        await _installer(settings.installer).after_renewal(settings.name, certificate, key)
    except CertherdError as exc:
        return [f"{settings.installer.kind} installer: {safe_text(exc, 400)}"]
    return []


async def install_configured(
    storage: Storage, config_dir: Path | None, config: ConfigFile, outcomes: list[Outcome]
) -> list[Outcome]:
    """After ``apply``: each certificate certherd.toml gives an installer is installed
    (again: nothing changes when it already is); a refusal is told with its outcome."""
    by_name = {settings.name: settings for settings in config.certificates}
    done = []
    for outcome in outcomes:
        settings = by_name.get(outcome.lineage)
        if settings is not None and settings.installer is not None and not outcome.failed:
            try:
                await install_lineage(storage, config_dir, settings, settings.installer)
            except CertherdError as exc:
                error = f"{settings.installer.kind} installer: {safe_text(exc, 400)}"
                outcome = replace(outcome, hook_errors=(*outcome.hook_errors, error))
        done.append(outcome)
    return done
