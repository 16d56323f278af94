"""State hygiene (issue 10 item 9): what certherd leaves on disk after delete, a failed
issue, a damaged settings file, a run killed mid-write, and a dry run."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from e2e_helpers import archive_versions, fault_environment, live_version
from e2e_runner import Certherd


def _files(root: Path) -> list[str]:
    """Every file and symlink under ``root`` (folders left out), relative."""
    found = []
    for directory, _folders, files in os.walk(root):
        found += [(Path(directory) / name).relative_to(root).as_posix() for name in files]
    return sorted(found)


def _hidden(folder: Path) -> list[str]:
    return (
        sorted(p.name for p in folder.iterdir() if p.name.startswith("."))
        if folder.is_dir()
        else []
    )


def test_delete_removes_the_archive_folder_and_the_lock(certherd: Certherd) -> None:
    certherd.issue("gone.test")
    certherd.issue("kept.test")
    assert (certherd.config_dir / "locks" / "gone.test.lock").exists()
    certherd("delete", "gone.test")
    assert not certherd.archive("gone.test").exists()
    assert not certherd.live("gone.test").exists()
    assert not (certherd.config_dir / "locks" / "gone.test.lock").exists()
    assert not any("gone.test" in path for path in _files(certherd.config_dir))
    assert live_version(certherd.config_dir, "kept.test") == 1
    # The name is free again: issued anew from version 1.
    assert certherd.issue("gone.test").json()["results"][0]["version"] == 1


def test_a_failed_issue_leaves_no_lock_and_no_stub_account(
    certherd: Certherd, tmp_path: Path
) -> None:
    """An unreachable --server, twice: no account key, no `"url": null` account, no lock.
    A first issue that fails after the account exists: no lock file either."""
    for _attempt in range(2):
        refused = certherd(
            "issue",
            "-d",
            "unreachable.test",
            *certherd.http,
            "--server",
            "https://127.0.0.1:1/dir",
            "--agree-tos",
            check=False,
        )
        assert refused.code == 1, refused.describe()
    # Only the fencing-token floor of forgotten locks (certherd.storage.filelocks).
    assert _files(certherd.config_dir) in ([], ["locks/.tokens"])

    failed = certherd(
        "issue", "-d", "nowebroot.test", "--webroot", str(tmp_path / "missing"), *certherd.ca,
        check=False,
    )  # fmt: skip
    assert failed.code in (1, 2), failed.describe()
    left = _files(certherd.config_dir)
    assert not any("nowebroot.test" in path for path in left), left
    assert all(path.startswith("accounts/") for path in left if path != "locks/.tokens"), left


def test_one_damaged_settings_file_is_one_damaged_row(certherd: Certherd) -> None:
    certherd.issue("damaged.test")
    certherd.issue("healthy.test")
    settings = certherd.config_dir / "renewal" / "damaged.test.json"
    settings.write_text('{"name": "damaged.test", "names": [')

    listed = certherd("--json", "list")
    assert listed.code == 0, listed.describe()
    rows = {row["name"]: row for row in listed.json()["lineages"]}
    assert sorted(rows) == ["damaged.test", "healthy.test"]
    assert rows["healthy.test"]["damaged"] is None
    assert rows["healthy.test"]["version"] == 1
    reason = rows["damaged.test"]["damaged"]
    assert "renewal/damaged.test.json is damaged" in reason, reason
    assert "certherd delete damaged.test" in reason, reason

    human = certherd("list")
    assert human.code == 0, human.describe()
    assert "healthy.test" in human.stdout
    [row] = [line for line in human.stdout.splitlines() if line.startswith("damaged.test")]
    assert "damaged: renewal/damaged.test.json is damaged" in row, row

    shown = certherd("show", "damaged.test", check=False)
    assert shown.code == 2, shown.describe()
    [line] = shown.stderr.splitlines()
    assert "renewal/damaged.test.json is damaged" in line, line
    assert "certherd delete damaged.test" in line, line

    certherd("delete", "damaged.test")
    assert [row["name"] for row in certherd("--json", "list").json()["lineages"]] == [
        "healthy.test"
    ]


def _complete(archive: Path) -> bool:
    """Every version in ``archive`` has all four files (no partial one is left)."""
    return all(len(files) == 4 for files in archive_versions(archive).values())


def test_leftovers_of_a_killed_run_are_cleared_by_the_next_run(
    certherd: Certherd, tmp_path: Path
) -> None:
    """kill -9 while version 2 is written (a file done, the next one's temporary file
    made): the next `renew` removes the partial version and the temporary file; kill -9
    mid-publish: the next run removes the staging folder of live/. Live stays sound."""
    certherd.issue("killed.test")
    archive = certherd.archive("killed.test")
    env = fault_environment(tmp_path / "archive", certherd.config_dir, "kill:archive:3")
    killed = certherd("renew", "--force", env=env, check=False)
    assert killed.code == -signal.SIGKILL, killed.describe()
    assert not _complete(archive), archive_versions(archive)
    assert _hidden(archive), "the fault left no temporary file to clear"

    certherd("renew")
    assert _hidden(archive) == []
    assert _complete(archive), archive_versions(archive)
    live_version(certherd.config_dir, "killed.test")  # sound, whichever version

    env = fault_environment(tmp_path / "live", certherd.config_dir, "kill:live:3")
    killed = certherd("renew", "--force", env=env, check=False)
    assert killed.code == -signal.SIGKILL, killed.describe()
    live = certherd.config_dir / "live"
    assert [name for name in _hidden(live) if name.startswith(".killed.test.")]

    certherd("renew")
    assert _hidden(live) == []
    assert _hidden(archive) == []
    assert _complete(archive), archive_versions(archive)
    live_version(certherd.config_dir, "killed.test")
    assert list((certherd.config_dir / "locks" / ".held").iterdir()) == []
    renewed = certherd("--json", "renew", "--force").json()["results"]
    assert [r["action"] for r in renewed] == ["renewed"]


def test_a_dry_run_on_a_missing_config_dir_creates_nothing(certherd: Certherd) -> None:
    assert not certherd.config_dir.exists()
    dry = certherd("--json", "renew", "--dry-run")
    assert dry.json()["results"] == []
    assert not certherd.config_dir.exists()
