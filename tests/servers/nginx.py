"""Launcher for Debian's nginx on loopback: serve a webroot over HTTP (and later over TLS).

``nginx -p PREFIX -c CONF -e ERROR_LOG -g 'daemon off;'`` runs as a foreground child in
its own process group; everything it writes (pid, logs, temp folders) stays in a fresh
temporary prefix folder. Nothing of ``/etc/nginx`` is read: ``-e`` keeps it off the
compiled-in ``/var/log/nginx/error.log`` even before the config is parsed.

Run as root, its workers run as ``nobody`` (group ``nogroup``), as a real web server
runs as another user than the ACME client: files the client writes must be readable by
others, and the webroot and every folder above it must be traversable (``o+x``).
pytest's ``tmp_path`` is not (its base is 0700); :meth:`NginxServer.start` says so.
"""

from __future__ import annotations

import grp
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import httpx
from cryptography import x509
from tests.servers.net import LOOPBACK, ServerStartError, free_port, tcp_answers
from tests.servers.process import ChildProcess, Launcher, stop_and_remove

__all__ = ["INSTALL_HINT", "NginxRoot", "NginxServer", "find_nginx"]

INSTALL_HINT = "nginx is not installed: run `apt-get install -y nginx`"
_STOP_GRACE = 5.0


def find_nginx() -> str | None:
    """The nginx binary: on PATH, or Debian's /usr/sbin/nginx (not on a user's PATH)."""
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


@dataclass(frozen=True)
class _TlsSite:
    certificate: Path
    key: Path
    port: int


