"""Where certherd's config dir is, and what its certherd.toml is called: the two facts
every command needs, without importing the certherd.toml schema (:mod:`certherd.config`)
when there is no certherd.toml to read."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CONFIG_FILE", "default_config_dir"]

CONFIG_FILE = "certherd.toml"
"""certherd.toml's name in the config dir."""


def default_config_dir() -> Path:
    """``$CERTHERD_DIR``, else /etc/certherd for root, else the user's config dir."""
    explicit = os.environ.get("CERTHERD_DIR")
    if explicit:
        return Path(explicit)
    if os.geteuid() == 0:
        return Path("/etc/certherd")
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "certherd"
