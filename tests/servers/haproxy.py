"""Launcher for Debian's HAProxy on loopback, laid out as the HAProxy installer expects.

``haproxy -W -db -f ROOT/haproxy.cfg``: master-worker (as Debian's unit runs it, ``-Ws``)
in the foreground, so the child's pid is the master's; a fresh 0755 temporary root holds
the config, the pid file, the runtime socket (``stats socket ... level admin``, left out
with ``socket=False``) and an empty ``certs/`` crt directory (0700). The one frontend,
``web``, answers every request itself (``http-request return``) on a plain HTTP port.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import tempfile
import time
from pathlib import Path
from typing import Self

from cryptography import x509
from tests.servers.net import LOOPBACK, ServerStartError, free_port, tcp_answers
from tests.servers.process import ChildProcess, Launcher, stop_and_remove

__all__ = ["HAPROXY_INSTALL_HINT", "HaproxyRoot", "find_haproxy"]

HAPROXY_INSTALL_HINT = "haproxy is not installed: run `apt-get install -y haproxy`"


def find_haproxy() -> str | None:
    """The haproxy binary: on PATH, or Debian's /usr/sbin/haproxy."""
    found = shutil.which("haproxy")
    if found is None and os.access("/usr/sbin/haproxy", os.X_OK):
        found = "/usr/sbin/haproxy"
    return found


class HaproxyRoot(Launcher):
    """HAProxy run from a temporary root: ``config``, ``crt_dir``, ``socket``, ``pidfile``."""

    def __init__(
        self, *, socket: bool = True, level: str = "admin", startup_timeout: float = 15.0
    ) -> None:
        self.http_port = free_port(LOOPBACK)
        self.startup_timeout = startup_timeout
        self.root = Path(tempfile.mkdtemp(prefix="haproxy-root-"))
        self.root.chmod(0o755)
        self.crt_dir = self.root / "certs"
        self.crt_dir.mkdir(mode=0o700)
        self.config = self.root / "haproxy.cfg"
        self.socket = self.root / "admin.sock"
        self.pidfile = self.root / "haproxy.pid"
        self.binary = find_haproxy()
        self._process: ChildProcess | None = None
        stats = f"    stats socket {self.socket} mode 600 level {level}\n" if socket else ""
        self.config.write_text(
            "# a test HAProxy: one HTTP frontend answering by itself\n"
            "global\n"
            f"{stats}"
            f"    pidfile {self.pidfile}\n"
            "\n"
            "defaults\n"
            "\tmode http\n"
            "\ttimeout connect 5s\n"
            "\ttimeout client 10s   # comments and tabs stay\n"
            "\ttimeout server 10s\n"
            "\n"
            "frontend web\n"
            f"    bind 127.0.0.1:{self.http_port}\n"
            '    http-request return status 200 content-type text/plain string "hello"\n'
        )

    def snapshot(self) -> dict[str, bytes]:
        """Every file's bytes but what runs (pid file, socket, logs, certherd's backups)."""
        found: dict[str, bytes] = {}
        for path in sorted(self.root.rglob("*")):
            relative = path.relative_to(self.root)
            if relative.parts[0] in ("certherd", "logs") or path.is_dir() or path.is_socket():
                continue
            if path in (self.pidfile,) or path.name.startswith(".certherd"):
                continue
            found[str(relative)] = path.read_bytes()
        return found

    @property
    def master_pid(self) -> int:
        if self._process is None:
            raise RuntimeError("HaproxyRoot is not started")
        return self._process.pid

    def workers(self) -> set[int]:
        """The master's living children (its workers, old ones still finishing
        included); one that exited and waits to be reaped (a zombie) is not counted."""
        found = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rpartition(")")[2].split()
                except OSError:
                    continue
                if len(fields) > 1 and fields[1] == str(self.master_pid) and fields[0] != "Z":
                    found.add(int(entry.name))
        return found

    def worker(self, timeout: float = 10.0) -> int:
        """The one worker, once the old one of a reload has finished.

        Sound only outside a reload: during one, the old worker may exit before the
        master forks the new one (seen: 4 ms without a worker). certherd's reload
        returns once a new child runs and the old ones stopped listening, so after it
        the only wait is for the old worker to leave.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = self.workers()
            if len(found) == 1:
                return found.pop()
            if time.monotonic() > deadline:
                raise AssertionError(f"haproxy {self.master_pid} has workers {sorted(found)}")
            time.sleep(0.02)

    def reload(self, timeout: float = 10.0) -> None:
        """A graceful master-worker reload (SIGUSR2 to the master), as a user's own
        change is made live; returns once only a new worker runs."""
        old = self.workers()
        os.kill(self.master_pid, signal.SIGUSR2)
        deadline = time.monotonic() + timeout
        while not (found := self.workers()) or found & old:
            if time.monotonic() > deadline:
                raise AssertionError(f"haproxy {self.master_pid} did not reload: {sorted(found)}")
            time.sleep(0.02)

    def start(self) -> Self:
        if self.binary is None:
            raise ServerStartError(HAPROXY_INSTALL_HINT)
        (self.root / "logs").mkdir(exist_ok=True)
        command = [self.binary, "-W", "-db", "-f", str(self.config)]
        self._process = ChildProcess.spawn(command, self.root / "logs" / "haproxy.log")
        try:
            self._process.wait_ready(
                lambda: tcp_answers(LOOPBACK, self.http_port) and self.pidfile.exists(),
                timeout=self.startup_timeout,
                what=f"haproxy at {self.root}",
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        stop_and_remove(process, self.root, grace=5.0)

    def served_certificate(self, port: int, server_name: str) -> x509.Certificate | None:
        """The leaf certificate served on ``port`` for SNI ``server_name``, unverified."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with (
                socket.create_connection((LOOPBACK, port), timeout=2.0) as sock,
                context.wrap_socket(sock, server_hostname=server_name) as tls,
            ):
                der = tls.getpeercert(binary_form=True)
        except (OSError, ssl.SSLError):
            return None
        return x509.load_der_x509_certificate(der) if der else None