class NginxServer(Launcher):
    """nginx serving ``webroot`` at ``http://127.0.0.1:<port>/`` (port 0: pick a free one).

    :meth:`serve_tls` adds an HTTPS listener for the same webroot, before or after start
    (after start: a checked config reload). Start and stop from one thread.
    """

    def __init__(
        self,
        webroot: Path,
        port: int = 0,
        *,
        host: str = LOOPBACK,
        worker_user: str | None = None,
        startup_timeout: float = 15.0,
    ) -> None:
        self.webroot = Path(webroot)
        self.port = port or free_port(host)
        self.host = host
        self.worker_user = worker_user if worker_user is not None else _default_worker_user()
        self.startup_timeout = startup_timeout
        self.tls: _TlsSite | None = None
        self._process: ChildProcess | None = None
        self._prefix: Path | None = None
        self._binary: str | None = None

    # -- paths -------------------------------------------------------------------------

    @property
    def prefix(self) -> Path:
        """The temporary folder holding config, pid file, logs and temp folders."""
        if self._prefix is None:
            raise RuntimeError("NginxServer is not started")
        return self._prefix

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def error_log(self) -> Path:
        return self.prefix / "logs" / "error.log"

    @property
    def access_log(self) -> Path:
        return self.prefix / "logs" / "access.log"

    def access_log_lines(self) -> list[str]:
        """Every request nginx logged so far (one ``combined`` line each)."""
        if not self.access_log.exists():
            return []
        return self.access_log.read_text(errors="replace").splitlines()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Self:
        """Start nginx and wait until it answers HTTP; raise ServerStartError otherwise."""
        binary = find_nginx()
        if binary is None:
            raise ServerStartError(INSTALL_HINT)
        if not self.webroot.is_dir():
            raise ServerStartError(f"nginx webroot {self.webroot} is not a directory")
        self._check_traversable()
        self._binary = binary
        self._prefix = Path(tempfile.mkdtemp(prefix="nginx-"))
        for folder in ("logs", "temp"):
            (self._prefix / folder).mkdir()
        self._write_config()
        command = [*self._base_command(), "-g", "daemon off;"]
        # One process group: stopping it reaches the master and its workers.
        self._process = ChildProcess.spawn(command, self.prefix / "logs" / "stdout.log")
        try:
            self._process.wait_ready(
                self._answers_http,
                timeout=self.startup_timeout,
                what=f"nginx on {self.url}",
                log=self.error_log,
            )
            if self.tls is not None:
                self._wait_tls(self._process, self.tls)
        except BaseException:
            self.stop()
            raise
        return self

    def serve_tls(self, certificate: Path, key: Path, port: int = 0) -> int:
        """Serve the webroot over HTTPS with this certificate chain and key; return the port.

        When running, the config is tested (``nginx -t``) and reloaded, and this returns
        once the port hands out the new certificate.
        """
        site = _TlsSite(Path(certificate), Path(key), port or free_port(self.host))
        self.tls = site
        if self._process is not None:
            self._write_config()
            self._check_config()
            self._process.send_signal(signal.SIGHUP)  # reload (nginx docs: "Controlling")
            self._wait_tls(self._process, site)
        return site.port

    def stop(self) -> None:
        """Stop nginx (SIGTERM, then SIGKILL to its group) and remove the prefix; idempotent."""
        process, self._process = self._process, None
        prefix, self._prefix = self._prefix, None
        # SIGTERM to the group: nginx's fast shutdown, workers included.
        stop_and_remove(process, prefix, grace=_STOP_GRACE)

    def __repr__(self) -> str:
        tls = f", https port {self.tls.port}" if self.tls else ""
        return f"NginxServer({self.webroot} at {self.url}{tls})"

    # -- internals ---------------------------------------------------------------------

    def _base_command(self) -> list[str]:
        assert self._binary is not None
        return [
            self._binary,
            "-p", f"{self.prefix}/",
            "-c", str(self.config_path),
            "-e", str(self.error_log),
        ]  # fmt: skip

    def _write_config(self) -> None:
        prefix = self.prefix
        root = _quote(str(self.webroot.resolve()))
        temps = "\n".join(
            f"    {kind}_temp_path {_quote(str(prefix / 'temp' / kind))};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        user = f"user {self.worker_user};\n" if self.worker_user else ""
        servers = [
            f"    server {{\n"
            f"        listen {self.host}:{self.port} default_server;\n"
            f"        server_name _;\n"
            f"        root {root};\n"
            f"        location / {{ try_files $uri =404; }}\n"
            f"    }}"
        ]
        if self.tls is not None:
            servers.append(
                f"    server {{\n"
                f"        listen {self.host}:{self.tls.port} ssl default_server;\n"
                f"        server_name _;\n"
                f"        ssl_certificate {_quote(str(self.tls.certificate.resolve()))};\n"
                f"        ssl_certificate_key {_quote(str(self.tls.key.resolve()))};\n"
                f"        root {root};\n"
                f"        location / {{ try_files $uri =404; }}\n"
                f"    }}"
            )
        body = "\n".join(servers)
        self.config_path.write_text(
            f"{user}worker_processes 1;\n"
            f"pid {_quote(str(prefix / 'nginx.pid'))};\n"
            f"error_log {_quote(str(self.error_log))} notice;\n"
            "events { worker_connections 64; }\n"
            "http {\n"
            "    default_type text/plain;\n"
            f"    access_log {_quote(str(self.access_log))};\n"
            f"{temps}\n"
            f"{body}\n"
            "}\n"
        )

    def _check_config(self) -> None:
        result = subprocess.run(
            [*self._base_command(), "-t"], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise ServerStartError(f"nginx refused its new config: {result.stderr.strip()}")

    def _check_traversable(self) -> None:
        if self.worker_user is None or not self.worker_user.startswith("nobody"):
            return
        folder = self.webroot.resolve()
        for part in (folder, *folder.parents):
            if not part.stat().st_mode & stat.S_IXOTH:
                raise ServerStartError(
                    f"nginx workers run as {self.worker_user} and cannot enter {part} "
                    f"(mode {stat.filemode(part.stat().st_mode)}): serve a webroot below "
                    "folders others may traverse, e.g. tempfile.mkdtemp() chmod 0755"
                )

    def _answers_http(self) -> bool:
        if not tcp_answers(self.host, self.port):
            return False
        try:
            httpx.get(f"{self.url}/", timeout=2.0, trust_env=False)
        except httpx.HTTPError:
            return False
        return True

    def _wait_tls(self, process: ChildProcess, site: _TlsSite) -> None:
        wanted = x509.load_pem_x509_certificates(site.certificate.read_bytes())[0]
        process.wait_ready(
            lambda: _served_certificate(self.host, site.port) == wanted,
            timeout=self.startup_timeout,
            what=f"nginx serving {site.certificate} on {self.host}:{site.port}",
            log=self.error_log,
        )


def _default_worker_user() -> str | None:
    """Root: run workers as nobody, as a real web server runs as a user of its own."""
    if os.geteuid() != 0:
        return None  # nginx ignores `user` unless the master is root
    try:
        grp.getgrnam("nogroup")
    except KeyError:
        return "nobody"
    return "nobody nogroup"


def _quote(text: str) -> str:
    if any(char in text for char in '"\\;{}$') or any(c.isspace() for c in text):
        raise ServerStartError(f"path {text!r} cannot be written into an nginx config")
    return f'"{text}"'


def _served_certificate(
    host: str, port: int, server_name: str | None = None
) -> x509.Certificate | None:
    """The leaf certificate ``host:port`` hands out (not verified), or None."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=2.0) as sock,
            context.wrap_socket(sock, server_hostname=server_name) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None
    return x509.load_der_x509_certificate(der) if der else None


class NginxRoot(Launcher):
    """nginx run from a server root laid out like Debian's ``/etc/nginx`` (``nginx.conf``
    including ``sites-enabled/*``), in a fresh 0755 temporary folder: what the nginx
    installer edits. :meth:`write` puts files there before :meth:`start`; the main
    config sets every path (pid, logs, temp folders) inside the root, so ``nginx -c
    ROOT/nginx.conf -t`` and ``-s reload`` from outside work on this nginx alone.
    """

    def __init__(self, http_port: int = 0, *, startup_timeout: float = 15.0) -> None:
        self.http_port = http_port or free_port(LOOPBACK)
        self.startup_timeout = startup_timeout
        self.root = Path(tempfile.mkdtemp(prefix="nginx-root-"))
        self.root.chmod(0o755)
        for folder in ("logs", "temp", "sites-enabled", "sites-available", "html"):
            (self.root / folder).mkdir()
        (self.root / "html" / "index.html").write_text("hello from nginx\n")
        self._process: ChildProcess | None = None
        self.binary = find_nginx()
        user = _default_worker_user()
        temps = "\n".join(
            f"    {kind}_temp_path {_quote(str(self.root / 'temp' / kind))};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        self.write(
            "nginx.conf",
            (f"user {user};\n" if user else "") + "worker_processes 1;\n"
            f"pid {_quote(str(self.root / 'nginx.pid'))};\n"
            f"error_log {_quote(str(self.root / 'logs' / 'error.log'))} notice;\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            "    default_type text/plain;\n"
            f"    access_log {_quote(str(self.root / 'logs' / 'access.log'))};\n"
            f"{temps}\n"
            "    include sites-enabled/*;\n"
            "}\n",
        )

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.write_text(text)
        return path

    def site(self, name: str, text: str) -> Path:
        """``sites-available/NAME`` with a symlink in ``sites-enabled`` (Debian's way)."""
        path = self.write(f"sites-available/{name}", text)
        (self.root / "sites-enabled" / name).symlink_to(path)
        return path

    def snapshot(self) -> dict[str, bytes]:
        """Every config file's bytes (certherd's folder, live/ and logs left out)."""
        found: dict[str, bytes] = {}
        for path in sorted(self.root.rglob("*")):
            relative = path.relative_to(self.root)
            if relative.parts[0] in ("logs", "temp", "certherd", "live") or path.is_dir():
                continue
            if path.name == "nginx.pid":
                continue
            found[str(relative)] = (
                path.read_bytes()
                if not path.is_symlink()
                else (b"-> " + str(path.readlink()).encode())
            )
        return found

    @property
    def master_pid(self) -> int:
        if self._process is None:
            raise RuntimeError("NginxRoot is not started")
        return self._process.pid

    def start(self) -> Self:
        if self.binary is None:
            raise ServerStartError(INSTALL_HINT)
        command = [
            self.binary,
            "-c", str(self.root / "nginx.conf"),
            "-e", str(self.root / "logs" / "error.log"),
            "-g", "daemon off;",
        ]  # fmt: skip
        self._process = ChildProcess.spawn(command, self.root / "logs" / "stdout.log")
        try:
            self._process.wait_ready(
                lambda: tcp_answers(LOOPBACK, self.http_port),
                timeout=self.startup_timeout,
                what=f"nginx at {self.root}",
                log=self.root / "logs" / "error.log",
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        stop_and_remove(process, self.root, grace=_STOP_GRACE)

    def served_certificate(self, port: int, server_name: str) -> x509.Certificate | None:
        """The leaf certificate served on ``port`` for SNI ``server_name``, unverified."""
        return _served_certificate(LOOPBACK, port, server_name)
