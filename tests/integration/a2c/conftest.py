"""acme2certifier as a second real ACME server: ARI, profiles, newAuthz and EAB, which Pebble lacks.

Fixtures (session-scoped, started on first use):

- ``acme2certifier``: no EAB; ``meta.profiles`` lists ``classic`` and ``shortlived``.
- ``acme2certifier_eab``: the same, with ``externalAccountRequired``; its ``eab`` attribute maps
  key identifiers to base64url HMAC keys.
- ``a2c_dns``: the mock DNS server on ``127.0.0.1:53`` both ask; every name resolves to
  ``127.0.0.1``. Each server's ``set_txt``/``clear_txt`` reach it too.

The validator fetches http-01 from ``127.0.0.1:80`` and tls-alpn-01 from ``127.0.0.1:443``, so
these need root (as CI runs). A test that uses one of these fixtures is marked ``integration``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.servers.acme2certifier import (
    INSTALL_HINT,
    Acme2CertifierServer,
    acme2certifier_installed,
)
from tests.servers.challtestsrv import ChallTestSrv
from tests.servers.fixtures import serve

A2C_FIXTURES = frozenset({"acme2certifier", "acme2certifier_eab", "a2c_dns"})

A2C_EAB_KEYS = {
    "certherd-kid-1": "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W",
    "certherd-kid-2": "b10lLJs8l1GPIzsLP0s6pMt8O0XVGnfTaCeROxQM0BIt2XrJMDHJZBM5NuQmQJQH",
}
"""Key identifier -> base64url HMAC key (RFC 8555 §7.3.4) accepted by ``acme2certifier_eab``."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses an acme2certifier fixture as ``integration``."""
    for item in items:
        uses_a2c = A2C_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if uses_a2c and item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.integration)


def _require_acme2certifier() -> None:
    if not acme2certifier_installed():
        # A missing server is a broken test environment, never a reason to skip.
        pytest.fail(f"acme2certifier is not installed: {INSTALL_HINT}", pytrace=False)


@pytest.fixture(scope="session")
def a2c_dns() -> Iterator[ChallTestSrv]:
    """The mock DNS server on 127.0.0.1:53 shared by both acme2certifier servers."""
    _require_acme2certifier()
    yield from serve(ChallTestSrv())


@pytest.fixture(scope="session")
def acme2certifier(a2c_dns: ChallTestSrv) -> Iterator[Acme2CertifierServer]:
    """acme2certifier without EAB, on https://127.0.0.1:<port>/directory."""
    yield from serve(Acme2CertifierServer(dns=a2c_dns))


@pytest.fixture(scope="session")
def acme2certifier_eab(a2c_dns: ChallTestSrv) -> Iterator[Acme2CertifierServer]:
    """acme2certifier that requires an external account binding to one of `A2C_EAB_KEYS`."""
    yield from serve(Acme2CertifierServer(dns=a2c_dns, eab=A2C_EAB_KEYS))
