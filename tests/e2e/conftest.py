"""End-to-end fixtures: the ``certherd`` command run in a subprocess, as a user runs it.

Every test gets its own config dir (so its own ACME account) and talks to the session's
Pebble (``pebble`` from tests/conftest.py), which validates http-01 for real on the port
``certherd issue --http`` listens on.
The ``certherd`` fixture runs ``python -m certherd.cli.main --config-dir DIR ARGS...``
and returns ``(code, stdout, stderr)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_runner import Certherd, ca_flags_for

from certherd.testing.pebble import PebbleServer

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """End-to-end tests need real servers: mark them ``integration`` too."""
    for item in items:
        if item.path.is_relative_to(_HERE) and item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def ca_flags(pebble: PebbleServer) -> list[str]:
    """``--server ... --ca-bundle ... --agree-tos --email ...`` for the session Pebble."""
    return ca_flags_for(pebble)


@pytest.fixture
def certherd(pebble: PebbleServer, tmp_path: Path) -> Iterator[Certherd]:
    """``certherd(*args, env=..., check=True)`` with a fresh config dir of this test."""
    scratch = tmp_path / "runs"
    scratch.mkdir()
    runner = Certherd(tmp_path / "config", pebble, scratch)
    yield runner
    runner.stop_all()
