"""Fixtures for solvers against real web servers.

- ``served_dir``: a fresh folder that nginx workers (``nobody`` when run as root) can
  read, unlike pytest's 0700 ``tmp_path``; removed afterwards.
- ``nginx_factory``: ``nginx_factory(webroot, port=0)`` starts an :class:`NginxServer`;
  all are stopped when the test ends. A missing nginx fails with the install hint: it is
  never a skip.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.servers.fixtures import start_or_fail
from tests.servers.nginx import NginxServer

NginxFactory = Callable[..., NginxServer]


@pytest.fixture
def served_dir() -> Iterator[Path]:
    """A new empty folder under the system temp dir, mode 0755 (others may read it)."""
    folder = Path(tempfile.mkdtemp(prefix="certherd-served-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def nginx_factory() -> Iterator[NginxFactory]:
    """Start nginx serving a webroot: ``nginx_factory(webroot, port=0, **options)``."""
    servers: list[NginxServer] = []

    def start(webroot: Path, port: int = 0, **options: object) -> NginxServer:
        server = NginxServer(webroot, port, **options)  # type: ignore[arg-type]
        servers.append(server)
        return start_or_fail(server)

    yield start
    for server in servers:
        server.stop()
