"""Launcher for acme2certifier: a second real ACME server on loopback, with ARI and profiles.

acme2certifier (PyPI ``acme2certifier``) is a WSGI application configured by the INI file named
in ``ACME_SRV_CONFIGFILE``. `Acme2CertifierServer` writes that file into a temporary directory
together with everything it names (an issuing CA for the OpenSSL CA handler, an SQLite
database, an EAB key file) and serves the application over TLS on ``127.0.0.1`` in a child
process, with a certificate signed by a small test CA (`Acme2CertifierServer.ca_bundle`).

Its validator connects to port 80 (http-01) or 443 (tls-alpn-01) of the address that
``dns_server_list`` gives for a name, so the launcher also runs `ChallTestSrv` as that DNS
server on ``127.0.0.1:53``: every name resolves to ``127.0.0.1``, and dns-01 TXT records are
set with `Acme2CertifierServer.set_txt`. Ports 53 and 80 below 1024 need root.
"""

from __future__ import annotations

import configparser
import datetime
import importlib.util
import json
import os
import ssl
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Self

import httpx
from cryptography.hazmat.primitives import serialization
from tests.servers.challtestsrv import ChallTestSrv
from tests.servers.net import LOOPBACK, ServerStartError, ensure_port_free, free_port, log_tail
from tests.servers.process import ChildProcess, Launcher, stop_and_remove

from certherd.testing.pki import MiniCA, write_key

__all__ = ["DEFAULT_PROFILES", "Acme2CertifierServer", "acme2certifier_installed"]

_SERVER_SCRIPT = Path(__file__).with_name("a2c_wsgi_server.py")

DEFAULT_PROFILES: Mapping[str, str] = {
    "classic": "https://certherd.test/profiles/classic",
    "shortlived": "https://certherd.test/profiles/shortlived",
}
"""Profile name -> description (RFC 8555 ``meta.profiles``, draft-ietf-acme-profiles)."""

INSTALL_HINT = "pip install acme2certifier"


def acme2certifier_installed() -> bool:
    """Return whether the ``acme2certifier`` package can be imported (without importing it)."""
    return importlib.util.find_spec("acme2certifier") is not None


