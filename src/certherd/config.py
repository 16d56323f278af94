"""Typed configuration independent of the CLI: CA presets and the config-dir default."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from certherd.errors import ConfigError

__all__ = ["CA_PRESETS", "CaPreset", "default_config_dir", "resolve_directory_url"]


@dataclass(frozen=True)
class CaPreset:
    """A well-known ACME CA: its directory and whether it needs External Account Binding."""

    name: str
    directory_url: str
    requires_eab: bool = False
    note: str = ""


CA_PRESETS: dict[str, CaPreset] = {
    preset.name: preset
    for preset in (
        CaPreset("letsencrypt", "https://acme-v02.api.letsencrypt.org/directory"),
        CaPreset("letsencrypt-staging", "https://acme-staging-v02.api.letsencrypt.org/directory"),
        CaPreset("zerossl", "https://acme.zerossl.com/v2/DV90", requires_eab=True),
        CaPreset("google", "https://dv.acme-v02.api.pki.goog/directory", requires_eab=True),
        CaPreset(
            "google-staging", "https://dv.acme-v02.test-api.pki.goog/directory", requires_eab=True
        ),
        CaPreset("sslcom", "https://acme.ssl.com/sslcom-dv-ecc", requires_eab=True),
        CaPreset("actalis", "https://acme-api.actalis.com/acme/directory", requires_eab=True),
    )
}
DEFAULT_CA = "letsencrypt"


def resolve_directory_url(server: str | None, ca: str | None) -> str:
    """``--server URL`` wins; else ``--ca NAME``; else Let's Encrypt."""
    if server and ca:
        raise ConfigError("give either --server or --ca, not both")
    if server:
        return server
    name = (ca or DEFAULT_CA).lower()
    preset = CA_PRESETS.get(name)
    if preset is None:
        raise ConfigError(
            f"unknown CA {ca!r}: choose one of {', '.join(CA_PRESETS)} or --server URL"
        )
    return preset.directory_url


def default_config_dir() -> Path:
    """``$CERTHERD_DIR``, else /etc/certherd for root, else the user's config dir."""
    explicit = os.environ.get("CERTHERD_DIR")
    if explicit:
        return Path(explicit)
    if os.geteuid() == 0:
        return Path("/etc/certherd")
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "certherd"
