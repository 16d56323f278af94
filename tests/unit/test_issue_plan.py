"""Where ``issue``'s names go (certherd.manager.request.plan_issue): pure decisions."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certherd.challenges.spec import SolverSpec
from certherd.errors import ConfigError
from certherd.manager.request import (
    IssuePlan,
    earlier_wildcard_lineage,
    plan_issue,
    settings_changes,
)
from certherd.settings import HookSettings, LineageSettings
from certherd.storage.memory import MemoryStorage


def test_a_new_name_gets_a_new_lineage() -> None:
    assert plan_issue(["a.test"], {"b.test": ("b.test",)}) == IssuePlan("a.test", "new")


def test_the_same_names_in_any_order_and_spelling_go_to_the_lineage_holding_them() -> None:
    existing = {"site": ("www.a.test", "a.test."), "a.test": ("a.test",)}
    plan = plan_issue(["a.test", "www.a.test"], existing)
    assert plan == IssuePlan("site", "same", ("www.a.test", "a.test."))


def test_a_superset_expands_the_largest_lineage_it_contains() -> None:
    existing = {"a.test": ("a.test",), "two": ("a.test", "b.test"), "c.test": ("c.test",)}
    plan = plan_issue(["a.test", "b.test", "d.test"], existing)
    assert (plan.lineage, plan.kind) == ("two", "expand")
    assert plan.change(["a.test", "b.test", "d.test"]) == "adds d.test"


def test_between_equal_subsets_the_default_lineage_wins() -> None:
    existing = {"_.a.test": ("*.a.test",), "a.test": ("a.test",)}
    assert plan_issue(["a.test", "*.a.test"], existing).lineage == "a.test"
    assert plan_issue(["*.a.test", "a.test"], existing).lineage == "_.a.test"


def test_the_wildcard_and_the_apex_never_share_a_lineage() -> None:
    existing = {"_.a.test": ("*.a.test",)}
    assert plan_issue(["a.test"], existing) == IssuePlan("a.test", "new")
    assert plan_issue(["*.a.test"], {"a.test": ("a.test",)}) == IssuePlan("_.a.test", "new")


def test_other_names_under_the_default_lineage_need_a_name() -> None:
    # A lineage imported from Certbot keeps Certbot's name: "a.test" for "*.a.test".
    with pytest.raises(ConfigError, match=r"lineage 'a.test' holds other names \(\*\.a\.test\)"):
        plan_issue(["a.test"], {"a.test": ("*.a.test",)})
    with pytest.raises(ConfigError, match=r"give name a\.test to replace") as caught:
        plan_issue(["a.test"], {"a.test": ("a.test", "www.a.test")})
    assert caught.value.settings == ("name",)  # the CLI says --name (tests/e2e/test_cli_names.py)


def test_a_damaged_default_lineage_is_not_overwritten() -> None:
    with pytest.raises(ConfigError, match="settings are damaged"):
        plan_issue(["a.test"], {"a.test": None})


def test_a_named_lineage_is_replaced_expanded_or_kept() -> None:
    existing = {"x": ("a.test", "b.test")}
    assert plan_issue(["b.test", "a.test"], existing, lineage="x").kind == "same"
    assert plan_issue(["a.test", "b.test", "c.test"], existing, lineage="x").kind == "expand"
    replaced = plan_issue(["a.test", "c.test"], existing, lineage="x")
    assert replaced.kind == "replace"
    assert replaced.change(["a.test", "c.test"]) == "adds c.test; drops b.test"
    assert plan_issue(["a.test"], existing, lineage="y") == IssuePlan("y", "new")


def test_an_idn_change_is_shown_in_both_forms() -> None:
    plan = IssuePlan("x", "expand", ("a.test",))
    assert plan.change(["a.test", "xn--bcher-kva.test"]) == (
        "adds xn--bcher-kva.test (bücher.test)"
    )


def _settings(**changes: object) -> LineageSettings:
    base = LineageSettings("a.test", ("a.test",), "https://ca/dir", (SolverSpec("http", {}),))
    return LineageSettings(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def test_settings_changes_are_named() -> None:
    stored = _settings()
    assert settings_changes(stored, stored) == []
    wanted = _settings(hooks=HookSettings(deploy=("true",)), directory_url="https://other/dir")
    assert settings_changes(wanted, stored) == ["CA", "hooks"]


def test_an_earlier_wildcard_lineage_is_kept_by_the_config_file() -> None:
    async def run() -> None:
        storage = MemoryStorage()
        await _settings(name="a.test", names=("*.a.test",)).save(storage)
        assert await earlier_wildcard_lineage(storage, "_.a.test", ["*.a.test"]) == "a.test"
        assert await earlier_wildcard_lineage(storage, "_.a.test", ["*.a.test", "b.test"]) == (
            "_.a.test"
        )
        assert await earlier_wildcard_lineage(storage, "b.test", ["*.a.test"]) == "b.test"

    asyncio.run(run())


_pool = st.sampled_from(["a.test", "www.a.test", "*.a.test", "b.test", "::1", "c.test"])
_held = st.lists(_pool, min_size=1, max_size=4, unique=True).map(tuple)
_lineage = st.sampled_from(["a.test", "_.a.test", "b.test", "__1", "site", "c.test"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_pool, min_size=1, max_size=4, unique=True),
    st.dictionaries(_lineage, st.one_of(st.none(), _held), max_size=4),
)
def test_without_a_name_no_lineage_loses_a_name(
    names: list[str], existing: dict[str, tuple[str, ...] | None]
) -> None:
    """Issue 9 item 9: never a silent replacement of another lineage's names."""
    try:
        plan = plan_issue(names, existing)
    except ConfigError:
        return  # refused, nothing changed
    assert plan.kind != "replace"
    if plan.kind == "new":
        assert plan.lineage not in existing
    else:
        held = existing[plan.lineage]
        assert held is not None
        assert set(held) <= set(names)  # kept or expanded, never a name dropped
