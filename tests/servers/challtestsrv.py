"""Launcher for `pebble-challtestsrv` as a mock DNS server on loopback (for dns-01 and A)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Self

import httpx
from tests.servers.net import LOOPBACK, ServerStartError, ensure_port_free, free_port, tcp_answers
from tests.servers.process import ChildProcess, Launcher, stop_and_remove

__all__ = ["ChallTestSrv"]


class ChallTestSrv(Launcher):
    """`pebble-challtestsrv` serving DNS only, on *host*:*dns_port* (UDP and TCP).

    Every A query is answered with *default_ipv4*; AAAA gets no answer, so a validator uses
    IPv4 only. TXT records for dns-01 are set and cleared through the management API.
    Start and stop from one thread; `set_txt` and `clear_txt` may be called from any.
    """

    def __init__(
        self,
        *,
        host: str = LOOPBACK,
        dns_port: int = 53,
        default_ipv4: str = LOOPBACK,
        startup_timeout: float = 15.0,
    ) -> None:
        self.host = host
        self.dns_port = dns_port
        self.default_ipv4 = default_ipv4
        self.startup_timeout = startup_timeout
        self.management_port = 0
        self._process: ChildProcess | None = None
        self._workdir: Path | None = None

    @property
    def management_url(self) -> str:
        """The base URL of the management API (plain HTTP)."""
        return f"http://{self.host}:{self.management_port}"

    @property
    def log_path(self) -> Path:
        """The file that receives the server's stdout and stderr."""
        if self._workdir is None:
            raise RuntimeError("ChallTestSrv is not started")
        return self._workdir / "challtestsrv.log"

    def start(self) -> Self:
        """Start the server and wait until it answers on the DNS port and the management API."""
        binary = shutil.which("pebble-challtestsrv")
        if binary is None:
            raise ServerStartError("pebble-challtestsrv not found on PATH: apt-get install pebble")
        ensure_port_free(self.dns_port, why="mock DNS for acme2certifier", host=self.host, udp=True)
        self.management_port = free_port(self.host)
        self._workdir = Path(tempfile.mkdtemp(prefix="challtestsrv-"))
        command = [
            binary,
            "-dns01", f"{self.host}:{self.dns_port}",
            "-defaultIPv4", self.default_ipv4,
            "-defaultIPv6", "",
            "-http01", "",
            "-https01", "",
            "-tlsalpn01", "",
            "-management", f"{self.host}:{self.management_port}",
        ]  # fmt: skip
        self._process = ChildProcess.spawn(command, self.log_path)
        try:
            self._process.wait_ready(
                lambda: (
                    tcp_answers(self.host, self.management_port)
                    and tcp_answers(self.host, self.dns_port)
                ),
                timeout=self.startup_timeout,
                what="pebble-challtestsrv",
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server and remove its work directory; safe to call twice."""
        process, self._process = self._process, None
        workdir, self._workdir = self._workdir, None
        stop_and_remove(process, workdir, grace=5.0)

    def set_txt(self, host: str, value: str) -> None:
        """Add a TXT record *value* for *host* (a trailing dot is added if missing).

        Repeated calls for one host add values (a wildcard and its base name share one).
        """
        self._post("/set-txt", {"host": _fqdn(host), "value": value})

    def clear_txt(self, host: str) -> None:
        """Remove every TXT record of *host*."""
        self._post("/clear-txt", {"host": _fqdn(host)})

    def _post(self, path: str, body: dict[str, str]) -> None:
        if self._process is None:
            raise RuntimeError("ChallTestSrv is not started")
        response = httpx.post(self.management_url + path, json=body, timeout=5.0, trust_env=False)
        if response.status_code != 200:
            raise RuntimeError(
                f"challtestsrv {path} {body} answered {response.status_code}: {response.text}"
            )

    def __repr__(self) -> str:
        return f"ChallTestSrv(dns={self.host}:{self.dns_port}, management={self.management_url})"


def _fqdn(host: str) -> str:
    return host if host.endswith(".") else host + "."
