"""Apache's tools run as root with ``APACHE_CONFDIR=ROOT``, and ``apache2ctl`` runs
``ROOT/envvars`` as a shell script: the Apache installer runs nothing for a server root
another user could change (certherd._nofollow.untrusted_reason, as for the config dir).
Runs as root (CI does): handing a folder to nobody needs it."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from certherd.errors import ConfigError
from certherd.install.apache.installer import ApacheInstaller


async def test_a_server_root_owned_by_another_user_runs_nothing(tmp_path: Path) -> None:
    root = tmp_path / "apache2"
    root.mkdir(mode=0o755)
    marker = tmp_path / "ran"
    # What apache2ctl would source as root; it must never run.
    (root / "envvars").write_text(f"touch {marker}\n")
    os.chown(root, pwd.getpwnam("nobody").pw_uid, -1)
    with pytest.raises(ConfigError, match="will not run Apache's tools"):
        await ApacheInstaller(root).read()
    with pytest.raises(ConfigError, match="will not run Apache's tools"):
        await ApacheInstaller(root).check("x", ["x.test"])
    assert not marker.exists()
