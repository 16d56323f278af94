"""The import graph points one way (STYLE.md "Layout"): no cycles, nothing low imports high.

``cli -> {daemon, install, migrate} -> manager -> {challenges, dns, storage, hooks} ->
acme -> crypto``. Every import counts, including those inside functions and under
``TYPE_CHECKING``: a lazy import still ties the lower package to the higher one.
"""

from __future__ import annotations

import ast
import graphlib
from collections import defaultdict
from pathlib import Path

import certherd

SOURCE = Path(certherd.__file__).parent

# Low to high; a package may import only packages of a lower rank (and itself). Packages on
# one rank are siblings and must not import each other.
RANKS: dict[str, int] = {
    "errors": 0,
    "_lazy": 0,
    "_nofollow": 0,
    "clock": 1,
    "key_types": 1,
    "schema": 1,
    "addresses": 1,
    "programs": 1,
    "config_dir": 1,
    "testing": 2,
    "crypto": 2,
    "acme": 3,
    "names": 4,
    "storage": 5,
    "dns": 5,
    "hooks": 5,
    "challenges": 6,
    "settings": 7,
    "config": 8,
    "manager": 9,
    "daemon": 10,
    "install": 10,
    "migrate": 10,
    "app": 11,
    "cli": 12,
    "__main__": 13,
}


def _package(dotted: str) -> str | None:
    """The top-level part of ``certherd.x.y`` (``x``); None for ``certherd`` itself."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "certherd" else None


def _imports() -> dict[str, set[tuple[str, str]]]:
    """Package -> {(imported package, importing file)}, from every module's syntax tree."""
    edges: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for path in sorted(SOURCE.rglob("*.py")):
        relative = path.relative_to(SOURCE.parent).with_suffix("")
        source = _package(".".join(relative.parts).removesuffix(".__init__"))
        if source is None:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module]
                if node.module == "certherd":
                    targets = [f"certherd.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            for target in targets:
                package = _package(target)
                if package is not None and package != source:
                    edges[source].add((package, str(path.relative_to(SOURCE))))
    return edges


def test_the_packages_form_no_cycle() -> None:
    graph = {source: {target for target, _ in targets} for source, targets in _imports().items()}
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle


def test_no_package_imports_a_higher_or_sibling_one() -> None:
    wrong = sorted(
        f"{where} imports certherd.{target}"
        for source, targets in _imports().items()
        for target, where in targets
        if source in RANKS and target in RANKS and RANKS[target] >= RANKS[source]
    )
    assert not wrong, "\n".join(wrong)


def test_the_rooms_split_out_of_the_manager_stay_above_it() -> None:
    """Issue 11 item 4: the daemon, installers and Certbot migration left ``manager/``;
    the manager (and everything below it) must not reach back up into them."""
    edges = _imports()
    assert ("manager", "daemon/loop.py") in edges["daemon"]
    upward = {"daemon", "install", "migrate", "cli"}
    back = sorted(
        f"{where} imports certherd.{target}"
        for source, targets in edges.items()
        if source in RANKS and RANKS[source] <= RANKS["manager"]
        for target, where in targets
        if target in upward
    )
    assert not back, "\n".join(back)
    for moved in ("daemon", "metrics", "schedule", "certbot_conf", "certbot_import"):
        assert not (SOURCE / "manager" / f"{moved}.py").exists(), moved
