"""``certherd check`` for a lineage whose http-01 is answered by the web server it is
installed into (the ``nginx`` solver kind, `issue --nginx`): the probe goes through the
installer's include into the running nginx and is fetched from it; with nginx stopped,
the next renewal could not answer, and check says so (exit 1)."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator

import pytest
from e2e_helpers import wait_until
from e2e_runner import Certherd
from tests.servers.fixtures import start_or_fail
from tests.servers.net import LOOPBACK, free_port, tcp_answers
from tests.servers.nginx import NginxRoot

from certherd.testing.pebble import PebbleServer

NAME = "127.0.0.1"
SITE = """server {
    listen 127.0.0.1:{port};
    server_name 127.0.0.1;
    root {html};
}
"""


@pytest.fixture
def nginx(pebble: PebbleServer) -> Iterator[NginxRoot]:
    """nginx on the port Pebble validates http-01 on, serving the name."""
    root = NginxRoot(http_port=pebble.options.http_port)
    root.site("default", SITE.replace("{port}", str(root.http_port)).replace(
        "{html}", str(root.root / "html")
    ))  # fmt: skip
    yield start_or_fail(root)
    root.stop()


def _line(stdout: str, check: str) -> str:
    for line in stdout.splitlines():
        if re.match(rf"^{re.escape(NAME)}\s+(?:ok|WARN|FAIL|skip)\s+{re.escape(check)}: ", line):
            return line
    raise AssertionError(f"no {check!r} line in:\n{stdout}")


def test_the_probe_goes_through_the_installed_nginx(
    certherd: Certherd, pebble: PebbleServer, nginx: NginxRoot
) -> None:
    flags = ["--nginx", "--nginx-server-root", str(nginx.root), "--https-port", str(free_port())]
    certherd("issue", "-d", NAME, *flags, *certherd.ca)
    port = str(pebble.options.http_port)

    result = certherd("check", "--http-port", port, check=False)

    assert result.code == 0, result.describe()
    http = _line(result.stdout, f"http-01 {NAME}")
    assert "  ok  " in http, http
    assert "the probe was served at" in http, http
    assert "  ok  " in _line(result.stdout, "installer nginx")
    assert not (nginx.root / "certherd" / "acme-challenge.conf").exists()  # taken away again

    # nginx stopped, its config left as it is (as after a crash, or `systemctl stop`).
    os.kill(nginx.master_pid, signal.SIGTERM)
    wait_until(lambda: not tcp_answers(LOOPBACK, nginx.http_port), 15, "nginx to stop")
    result = certherd("check", "--http-port", port, check=False)

    assert result.code == 1, result.describe()
    http = _line(result.stdout, f"http-01 {NAME}")
    assert "  FAIL  " in http, http
    assert "cannot publish the probe" in http, http
