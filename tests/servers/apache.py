"""Launcher for Debian's Apache 2.4 in a temporary server root laid out like
``/etc/apache2``: what the Apache installer edits.

:class:`ApacheRoot` copies Debian's own ``/etc/apache2`` (``apache2.conf``, ``ports.conf``,
``mods-*``, ``conf-*``, ``sites-*`` with ``000-default.conf`` and ``default-ssl.conf``)
into a fresh 0755 folder, writes an ``envvars`` that keeps the pid file, runtime, lock
and log folders inside it, and puts the free HTTP port in place of 80 (and a free one in
place of 443 in ``ports.conf``). ``apache2 -d ROOT -DFOREGROUND`` runs as a child in its
own process group; ``APACHE_CONFDIR=ROOT apache2ctl ...`` (what certherd runs) reaches
this Apache alone. ``state`` is the folder to give a2enmod as APACHE_STATE_DIRECTORY
(instead of /var/lib/apache2).

Run as root, its children run as ``www-data``: served folders must be traversable.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import tempfile
from pathlib import Path
from typing import Self

from cryptography import x509
from tests.servers.net import LOOPBACK, ServerStartError, free_port, tcp_answers
from tests.servers.process import ChildProcess, Launcher, stop_and_remove

__all__ = ["INSTALL_HINT", "ApacheRoot", "find_apache"]

INSTALL_HINT = "Apache is not installed: run `apt-get install -y apache2`"
DEBIAN = Path("/etc/apache2")
_STOP_GRACE = 5.0


def find_apache() -> str | None:
    found = shutil.which("apache2")
    if found is None and os.access("/usr/sbin/apache2", os.X_OK):
        found = "/usr/sbin/apache2"
    return found


class ApacheRoot(Launcher):
    """Apache run from a copy of Debian's ``/etc/apache2`` (see the module docstring)."""

    def __init__(self, http_port: int = 0, *, startup_timeout: float = 15.0) -> None:
        self.http_port = http_port or free_port(LOOPBACK)
        self.ssl_port = free_port(LOOPBACK)
        """What ``ports.conf`` listens on when mod_ssl is loaded (Debian's 443)."""
        self.startup_timeout = startup_timeout
        self.binary = find_apache()
        if self.binary is None or not (DEBIAN / "apache2.conf").exists():
            raise ServerStartError(INSTALL_HINT)
        self.root = Path(tempfile.mkdtemp(prefix="apache-root-"))
        self.root.chmod(0o755)
        shutil.copytree(DEBIAN, self.root, symlinks=True, dirs_exist_ok=True)
        self.run = self.root / "run"
        self.state = Path(tempfile.mkdtemp(prefix="apache-state-"))
        for folder in ("run", "lock", "log", "html"):
            (self.root / folder).mkdir()
        (self.root / "html" / "index.html").write_text("hello from apache\n")
        self.environment = {
            "APACHE_RUN_USER": "www-data",
            "APACHE_RUN_GROUP": "www-data",
            "APACHE_PID_FILE": str(self.run / "apache2.pid"),
            "APACHE_RUN_DIR": str(self.run),
            "APACHE_LOCK_DIR": str(self.root / "lock"),
            "APACHE_LOG_DIR": str(self.root / "log"),
            "LANG": "C",
        }
        self.write(
            "envvars",
            "unset HOME\n"
            + "".join(f"export {key}={value}\n" for key, value in self.environment.items()),
        )
        ports = (self.root / "ports.conf").read_text()
        self.write(
            "ports.conf",
            ports.replace("Listen 80", f"Listen {LOOPBACK}:{self.http_port}").replace(
                "Listen 443", f"Listen {self.ssl_port}"
            ),
        )
        default = (self.root / "sites-available" / "000-default.conf").read_text()
        self.write(
            "sites-available/000-default.conf",
            default.replace("*:80", f"*:{self.http_port}").replace(
                "/var/www/html", str(self.root / "html")
            ),
        )
        self.write(
            "conf-enabled/test-html.conf",
            f'<Directory "{self.root / "html"}">\n    Require all granted\n</Directory>\n',
        )
        self._process: ChildProcess | None = None

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        if path.is_symlink():
            path.unlink()
        path.write_text(text)
        return path

    def site(self, name: str, text: str) -> Path:
        """``sites-available/NAME.conf`` with its ``sites-enabled`` link (a2ensite's)."""
        path = self.write(f"sites-available/{name}.conf", text)
        (self.root / "sites-enabled" / f"{name}.conf").symlink_to(f"../sites-available/{name}.conf")
        return path

    @property
    def env(self) -> dict[str, str]:
        """What certherd runs with: a2enmod's state kept out of /var/lib/apache2."""
        return {"APACHE_STATE_DIRECTORY": str(self.state)}

    def snapshot(self) -> dict[str, bytes]:
        """Every config file's bytes and link (certherd's folder and runtime left out)."""
        found: dict[str, bytes] = {}
        for path in sorted(self.root.rglob("*")):
            relative = path.relative_to(self.root)
            if relative.parts[0] in ("run", "lock", "log", "certherd", "live"):
                continue
            if path.is_symlink():
                found[str(relative)] = b"-> " + str(path.readlink()).encode()
            elif not path.is_dir():
                found[str(relative)] = path.read_bytes()
        return found

    @property
    def master_pid(self) -> int:
        if self._process is None:
            raise RuntimeError("ApacheRoot is not started")
        return self._process.pid

    def start(self) -> Self:
        if self.binary is None:
            raise ServerStartError(INSTALL_HINT)
        command = [self.binary, "-d", str(self.root), "-DFOREGROUND"]
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), **self.environment}
        self._process = ChildProcess.spawn(command, self.root / "log" / "stdout.log", env=env)
        try:
            self._process.wait_ready(
                lambda: tcp_answers(LOOPBACK, self.http_port),
                timeout=self.startup_timeout,
                what=f"Apache at {self.root}",
                log=self.root / "log" / "error.log",
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        stop_and_remove(process, self.root, grace=_STOP_GRACE)
        shutil.rmtree(self.state, ignore_errors=True)

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
