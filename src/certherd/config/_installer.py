"""certherd.toml's ``installer = { kind = "nginx", ... }`` (or ``"haproxy"``) of a
``[[certificate]]``: the web server its certificate is installed into
(docs/installers.md)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from certherd.challenges.options import solver_spec
from certherd.challenges.spec import SolverSpec
from certherd.settings import InstallerSettings

__all__ = [
    "ApacheInstallerTable",
    "HaproxyInstallerTable",
    "InstallerTable",
    "NginxInstallerTable",
    "installer_settings",
    "installer_solver",
]

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]


class NginxInstallerTable(
    msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag_field="kind", tag="nginx"
):
    """``installer = { kind = "nginx", server_root = "/etc/nginx", ctl = "nginx",
    https_port = 443, redirect = false }``."""

    server_root: str = "/etc/nginx"
    ctl: str = "nginx"
    https_port: Port = 443
    redirect: bool = False

    @property
    def kind(self) -> str:
        return "nginx"


class HaproxyInstallerTable(
    msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag_field="kind", tag="haproxy"
):
    """``installer = { kind = "haproxy", config = "/etc/haproxy/haproxy.cfg", crt_dir =
    "/etc/haproxy/certs", socket = "", ctl = "haproxy", https_port = 443, frontend = "" }``
    (``socket`` empty: the config's ``stats socket ... level admin``; ``frontend`` empty:
    the one HTTP frontend)."""

    config: str = "/etc/haproxy/haproxy.cfg"
    crt_dir: str = "/etc/haproxy/certs"
    socket: str = ""
    ctl: str = "haproxy"
    https_port: Port = 443
    frontend: str = ""

    @property
    def kind(self) -> str:
        return "haproxy"


class ApacheInstallerTable(
    msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag_field="kind", tag="apache"
):
    """``installer = { kind = "apache", server_root = "/etc/apache2", ctl = "apache2ctl",
    https_port = 443, redirect = false }``."""

    server_root: str = "/etc/apache2"
    ctl: str = "apache2ctl"
    https_port: Port = 443
    redirect: bool = False

    @property
    def kind(self) -> str:
        return "apache"


InstallerTable = NginxInstallerTable | ApacheInstallerTable | HaproxyInstallerTable


def installer_settings(table: InstallerTable | None) -> InstallerSettings | None:
    if table is None:
        return None
    if isinstance(table, HaproxyInstallerTable):
        fields = ("config", "crt_dir", "socket", "ctl")
        haproxy = {name: getattr(table, name) for name in fields}
        haproxy["https_port"] = str(table.https_port)
        if table.frontend:
            haproxy["frontend"] = table.frontend
        return InstallerSettings(table.kind, tuple(sorted(haproxy.items())))
    options = {
        "server_root": table.server_root,
        "ctl": table.ctl,
        "https_port": str(table.https_port),
        "redirect": "true" if table.redirect else "false",
    }
    return InstallerSettings(table.kind, tuple(sorted(options.items())))


def installer_solver(table: InstallerTable) -> SolverSpec | None:
    """The solver of a certificate with an installer and no solver of its own: http-01
    through that same server (None for HAProxy: it proves no name)."""
    if not isinstance(table, NginxInstallerTable | ApacheInstallerTable):
        return None
    return solver_spec(table.kind, {"server_root": table.server_root, "ctl": table.ctl})
