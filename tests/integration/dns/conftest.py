"""BIND9 for the DNS provider tests: an authoritative server that takes RFC 2136 updates.

``bind9`` (session-scoped, started on first use) serves ``certherd.test.`` and
``delegated.test.`` on ``127.0.0.1:<free port>`` (UDP and TCP); its TSIG key
(``bind9.tsig_key_name``, ``bind9.tsig_secret``, ``bind9.tsig_algorithm``, ``bind9.key_file``)
may change anything in both zones. Every name in them resolves to ``127.0.0.1``. A missing
``named`` fails the tests that need it with the install hint: it is never a skip.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The launchers live in tests/servers; make `tests` importable however pytest was started.
_REPO_ROOT = str(Path(__file__).resolve().parents[3])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from tests.servers.bind9 import Bind9Server  # noqa: E402
from tests.servers.net import ServerStartError  # noqa: E402

BIND9_ZONES = ("certherd.test.", "delegated.test.")


@pytest.fixture(scope="session")
def bind9() -> Iterator[Bind9Server]:
    """BIND9 serving ``certherd.test.`` and ``delegated.test.``, shared by the session."""
    server = Bind9Server(BIND9_ZONES)
    try:
        server.start()
    except ServerStartError as err:
        pytest.fail(str(err), pytrace=False)
    try:
        yield server
    finally:
        server.stop()
