"""``certherd install | uninstall`` and the installer flags of ``issue`` (--nginx,
--apache, --haproxy ...):
a lineage's certificate served by a web server the certherd way (docs/installers.md)."""

from __future__ import annotations

import os
from typing import Any

import click

from certherd.cli.common import Context, pass_context, run_async
from certherd.cli.completion import complete_lineages

__all__ = ["install", "installer_options", "installer_settings", "uninstall"]


def installer_options(command: Any) -> Any:
    """``--nginx [--nginx-server-root DIR] [--nginx-ctl PATH] [--https-port N] [--redirect]``
    (Certbot's names)."""
    options = [
        click.option(
            "--nginx",
            is_flag=True,
            help="Prove the names through the running nginx and serve the certificate "
            "in its matching server blocks (docs/installers.md).",
        ),
        click.option(
            "--nginx-server-root",
            metavar="DIR",
            help="nginx's config folder, holding nginx.conf (default /etc/nginx).",
        ),
        click.option("--nginx-ctl", metavar="PATH", help="nginx's control binary (default nginx)."),
        click.option(
            "--apache",
            is_flag=True,
            help="Prove the names through the running Apache and serve the certificate "
            "in a TLS copy of its matching vhosts (docs/installers.md).",
        ),
        click.option(
            "--apache-server-root",
            metavar="DIR",
            help="Apache's config folder, holding apache2.conf (default /etc/apache2).",
        ),
        click.option(
            "--apache-ctl", metavar="PATH", help="Apache's control script (default apache2ctl)."
        ),
        click.option(
            "--https-port",
            type=click.IntRange(1, 65535),
            metavar="N",
            help="The port the installer serves HTTPS on (default 443).",
        ),
        click.option("--redirect", is_flag=True, help="Redirect HTTP to HTTPS."),
        click.option(
            "--haproxy",
            is_flag=True,
            help="Serve the certificate from HAProxy's crt dir; renewals are hot-swapped "
            "through its runtime API (docs/installers.md).",
        ),
        click.option(
            "--haproxy-config",
            metavar="FILE",
            help="HAProxy's config (default /etc/haproxy/haproxy.cfg).",
        ),
        click.option(
            "--haproxy-socket",
            metavar="PATH",
            help="HAProxy's runtime API socket (default: the config's stats socket).",
        ),
        click.option(
            "--haproxy-crt-dir",
            metavar="DIR",
            help="The folder HAProxy loads certificates from (default /etc/haproxy/certs).",
        ),
        click.option(
            "--haproxy-frontend",
            metavar="NAME",
            help="The frontend to get certherd's bind line when none loads the crt dir yet "
            "(default: the one HTTP frontend).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def installer_settings(params: dict[str, Any]) -> Any:
    """The lineage's InstallerSettings from the installer flags (popped), or None."""
    from certherd.errors import ConfigError
    from certherd.settings import InstallerSettings

    haproxy = _haproxy_settings(params)
    chosen = [kind for kind in ("nginx", "apache") if params.pop(kind, False)]
    given = {kind: _server_flags(params, kind) for kind in ("nginx", "apache")}
    port = params.pop("https_port", None)
    redirect = params.pop("redirect", False)
    if haproxy is not None:
        if chosen or any(any(flags) for flags in given.values()) or redirect:
            raise ConfigError("--haproxy takes no --nginx or --apache options: give one web server")
        if port is not None:
            haproxy.update(https_port=str(port))
        return InstallerSettings("haproxy", tuple(sorted(haproxy.items())))
    if len(chosen) > 1:
        raise ConfigError("--nginx and --apache exclude each other: give one web server")
    for kind, (root, ctl) in given.items():
        if (root or ctl) and kind not in chosen:
            raise ConfigError(f"--{kind}-server-root and --{kind}-ctl need --{kind}")
    if not chosen:
        if port is not None or redirect:
            raise ConfigError("--https-port and --redirect need --nginx or --apache")
        return None
    kind = chosen[0]
    root, ctl = given[kind]
    # Absolute: renewals (the daemon, a timer) run from another folder.
    options = {
        "server_root": os.path.abspath(root) if root else DEFAULTS[kind][0],
        "ctl": os.path.abspath(ctl) if ctl and "/" in ctl else ctl or DEFAULTS[kind][1],
        "https_port": str(port or 443),
        "redirect": "true" if redirect else "false",
    }
    return InstallerSettings(kind, tuple(sorted(options.items())))


DEFAULTS = {"nginx": ("/etc/nginx", "nginx"), "apache": ("/etc/apache2", "apache2ctl")}
"""Each web server's default server root and control program (Certbot's)."""


def _server_flags(params: dict[str, Any], kind: str) -> tuple[str | None, str | None]:
    return params.pop(f"{kind}_server_root", None), params.pop(f"{kind}_ctl", None)


def _haproxy_settings(params: dict[str, Any]) -> dict[str, str] | None:
    """The haproxy installer's options from its flags (popped), or None without --haproxy."""
    from certherd.errors import ConfigError

    haproxy = params.pop("haproxy", False)
    paths = {
        "config": params.pop("haproxy_config", None),
        "socket": params.pop("haproxy_socket", None),
        "crt_dir": params.pop("haproxy_crt_dir", None),
    }
    frontend = params.pop("haproxy_frontend", None)
    if not haproxy:
        if any(paths.values()) or frontend:
            raise ConfigError(
                "--haproxy-config, --haproxy-socket, --haproxy-crt-dir and --haproxy-frontend "
                "need --haproxy"
            )
        return None
    defaults = {"config": "/etc/haproxy/haproxy.cfg", "crt_dir": "/etc/haproxy/certs", "socket": ""}
    # Absolute: renewals (the daemon, a timer) run from another folder.
    options = {
        key: os.path.abspath(value) if value else defaults[key] for key, value in paths.items()
    }
    chosen = {"frontend": frontend} if frontend else {}
    return {**options, **chosen, "ctl": "haproxy", "https_port": "443"}


def installer_solver(installer: Any) -> Any:
    """The solver matching the installer: ``nginx`` or ``apache`` (same server root and
    ctl); None for HAProxy, which does not answer http-01 (the names need a solver of
    their own)."""
    from certherd.challenges.options import solver_spec

    if installer.kind not in ("nginx", "apache"):
        return None
    options = dict(installer.options)
    return solver_spec(
        installer.kind,
        {"server_root": options["server_root"], "ctl": options["ctl"]},
        strict=False,
    )


@click.command("install")
@click.argument("name", metavar="NAME", shell_complete=complete_lineages)
@installer_options
@pass_context
def install(ctx: Context, /, name: str, **params: Any) -> None:
    """Serve lineage NAME's certificate through a web server (--nginx, --apache, --haproxy;
    without one, the one in the lineage's settings); renewals then reload it."""
    run_async(_install(ctx, name, installer_settings(params)))


async def _install(ctx: Context, name: str, installer: Any) -> None:
    async with ctx.certherd() as certherd:
        settings = await certherd.install(name, installer)
    kind = settings.installer.kind if settings.installer else "?"
    ctx.emit(
        {"lineage": name, "installer": settings.installer and settings.installer.to_json()},
        lambda: ctx.say(f"{name}: installed into {kind}"),
    )


@click.command("uninstall")
@click.argument("name", metavar="NAME", shell_complete=complete_lineages)
@pass_context
def uninstall(ctx: Context, name: str) -> None:
    """Take away what certherd added to the web server for NAME (the config's previous
    bytes again); the lineage and its certificates stay."""
    removed = run_async(_uninstall(ctx, name))
    ctx.emit(
        {"lineage": name, "removed": removed},
        lambda: ctx.say(
            f"{name}: certherd's lines taken out of the web server"
            if removed
            else f"{name}: nothing of certherd's was in the web server's config"
        ),
    )


async def _uninstall(ctx: Context, name: str) -> bool:
    async with ctx.certherd() as certherd:
        return await certherd.uninstall(name)
