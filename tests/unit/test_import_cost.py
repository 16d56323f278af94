"""What a library user pays to import the ACME client (issue 11 item 12).

httpx's ``__init__`` imports its command-line tool (click, rich, pygments) whenever those
are installed, and they are (the certherd CLI needs them): about 35 of the 60 ms httpx
takes. ``certherd.acme`` imports httpx when the first client's transport is made, not
with the module. Each check runs in a fresh interpreter, so nothing the test session
imported counts; the times themselves are measured by ``bench/import_time.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from certherd.testing.pebble import PebbleServer

# Not loaded by `from certherd.acme import AcmeClient`: the HTTP stack (httpx, and what
# it loads: httpcore, h11, anyio) and httpx's command-line tool.
DEFERRED = ("httpx", "httpcore", "h11", "anyio", "click", "rich", "pygments")


def loaded_after(code: str) -> list[str]:
    """Which DEFERRED modules a fresh interpreter holds after running ``code``."""
    report = f"print(json.dumps(sorted(set({DEFERRED!r}) & set(sys.modules))))"
    script = f"{code}\nimport sys, json\n{report}\n"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.parametrize(
    "statement",
    [
        "from certherd.acme import AcmeClient",
        "from certherd.acme import SyncAcmeClient",
        "import certherd.acme.client, certherd.acme.transport",
    ],
)
def test_importing_the_client_leaves_the_http_stack_unloaded(statement: str) -> None:
    assert loaded_after(statement) == []


def test_importing_certherd_leaves_the_entry_point_unloaded() -> None:
    """``import certherd`` (which ``certherd --version`` does) loads no part of the entry
    point; ``certherd.Certherd`` loads it on first use, and still not the HTTP stack."""
    code = "import certherd, sys\nassert 'certherd.app' not in sys.modules, 'eager'"
    assert loaded_after(code) == []
    code = "from certherd import Certherd\nassert Certherd.__module__ == 'certherd.app.entry'"
    assert loaded_after(code) == []


def test_the_first_client_loads_httpx_and_talks_to_the_ca(pebble: PebbleServer) -> None:
    """The deferred import happens where it is needed: a fresh process that imported
    nothing but certherd.acme reads Pebble's directory, then fails cleanly on a closed
    port (the connection-error path, which names httpx's exceptions, runs too)."""
    bundle = str(pebble.ca_bundle)
    code = f"""\
import asyncio
from cryptography.hazmat.primitives.asymmetric import ec
from certherd.acme import AcmeClient, RetryPolicy
from certherd.errors import TransportError

async def main():
    key = ec.generate_private_key(ec.SECP256R1())
    async with AcmeClient({pebble.directory_url!r}, key, ca_bundle={bundle!r}) as client:
        directory = await client.directory()
        assert directory.new_order.startswith("https://"), directory
    closed = AcmeClient(
        "http://127.0.0.1:9/directory", key, allow_http=True,
        retry=RetryPolicy(connection_attempts=1),
    )
    try:
        await closed.directory()
    except TransportError:
        pass
    else:
        raise AssertionError("a closed port answered")
    finally:
        await closed.aclose()

asyncio.run(main())
"""
    assert "httpx" in loaded_after(code)
