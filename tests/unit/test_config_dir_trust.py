"""The config dir must be a folder only root can change (issue 9, item 1: the rest of the class).

It holds account and certificate keys and the hooks root runs: a config dir another user
can swap (or an entry on its path) lets them read the keys or run a program as root. The
filesystem storage refuses it with one line before reading or writing anything. Needs
root (to give folders to ``nobody``), as the suite runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from certherd._nofollow import untrusted_reason
from certherd.errors import ConfigError
from certherd.storage import FilesystemStorage

NOBODY = 65534


@pytest.fixture(autouse=True)
def as_root() -> None:
    assert os.geteuid() == 0, "these tests give folders to nobody: run the suite as root"


def nobodys(folder: Path) -> Path:
    folder.mkdir(mode=0o755)
    os.chown(folder, NOBODY, NOBODY)
    return folder


async def refused(root: Path, match: str) -> None:
    storage = FilesystemStorage(root)
    with pytest.raises(ConfigError, match=match) as caught:
        await storage.write("accounts/x/key.pem", b"secret", private=True)
    assert "\n" not in str(caught.value)
    assert "is not safe for keys and hooks" in str(caught.value)
    with pytest.raises(ConfigError):
        await storage.read("renewal/x.json")


async def test_a_config_dir_inside_another_users_folder_is_refused(tmp_path: Path) -> None:
    home = nobodys(tmp_path / "home")
    await refused(home / "certherd", r"lets other users make it first")
    assert list(home.iterdir()) == []  # nothing created there
    (home / "certherd").mkdir(mode=0o700)  # even one root made: nobody can rename it away
    await refused(home / "certherd", r"lets other users replace .*/home/certherd")
    assert list((home / "certherd").iterdir()) == []


async def test_a_config_dir_others_can_write_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir(mode=0o700)
    config.chmod(0o777)
    await refused(config, r"mode 0777\) is writable by group or others")
    config.chmod(0o755)
    os.chown(config, NOBODY, NOBODY)
    await refused(config, r"owner nobody, mode 0755\) belongs to another user")


async def test_a_config_dir_linked_from_another_users_folder_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    home = nobodys(tmp_path / "home")
    (home / "certherd").symlink_to(real)
    await refused(home / "certherd", r"is a symbolic link in .*owner nobody")
    assert list(real.iterdir()) == []


async def test_root_folders_in_a_sticky_folder_and_root_links_are_fine(tmp_path: Path) -> None:
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: others may create, but not replace root's entries
    mine = shared / "config"
    mine.mkdir(mode=0o700)
    assert untrusted_reason(mine) is None
    (tmp_path / "link").symlink_to(mine)  # in a folder only root can change: followed
    storage = FilesystemStorage(tmp_path / "link")
    await storage.write("renewal/x.json", b"{}")
    assert (mine / "renewal" / "x.json").read_bytes() == b"{}"

    theirs = shared / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    await refused(theirs, r"lets other users replace .*theirs")
    await refused(shared / "missing", r"lets other users make it first")


def test_the_cli_says_so_in_one_line_with_exit_2(tmp_path: Path) -> None:
    home = nobodys(tmp_path / "home")
    done = subprocess.run(
        [sys.executable, "-m", "certherd.cli.main", "--config-dir", str(home / "c"), "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "is not safe for keys and hooks" in lines[0]
    assert list(home.iterdir()) == []
