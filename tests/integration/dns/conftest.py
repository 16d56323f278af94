"""BIND9 for the DNS provider tests: an authoritative server that takes RFC 2136 updates.

``bind9`` (session-scoped, started on first use) serves ``certherd.test.`` and
``delegated.test.`` on ``127.0.0.1:<free port>`` (UDP and TCP); its TSIG key
(``bind9.tsig_key_name``, ``bind9.tsig_secret``, ``bind9.tsig_algorithm``, ``bind9.key_file``)
may change anything in both zones. Every name in them resolves to ``127.0.0.1``. A missing
``named`` fails the tests that need it with the install hint: it is never a skip.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.servers.bind9 import Bind9Server
from tests.servers.fixtures import serve

BIND9_ZONES = ("certherd.test.", "delegated.test.")


@pytest.fixture(scope="session")
def bind9() -> Iterator[Bind9Server]:
    """BIND9 serving ``certherd.test.`` and ``delegated.test.``, shared by the session."""
    yield from serve(Bind9Server(BIND9_ZONES))
