"""The nginx installer writes a site file only where no other user could swap it: the
folder of the file and, for a symlinked site file, the folder it points into, are walked
as the config dir is (certherd._nofollow.untrusted_reason). Runs as root (CI does):
handing a folder to nobody needs it."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from certherd.errors import ConfigError
from certherd.install.nginx.edit import _real_target


def _nobody() -> int:
    return pwd.getpwnam("nobody").pw_uid


def test_a_site_file_in_a_folder_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "sites-available"
    folder.mkdir(mode=0o755)
    site = folder / "default"
    site.write_text("server { listen 80; }\n")
    os.chown(folder, _nobody(), -1)  # 0755, not group- or world-writable: nobody still owns it
    with pytest.raises(ConfigError, match="belongs to another user"):
        _real_target(site)


def test_a_symlinked_site_file_pointing_into_another_users_folder_is_refused(
    tmp_path: Path,
) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    (theirs / "site").write_text("server { listen 80; }\n")
    os.chown(theirs, _nobody(), -1)
    enabled = tmp_path / "sites-enabled"
    enabled.mkdir(mode=0o755)
    (enabled / "site").symlink_to(theirs / "site")
    with pytest.raises(ConfigError, match="certherd will not edit"):
        _real_target(enabled / "site")


def test_a_symlinked_site_file_in_roots_folders_is_written_where_it_points(
    tmp_path: Path,
) -> None:
    available = tmp_path / "sites-available"
    available.mkdir(mode=0o755)
    (available / "site").write_text("server { listen 80; }\n")
    enabled = tmp_path / "sites-enabled"
    enabled.mkdir(mode=0o755)
    (enabled / "site").symlink_to("../sites-available/site")
    assert _real_target(enabled / "site") == (available / "site").resolve()
