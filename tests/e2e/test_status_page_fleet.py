"""The status page of a fleet node (issue 14, item 3: "which node holds it"): two nodes
on one PostgreSQL obtain four lineages from ``apply --defer``; either node's page lists
all four with the node that obtained each, names itself, and shows the node holding a
lineage's lease while it is held (here a third holder, ``gamma``, holds one)."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e_helpers import wait_until
from e2e_runner import Certherd, PebbleFactory
from fleet_helpers import dns_hook, fleet_config, start_node, wait_all_live
from playwright.sync_api import sync_playwright
from tests.servers.net import free_port
from tests.servers.postgres import PostgresServer

from certherd.storage.base import Lease
from certherd.testing.pebble import PebbleServer

NAMES = [f"s{n}.fleet.test" for n in range(4)]


@pytest.fixture(scope="module")
def fleet_pebble(pebble_factory: PebbleFactory) -> PebbleServer:
    return pebble_factory(authz_reuse_percent=0)


@pytest.fixture
def nodes(fleet_pebble: PebbleServer, tmp_path: Path) -> Iterator[list[Certherd]]:
    scratch = tmp_path / "runs"
    scratch.mkdir()
    made = [Certherd(tmp_path / f"host{n}", fleet_pebble, scratch) for n in range(2)]
    for node in made:
        node.config_dir.mkdir()
    yield made
    for node in made:
        node.stop_all()


def _hold(url: str, name: str) -> Lease:
    from certherd.storage.postgresql import PostgresStorage

    async def take() -> Lease:
        storage = PostgresStorage(url, node="gamma")
        try:
            return await storage.acquire(name, ttl=120, wait=30)
        finally:
            await storage.aclose()

    return asyncio.run(take())


def test_a_nodes_page_shows_which_node_obtained_and_holds_each(
    nodes: list[Certherd], fleet_pebble: PebbleServer, postgres: PostgresServer, tmp_path: Path
) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("the status page tests need Chromium: apt-get install chromium")
    url = postgres.url(postgres.database())
    config = fleet_config(fleet_pebble, dns_hook(fleet_pebble, tmp_path), NAMES)
    (nodes[0].config_dir / "certherd.toml").write_text(config)
    nodes[0]("--storage", url, "apply", "--defer")
    port = free_port()
    for n, node in enumerate(nodes):
        metrics = ["--metrics", f"127.0.0.1:{port}"] if n == 1 else []
        start_node(
            node, url, ("alpha", "beta")[n], "--concurrency", "2", "--max-interval", "5", *metrics
        )
    wait_all_live(nodes, set(NAMES), 120)
    held = _hold(url, NAMES[0])
    assert held.holder.startswith("gamma/")

    base = f"http://127.0.0.1:{port}"

    def listed() -> dict[str, dict[str, object]]:
        try:
            document = httpx.get(f"{base}/status.json", timeout=5, trust_env=False).json()
        except (httpx.HTTPError, ValueError):
            return {}
        return {row["name"]: row for row in document["lineages"]}

    wait_until(
        lambda: (
            listed().get(NAMES[0], {}).get("holder") == "gamma"
            and all(row["obtained_by"] for row in listed().values())
        ),
        20,
        "the page's data to show the lease holder and who obtained each",
    )
    rows = listed()
    assert set(rows) == set(NAMES)
    assert {row["obtained_by"] for row in rows.values()} <= {"alpha", "beta"}

    with sync_playwright() as playwright:
        # /dev/shm is small in containers: Chromium then uses /tmp for shared memory.
        args = ["--disable-dev-shm-usage", *(["--no-sandbox"] if os.geteuid() == 0 else [])]
        browser = playwright.chromium.launch(executable_path=chromium, args=args)
        try:
            page = browser.new_page()
            page.goto(f"{base}/")
            page.wait_for_selector("body[data-loaded=true]", timeout=15000)
            assert "node beta" in page.locator("#meta").inner_text()
            holding = page.locator(f'#rows tr[data-name="{NAMES[0]}"] td').nth(6).inner_text()
            assert "gamma (working on it)" in holding, holding
            assert f"obtained by {rows[NAMES[0]]['obtained_by']}" in holding
            for name in NAMES[1:]:
                cell = page.locator(f'#rows tr[data-name="{name}"] td').nth(6).inner_text()
                assert cell == rows[name]["obtained_by"], cell
            page.fill("#search", "gamma")
            assert page.locator("#rows tr").count() == 1
        finally:
            browser.close()
