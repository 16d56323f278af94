"""certherd.toml's ``installer = { kind = "nginx", ... }`` of a ``[[certificate]]``: the
web server its certificate is installed into (docs/installers.md)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from certherd.challenges.options import solver_spec
from certherd.challenges.spec import SolverSpec
from certherd.settings import InstallerSettings

__all__ = ["InstallerTable", "installer_settings", "installer_solver"]

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]


class InstallerTable(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``installer = { kind = "nginx", server_root = "/etc/nginx", ctl = "nginx",
    https_port = 443, redirect = false }``."""

    kind: Literal["nginx"]
    server_root: str = "/etc/nginx"
    ctl: str = "nginx"
    https_port: Port = 443
    redirect: bool = False


def installer_settings(table: InstallerTable | None) -> InstallerSettings | None:
    if table is None:
        return None
    options = {
        "server_root": table.server_root,
        "ctl": table.ctl,
        "https_port": str(table.https_port),
        "redirect": "true" if table.redirect else "false",
    }
    return InstallerSettings(table.kind, tuple(sorted(options.items())))


def installer_solver(table: InstallerTable) -> SolverSpec:
    """The solver of a certificate with an installer and no solver of its own: http-01
    through that same server."""
    return solver_spec("nginx", {"server_root": table.server_root, "ctl": table.ctl})