class Acme2CertifierServer(Launcher):
    """acme2certifier over HTTPS on ``127.0.0.1:<free port>``, plus a mock DNS server.

    ``eab`` maps key identifiers to base64url HMAC keys; when given, the directory says
    ``externalAccountRequired: true`` and newAccount demands a binding to one of them.
    ``profiles`` maps profile names to descriptions for ``meta.profiles``; an order naming
    another profile is refused with ``invalidProfile``. ``dns`` is a running `ChallTestSrv`
    to share (only one process can hold port 53); without it the launcher starts its own.
    ``require_contact`` keeps acme2certifier's default of refusing accounts without a
    contact (RFC 8555 makes it optional). ``extra_config`` is merged into the INI file
    last: section -> option -> value.

    Start and stop from one thread. The properties are valid between `start` and `stop`.
    """

    def __init__(
        self,
        *,
        eab: Mapping[str, str] | None = None,
        profiles: Mapping[str, str] | None = None,
        dns: ChallTestSrv | None = None,
        require_contact: bool = False,
        check_port_80: bool = True,
        extra_config: Mapping[str, Mapping[str, str]] | None = None,
        debug: bool = False,
        host: str = LOOPBACK,
        startup_timeout: float = 30.0,
    ) -> None:
        self.eab: dict[str, str] | None = dict(eab) if eab is not None else None
        self.profiles: dict[str, str] = dict(DEFAULT_PROFILES if profiles is None else profiles)
        self.require_contact = require_contact
        self.check_port_80 = check_port_80
        self.extra_config = {section: dict(opts) for section, opts in (extra_config or {}).items()}
        self.debug = debug
        self.host = host
        self.startup_timeout = startup_timeout
        self.port = 0
        self._shared_dns = dns
        self._own_dns: ChallTestSrv | None = None
        self._process: ChildProcess | None = None
        self._workdir: Path | None = None

    # -- properties -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:<port>``."""
        return f"https://{self.host}:{self.port}"

    @property
    def directory_url(self) -> str:
        """The ACME directory URL (RFC 8555 §7.1.1)."""
        return f"{self.base_url}/directory"

    @property
    def ca_bundle(self) -> Path:
        """PEM file of the test CA that signed the server's TLS certificate: trust this."""
        return self._path("tls", "ca.pem")

    @property
    def issuing_ca_pem(self) -> Path:
        """PEM file of the CA that signs the issued certificates (to verify them against)."""
        return self._path("ca", "issuing_ca.pem")

    @property
    def config_path(self) -> Path:
        """The INI file given to acme2certifier as ``ACME_SRV_CONFIGFILE``."""
        return self._path("acme_srv.cfg")

    @property
    def log_path(self) -> Path:
        """The child's stdout and stderr (acme2certifier's log and the request log)."""
        return self._path("acme2certifier.log")

    @property
    def cert_save_path(self) -> Path:
        """The folder where the OpenSSL CA handler saves every certificate it issues."""
        return self._path("ca", "certs")

    @property
    def dns(self) -> ChallTestSrv:
        """The mock DNS server the validator asks."""
        dns = self._shared_dns or self._own_dns
        if dns is None:
            raise RuntimeError("Acme2CertifierServer is not started")
        return dns

    def set_txt(self, host: str, value: str) -> None:
        """Serve a TXT record for dns-01, e.g. ``set_txt("_acme-challenge.x.test", digest)``."""
        self.dns.set_txt(host, value)

    def clear_txt(self, host: str) -> None:
        """Remove the TXT records of *host*."""
        self.dns.clear_txt(host)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        """Write the files, start DNS (unless shared) and the server, wait for /directory."""
        if not acme2certifier_installed():
            raise ServerStartError(f"acme2certifier is not installed: {INSTALL_HINT}")
        if self._process is not None:
            raise RuntimeError("Acme2CertifierServer is already started")
        if self.check_port_80:
            ensure_port_free(80, why="http-01 answers that acme2certifier fetches", host=self.host)
        self._workdir = Path(tempfile.mkdtemp(prefix="acme2certifier-"))
        try:
            if self._shared_dns is None:
                self._own_dns = ChallTestSrv(host=self.host).start()
            self.port = free_port(self.host)
            tls_cert, tls_key = self._write_pki()
            self._write_config()
            self._spawn(tls_cert, tls_key).wait_ready(
                self._directory_answers,
                timeout=self.startup_timeout,
                what=f"acme2certifier at {self.directory_url}",
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the child and the DNS server it started; remove the temp dir."""
        process, self._process = self._process, None
        workdir, self._workdir = self._workdir, None
        stop_and_remove(process, workdir, grace=5.0)
        own_dns, self._own_dns = self._own_dns, None
        if own_dns is not None:
            own_dns.stop()

    def log_tail(self, lines: int = 40) -> str:
        """The last *lines* of the server log, for assertion messages."""
        return log_tail(self.log_path if self._workdir is not None else None, lines)

    def __repr__(self) -> str:
        return f"Acme2CertifierServer({self.directory_url!r}, eab={self.eab is not None})"

    # -- internals --------------------------------------------------------------------------

    def _path(self, *parts: str) -> Path:
        if self._workdir is None:
            raise RuntimeError("Acme2CertifierServer is not started")
        return self._workdir.joinpath(*parts)

    def _write_pki(self) -> tuple[Path, Path]:
        """Make the TLS test CA and listener certificate, and the issuing CA; return (cert, key)."""
        tls_dir = self._path("tls")
        ca_dir = self._path("ca")
        tls_dir.mkdir()
        ca_dir.mkdir()
        self.cert_save_path.mkdir()

        tls_ca = MiniCA.create("certherd test TLS CA")
        self.ca_bundle.write_bytes(tls_ca.pem)
        key, certificate = tls_ca.issue_server(["localhost"], [self.host])
        tls_cert = tls_dir / "server.pem"
        tls_cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM) + tls_ca.pem)
        tls_key = write_key(key, tls_dir / "server.key")

        # RSA, as in acme2certifier's own examples; outlives every certificate it issues.
        issuing_ca = MiniCA.create(
            "certherd test acme2certifier issuing CA",
            rsa_key=True,
            validity=datetime.timedelta(days=3650),
        )
        self.issuing_ca_pem.write_bytes(issuing_ca.pem)
        write_key(issuing_ca.key, ca_dir / "issuing_ca.key")
        return tls_cert, tls_key

    def config(self) -> configparser.ConfigParser:
        """The INI configuration this instance runs with (valid after `start` began)."""
        ca_dir = self._path("ca")
        parser = configparser.ConfigParser(interpolation=None)
        parser.read_dict(
            {
                "DEFAULT": {
                    "debug": str(self.debug),
                    # host[:port] without scheme: acme2certifier prefixes the request's scheme.
                    "server_name": f"{self.host}:{self.port}",
                    "dns_server_list": json.dumps([self.dns.host]),
                },
                "Nonce": {"nonce_check_disable": "False"},
                "Account": {"contact_check_disable": str(not self.require_contact)},
                "DBhandler": {
                    "handler_module": "acme2certifier.dbhandlers.wsgi_handler",
                    "dbfile": str(self._path("acme_srv.db")),
                },
                "CAhandler": {
                    "handler_module": "acme2certifier.cahandlers.openssl_ca_handler",
                    "issuing_ca_key": str(ca_dir / "issuing_ca.key"),
                    "issuing_ca_cert": str(self.issuing_ca_pem),
                    # Required although the file need not exist: without it finalize fails.
                    "issuing_ca_crl": str(ca_dir / "crl.pem"),
                    "cert_save_path": str(self.cert_save_path),
                    "cert_validity_days": "90",
                },
                "Certificate": {"revocation_reason_check_disable": "False"},
                "Challenge": {"challenge_validation_disable": "False"},
                "Order": {
                    "tnauthlist_support": "False",
                    "profiles": json.dumps(self.profiles),
                    # Retry-After while an order is "processing"; 600 s by default.
                    "retry_after_timeout": "1",
                },
                "Renewalinfo": {"renewalinfo_disable": "False"},
            }
        )
        if self.eab is not None:
            parser.read_dict(
                {
                    "EABhandler": {
                        "eab_handler_module": "acme2certifier.eabhandlers.json_handler",
                        "key_file": str(self._path("eab_keys.json")),
                    }
                }
            )
        parser.read_dict(self.extra_config)
        return parser

    def _write_config(self) -> None:
        if self.eab is not None:
            eab_file = self._path("eab_keys.json")
            eab_file.write_text(json.dumps(self.eab))
            eab_file.chmod(0o600)
        with self.config_path.open("w") as handle:
            self.config().write(handle)

    def _spawn(self, tls_cert: Path, tls_key: Path) -> ChildProcess:
        environment = dict(os.environ)
        environment["ACME_SRV_CONFIGFILE"] = str(self.config_path)
        environment["PYTHONUNBUFFERED"] = "1"
        # -P: keep this folder off the child's sys.path, where acme2certifier.py (this file)
        # would shadow the acme2certifier package.
        command = [
            sys.executable,
            "-P",
            str(_SERVER_SCRIPT),
            "--host", self.host,
            "--port", str(self.port),
            "--cert", str(tls_cert),
            "--key", str(tls_key),
        ]  # fmt: skip
        self._process = ChildProcess.spawn(
            command, self.log_path, env=environment, cwd=self._path()
        )
        return self._process

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts `ca_bundle` only (for ``httpx``'s ``verify``)."""
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    def _directory_answers(self) -> bool:
        try:
            response = httpx.get(
                self.directory_url, verify=self.ssl_context(), timeout=2.0, trust_env=False
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and "newOrder" in response.json()
