"""Fixtures for the web-server installers: a real nginx (and HAProxy) in a temporary root.

``nginx_root``: an :class:`~tests.servers.nginx.NginxRoot` (not started: write its sites
first, then ``start_or_fail(root)``); stopped and removed after the test. A missing nginx
fails with the install hint, never a skip.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.servers.fixtures import start_or_fail
from tests.servers.haproxy import HaproxyRoot
from tests.servers.nginx import NginxRoot


@pytest.fixture
def nginx_root() -> Iterator[NginxRoot]:
    root = NginxRoot()
    yield root
    root.stop()


@pytest.fixture
def haproxy_root() -> Iterator[HaproxyRoot]:
    """A real HAProxy (master-worker, runtime socket) in a temporary root, started."""
    root = HaproxyRoot()
    yield start_or_fail(root)
    root.stop()
