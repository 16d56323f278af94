"""docs/hooks.md stays true: its table of hook variables is what hooks are given."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from certherd.hooks.runner import HOOK_KINDS, HookEnvironment
from certherd.programs import PASSED_THROUGH

ROOT = Path(__file__).parents[2]
DOC = ROOT / "docs" / "hooks.md"
# Set by the manager for some kinds (through ``extra``), not by the runner itself.
FROM_THE_MANAGER = {"CERTHERD_VERSION", "CERTHERD_ERROR", "CERTHERD_FAILURES", "CERTHERD_NOT_AFTER"}


def documented() -> dict[str, set[str]]:
    """``{variable: kinds}`` from the table of the Environment section."""
    rows = re.findall(r"^\| `([A-Z_]+)` \| ([a-z, ]+) \|", DOC.read_text(), re.MULTILINE)
    assert rows, "no variable table in docs/hooks.md"
    table: dict[str, set[str]] = {}
    for name, kinds in rows:
        listed = {k.strip() for k in kinds.split(",")}
        table[name] = set(HOOK_KINDS) if listed == {"all"} else listed
    return table


@pytest.mark.parametrize("kind", HOOK_KINDS)
def test_the_runner_sets_what_the_table_says(kind: str, tmp_path: Path) -> None:
    files = {
        key: tmp_path / "live" / f"{key}.pem" for key in ("cert", "chain", "fullchain", "privkey")
    }
    env = HookEnvironment(kind=kind, lineage="x.test", names=("x.test",), files=files)
    given = set(env.variables({"PATH": "/bin"})) - set(PASSED_THROUGH)
    expected = {name for name, kinds in documented().items() if kind in kinds} - FROM_THE_MANAGER
    assert given == expected


def test_the_manager_sets_the_rest() -> None:
    table = documented()
    assert set(table) >= FROM_THE_MANAGER
    source = (ROOT / "src" / "certherd" / "manager" / "failures.py").read_text()
    source += (ROOT / "src" / "certherd" / "manager" / "hooks.py").read_text()
    for name in FROM_THE_MANAGER:
        assert f'"{name}"' in source, name
    assert table["CERTHERD_ERROR"] == table["CERTHERD_FAILURES"] == {"failure"}
    assert table["CERTHERD_VERSION"] == {"deploy", "failure"}


def test_every_kind_is_documented() -> None:
    text = DOC.read_text()
    for kind in HOOK_KINDS:
        assert f"| `{kind}` |" in text, kind
