"""Run as root, certherd starts no program another user could have changed.

A deploy hook or exec DNS provider in a folder another user owns (or a file group- or
world-writable) would let that user run code as root at the next renewal. Real files,
owners and modes; the tests need root (the CI runs as root), as the rule does.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from certherd.errors import ConfigError, HookError
from certherd.hooks.runner import run_hook
from certherd.programs import DEFAULT_PATH, run_checked, run_program, untrusted_program

NOBODY = 65534
ENV = {"PATH": DEFAULT_PATH}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the rule applies to root only")


def script(folder: Path, name: str = "hook.sh", mode: int = 0o755) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\necho ran\n")
    path.chmod(mode)
    return path


@pytest.fixture
def root_folder(tmp_path: Path) -> Path:
    tmp_path.chmod(0o755)
    return tmp_path


async def test_a_root_owned_program_runs(root_folder: Path) -> None:
    path = script(root_folder / "bin")
    assert untrusted_program(str(path), DEFAULT_PATH) is None
    result = await run_program([str(path)], env=ENV, timeout=10)
    assert result.stdout == "ran\n"


async def test_a_program_in_another_users_folder_is_not_started(root_folder: Path) -> None:
    path = script(root_folder / "alice")
    os.chown(path.parent, NOBODY, NOBODY)
    reason = untrusted_program(str(path), DEFAULT_PATH)
    assert reason is not None
    assert "alice" in reason
    with pytest.raises(ConfigError, match=r"is not started: .*alice.*root-owned folder"):
        await run_program([str(path)], env=ENV, timeout=10)


@pytest.mark.parametrize("mode", [0o775, 0o757])
async def test_a_program_writable_by_others_is_not_started(root_folder: Path, mode: int) -> None:
    path = script(root_folder / "bin", mode=mode)
    with pytest.raises(ConfigError, match="writable by group or others"):
        await run_program([str(path)], env=ENV, timeout=10)


async def test_a_program_owned_by_another_user_is_not_started(root_folder: Path) -> None:
    path = script(root_folder / "bin")
    os.chown(path, NOBODY, NOBODY)
    with pytest.raises(ConfigError, match="belongs to another user"):
        await run_program([str(path)], env=ENV, timeout=10)


async def test_a_root_symlink_into_another_users_folder_is_not_followed(root_folder: Path) -> None:
    target = script(root_folder / "alice")
    os.chown(target.parent, NOBODY, NOBODY)
    link = root_folder / "bin" / "hook"
    link.parent.mkdir()
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="alice"):
        await run_program([str(link)], env=ENV, timeout=10)


async def test_a_program_found_on_path_is_checked_where_it_is_found(root_folder: Path) -> None:
    folder = root_folder / "alice"
    script(folder, "certherd-test-deploy")
    os.chown(folder, NOBODY, NOBODY)
    env = {"PATH": f"{folder}:{DEFAULT_PATH}"}
    with pytest.raises(ConfigError, match="alice"):
        await run_program(["certherd-test-deploy"], env=env, timeout=10)


async def test_a_hook_refused_names_the_hook(root_folder: Path) -> None:
    path = script(root_folder / "alice")
    os.chown(path.parent, NOBODY, NOBODY)
    with pytest.raises(HookError, match=r"^deploy hook .*hook\.sh.*: program .* is not started"):
        await run_hook(
            [str(path)], kind="deploy", lineage="example.com", names=["example.com"], files={}
        )
    with pytest.raises(HookError, match="is not started"):
        await run_checked([str(path)], what="exec provider", env=ENV, timeout=10)


async def test_a_missing_program_still_fails_as_it_did(root_folder: Path) -> None:
    with pytest.raises(HookError, match="could not be started"):
        await run_checked([str(root_folder / "nope")], what="hook", env=ENV, timeout=10)
