"""A fleet node (``run --node``) tells the expiring-soon event of a certificate it cannot
renew, as the lone daemon does (issue 14 item 2): on PostgreSQL, with Pebble issuing
12-second certificates (a third left, below notify_expiry_days = 1, 8 s after issuance),
the CA then unreachable; one message, to a real HTTP receiver."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import json_receiver, wait_until
from e2e_runner import Certherd, PebbleFactory
from fleet_helpers import fast_dns_hook, fleet_config
from tests.integration.acme_helpers import forget_authorizations as forget
from tests.servers.postgres import PostgresServer

from certherd.app import Certherd as Certherd_
from certherd.testing.pebble import PebbleServer

NAME = "expiring.fleet.test"
NOTIFY = '[defaults]\nnotify = [{ env = "CERTHERD_TEST_NOTIFY" }]\nnotify_expiry_days = 1\n'


@pytest.fixture(scope="module")
def short_lived(pebble_factory: PebbleFactory) -> PebbleServer:
    return pebble_factory(certificate_validity_seconds=12, authz_reuse_percent=0)


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """apprise's json:// posts, as received."""
    with json_receiver("hooks/fleet") as received:
        yield received


async def _forget_authorizations(storage: str) -> None:
    """Pebble reuses a valid authorization now and then even with authz_reuse_percent=0:
    the renewal meant to fail would pass."""
    async with Certherd_(storage) as certherd:
        settings, _ = await certherd.load(NAME)
        await forget(await certherd.manager.client(certherd.manager.ca_for(settings)))


def test_a_fleet_node_tells_a_certificate_it_cannot_renew_expires_soon(
    short_lived: PebbleServer,
    postgres: PostgresServer,
    receiver: tuple[str, list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    url, posts = receiver
    scratch = tmp_path / "runs"
    scratch.mkdir()
    node = Certherd(tmp_path / "host0", short_lived, scratch)
    node.config_dir.mkdir()
    storage = postgres.url(postgres.database())
    env = {"CERTHERD_TEST_NOTIFY": url}
    config = fleet_config(short_lived, fast_dns_hook(short_lived, tmp_path), [NAME])
    toml = node.config_dir / "certherd.toml"
    toml.write_text(config.replace("[defaults]\n", NOTIFY))
    node("--storage", storage, "apply", env=env)
    # The DNS hook breaks: every renewal from now on fails (no authorization reused).
    (tmp_path / "fast-dns-hook").write_text("#!/bin/sh\necho 'the DNS API refused' >&2\nexit 1\n")
    asyncio.run(_forget_authorizations(storage))
    running = node.start(
        "--storage", storage, "run", "--node", "node0",
        "--min-interval", "1", "--max-interval", "2",
        env=env,
    )  # fmt: skip
    try:
        expiring = f"certherd: certificate expires soon: {NAME}"
        wait_until(lambda: expiring in [p["title"] for p in posts], 40, "the expiring message")
        time.sleep(4)  # more rounds: still one message
        titles = [p["title"] for p in posts]
        assert titles.count(expiring) == 1, titles
        [told] = [p for p in posts if p["title"] == expiring]
        assert "was not renewed" in told["message"], told
    finally:
        running.process.send_signal(signal.SIGTERM)
    assert running.wait(timeout=40).code == 0
