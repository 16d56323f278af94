"""Fixtures for the web-server installers: a real nginx in a temporary server root.

``nginx_root``: an :class:`~tests.servers.nginx.NginxRoot` (not started: write its sites
first, then ``start_or_fail(root)``); stopped and removed after the test. A missing nginx
fails with the install hint, never a skip.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.servers.nginx import NginxRoot


@pytest.fixture
def nginx_root() -> Iterator[NginxRoot]:
    root = NginxRoot()
    yield root
    root.stop()
