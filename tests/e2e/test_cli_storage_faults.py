"""A read-only or full config dir: a clear one-line error, and nothing lost.

The config dir is a small tmpfs mounted for the test, remounted read-only or filled up:
the only way to make root see EROFS or ENOSPC (permissions do not stop root). Needs root
(as CI runs); elsewhere these tests fail and say so: never a silent skip.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import archive_versions, live_version, snapshot
from e2e_runner import Certherd


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.fail(
            "mounting a tmpfs needs root: run `bash scripts/test` as root (as CI does)",
            pytrace=False,
        )


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def tmpfs_config(certherd: Certherd) -> Iterator[Path]:
    """The test's config dir as a 2 MiB tmpfs (unmounted afterwards)."""
    folder = certherd.config_dir
    folder.mkdir()
    _mount("-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(folder))
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, timeout=30)


def _fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` up to the last byte."""
    filler = folder / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        size = 1 << 16
        while size:
            try:
                os.write(descriptor, b"\0" * size)
            except OSError:
                size //= 2
    finally:
        os.close(descriptor)
    return filler


def _quiet_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


def test_read_only_config_dir(certherd: Certherd, tmpfs_config: Path) -> None:
    certherd.issue("readonly.test")
    before = snapshot(tmpfs_config)
    _mount("-o", "remount,ro", str(tmpfs_config))

    # Reading works, and so does a renew with nothing due (cron on a read-only system).
    [entry] = certherd("--json", "list").json()["lineages"]
    assert entry["name"] == "readonly.test"
    assert certherd("-q", "renew").code == 0

    forced = certherd("-q", "renew", "--force", check=False)
    assert forced.code == 1, forced.describe()
    line = _quiet_error(forced.stderr)
    assert "read-only" in line
    assert "readonly.test" in line or str(tmpfs_config) in line

    issued = certherd.issue("another.test", check=False)
    assert issued.code in (1, 2), issued.describe()
    assert "read-only" in _quiet_error(issued.stderr)

    _mount("-o", "remount,rw", str(tmpfs_config))
    assert snapshot(tmpfs_config) == before
    assert live_version(tmpfs_config, "readonly.test") == 1
    renewed = certherd("--json", "renew", "--force").json()["results"]
    assert [(r["action"], r["version"]) for r in renewed] == [("renewed", 2)]


def test_full_config_dir(certherd: Certherd, tmpfs_config: Path) -> None:
    certherd.issue("full.test")
    live = certherd.live("full.test")
    served = {f: (live / f).read_bytes() for f in ("cert.pem", "privkey.pem", "fullchain.pem")}
    links = snapshot(live)
    filler = _fill(tmpfs_config)

    forced = certherd("-q", "renew", "--force", check=False)
    assert forced.code == 1, forced.describe()
    line = _quiet_error(forced.stderr)
    assert "full.test" in line
    assert "disk is full" in line

    assert snapshot(live) == links
    assert {f: (live / f).read_bytes() for f in served} == served
    assert live_version(tmpfs_config, "full.test") == 1
    assert sorted(archive_versions(certherd.archive("full.test"))) == [1]
    assert not [p for p in certherd.archive("full.test").iterdir() if p.name.startswith(".")]

    filler.unlink()
    renewed = certherd("--json", "renew", "--force").json()["results"]
    assert [(r["action"], r["version"]) for r in renewed] == [("renewed", 2)]
    assert live_version(tmpfs_config, "full.test") == 2
