"""Integration tests run against real servers; each gets the ``integration`` marker."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from certherd.testing.pebble import PebbleServer

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration with ``integration`` (``-m integration``)."""
    for item in items:
        if item.path.is_relative_to(_HERE) and item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def https_client() -> Iterator[Callable[[PebbleServer], httpx.Client]]:
    """``https_client(server)``: a plain httpx client trusting ``server.ca_bundle`` only."""
    clients: list[httpx.Client] = []

    def make(server: PebbleServer) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(server.ca_bundle))
        client = httpx.Client(verify=context, timeout=10.0, trust_env=False)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
