"""Launcher for BIND9 (`named`) as an authoritative server on loopback that takes RFC 2136 updates.

`Bind9Server` writes a temporary directory with a TSIG key made by ``tsig-keygen``, one zone file
per test zone and a ``named.conf``, then runs ``named -g -4 -c CONF`` as a foreground child on
``127.0.0.1`` at a free high port (UDP and TCP). Each zone has an SOA, ``NS ns1.<zone>`` with its
``A 127.0.0.1``, and a wildcard ``*.<zone> A 127.0.0.1`` so every name in it resolves (http-01
and tls-alpn-01 tests can point a validator at it too). The key may change anything below each
zone: ``update-policy { grant <key> zonesub ANY; };``.

What named needs here (BIND 9.18, Debian 12): no ``-u`` (run as root it stays root but drops
capabilities such as CAP_DAC_OVERRIDE, so it can only read and write files its own user owns;
the temporary directory is created by the test process and so qualifies); ``controls { };`` (the
default command channel reads ``/etc/bind/rndc.key``, which that root cannot read, and would
take port 953 for every instance); ``pid-file none`` and ``session-keyfile none`` (the defaults
live under ``/run/named``); the zone directory writable, for the ``.jnl`` journal of updates.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Self

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.tsig
import dns.update
from tests.servers.net import LOOPBACK, ServerStartError, ensure_port_free, free_port, log_tail
from tests.servers.process import ChildProcess, Launcher, stop_and_remove

__all__ = ["DEFAULT_ZONES", "INSTALL_HINT", "Bind9Server"]

INSTALL_HINT = "apt-get install -y bind9"

DEFAULT_ZONES = ("certherd.test.",)
"""The zone served when none are given."""

_KEY_RE = re.compile(
    r'key\s+"(?P<name>[^"]+)"\s*\{\s*algorithm\s+(?P<algorithm>[\w-]+);'
    r'\s*secret\s+"(?P<secret>[^"]+)";\s*\};'
)


class Bind9Server(Launcher):
    """BIND9 serving *zones* on *host* (UDP and TCP), updatable with one TSIG key.

    Start and stop from one thread; `add_record`, `delete_record` and `query` may be called
    from any thread once it is started (each is one blocking DNS exchange).
    """

    def __init__(
        self,
        zones: Iterable[str] = DEFAULT_ZONES,
        *,
        host: str = LOOPBACK,
        port: int = 0,
        key_name: str = "certherd-test-key.",
        algorithm: str = "hmac-sha256",
        startup_timeout: float = 15.0,
    ) -> None:
        self._zones = tuple(_fqdn(zone).lower() for zone in zones)
        if not self._zones:
            raise ValueError("Bind9Server needs at least one zone")
        self.host = host
        self._requested_port = port
        self.port = port
        self._key_name = _fqdn(key_name)
        self._algorithm = algorithm
        self._secret = ""
        self.startup_timeout = startup_timeout
        self.startup_seconds = 0.0
        self._process: ChildProcess | None = None
        self._workdir: Path | None = None

    # -- what a client needs ------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` of the DNS listener (UDP and TCP)."""
        return (self.host, self.port)

    @property
    def zones(self) -> tuple[str, ...]:
        """The zones served, fully qualified with a trailing dot, in the order given."""
        return self._zones

    @property
    def tsig_key_name(self) -> str:
        """The TSIG key's name, with its trailing dot."""
        return self._key_name

    @property
    def tsig_secret(self) -> str:
        """The TSIG key's secret, base64 as ``tsig-keygen`` wrote it."""
        self._require_started()
        return self._secret

    @property
    def tsig_algorithm(self) -> str:
        """The TSIG algorithm name as named.conf spells it (``hmac-sha256``)."""
        return self._algorithm

    @property
    def key_file(self) -> Path:
        """The key file written by ``tsig-keygen`` (a BIND ``key "..." { ... };`` clause)."""
        return self._require_started() / "tsig.key"

    @property
    def log_path(self) -> Path:
        """The file that receives named's log (``-g`` logs to stderr)."""
        return self._require_started() / "named.log"

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        """Write the configuration, start named and wait until every zone answers its SOA."""
        named = shutil.which("named") or _sbin("named")
        keygen = shutil.which("tsig-keygen") or _sbin("tsig-keygen")
        if named is None or keygen is None:
            raise ServerStartError(f"named or tsig-keygen not found: {INSTALL_HINT}")
        if self._process is not None:
            raise RuntimeError("Bind9Server is already started")
        self._workdir = Path(tempfile.mkdtemp(prefix="bind9-"))
        try:
            self._write_key(keygen)
            self.port = self._pick_port()
            config = self._write_config()
            began = time.monotonic()
            self._process = ChildProcess.spawn(
                [named, "-g", "-4", "-c", str(config)], self.log_path, cwd=self._workdir
            )
            self._process.wait_ready(
                self._serves_every_zone,
                timeout=self.startup_timeout,
                what=f"named on {self.host}:{self.port}",
            )
            self.startup_seconds = time.monotonic() - began
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop named and remove its directory; safe to call twice."""
        process, self._process = self._process, None
        workdir, self._workdir = self._workdir, None
        stop_and_remove(process, workdir, grace=10.0)
        self.port = self._requested_port

    # -- helpers for tests --------------------------------------------------------------

    def zone_for(self, name: str) -> str:
        """The served zone that contains *name* (the longest match); ValueError if none."""
        fqdn = dns.name.from_text(_fqdn(name))
        matches = [zone for zone in self._zones if fqdn.is_subdomain(dns.name.from_text(zone))]
        if not matches:
            raise ValueError(f"{name} is in none of the zones {', '.join(self._zones)}")
        return max(matches, key=len)

    def add_record(self, name: str, rtype: str, value: str, ttl: int = 60) -> None:
        """Add one record (``value`` in zone-file syntax) with a signed RFC 2136 update.

        A TXT *value* is taken as the text itself and quoted here.
        """
        update = self._update(name)
        update.add(_fqdn(name), ttl, _rdata(rtype, value))
        self._send(update, f"add {name} {rtype} {value}")

    def delete_record(self, name: str, rtype: str, value: str | None = None) -> None:
        """Delete one record, or with *value* None every record of *rtype* at *name*."""
        update = self._update(name)
        if value is None:
            update.delete(_fqdn(name), rtype)
        else:
            update.delete(_fqdn(name), _rdata(rtype, value))
        self._send(update, f"delete {name} {rtype} {value or ''}")

    def query(self, name: str, rtype: str) -> list[str]:
        """The records of *rtype* at *name* as this server answers them (over TCP).

        TXT values come back as their text (strings joined, unquoted); other types in
        zone-file syntax. No such name or no such type gives an empty list.
        """
        response = self._ask(_fqdn(name), rtype, timeout=5.0)
        rcode = response.rcode()
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise RuntimeError(f"named answered {dns.rcode.to_text(rcode)} for {name} {rtype}")
        wanted = dns.rdatatype.from_text(rtype)
        owner = dns.name.from_text(_fqdn(name))
        values: list[str] = []
        for rrset in response.answer:
            if rrset.rdtype != wanted or rrset.name != owner:
                continue
            for rdata in rrset:
                if isinstance(rdata, dns.rdtypes.ANY.TXT.TXT):
                    values.append(b"".join(rdata.strings).decode())
                else:
                    values.append(rdata.to_text())
        return values

    # -- internals ----------------------------------------------------------------------

    def _write_key(self, keygen: str) -> None:
        result = subprocess.run(
            [keygen, "-a", self._algorithm, self._key_name.rstrip(".")],
            capture_output=True,
            check=False,
            text=True,
        )
        match = _KEY_RE.search(result.stdout)
        if result.returncode != 0 or match is None:
            raise ServerStartError(
                f"tsig-keygen -a {self._algorithm} failed (exit {result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        self._secret = match["secret"]
        self.key_file.write_text(result.stdout)
        self.key_file.chmod(0o600)

    def _pick_port(self) -> int:
        if self._requested_port:
            ensure_port_free(self._requested_port, why="BIND9", host=self.host, udp=True)
            return self._requested_port
        last: ServerStartError | None = None
        for _ in range(20):
            port = free_port(self.host)
            try:
                ensure_port_free(port, why="BIND9", host=self.host, udp=True)
            except ServerStartError as err:
                last = err
                continue
            return port
        raise ServerStartError(f"no port free for both UDP and TCP on {self.host}: {last}")

    def _write_config(self) -> Path:
        workdir = self._require_started()
        key = self._key_name
        zones: list[str] = []
        for zone in self._zones:
            zone_file = workdir / f"{zone.rstrip('.')}.zone"
            zone_file.write_text(_zone_text(zone))
            zones.append(
                f'zone "{zone}" {{\n'
                "    type primary;\n"
                f'    file "{zone_file}";\n'
                f'    update-policy {{ grant "{key}" zonesub ANY; }};\n'
                "};\n"
            )
        config = workdir / "named.conf"
        config.write_text(
            f'include "{self.key_file}";\n'
            "controls { };\n"
            "options {\n"
            f'    directory "{workdir}";\n'
            "    pid-file none;\n"
            "    session-keyfile none;\n"
            f"    listen-on port {self.port} {{ {self.host}; }};\n"
            "    listen-on-v6 { none; };\n"
            "    recursion no;\n"
            "    dnssec-validation no;\n"
            "    notify no;\n"
            "    allow-transfer { none; };\n"
            "};\n" + "".join(zones)
        )
        return config

    def _serves_every_zone(self) -> bool:
        for zone in self._zones:
            try:
                response = self._ask(zone, "SOA", timeout=0.5)
            except (dns.exception.DNSException, OSError):
                return False
            if response.rcode() != dns.rcode.NOERROR or not response.answer:
                return False
        return True

    def _ask(self, name: str, rtype: str, *, timeout: float) -> dns.message.Message:
        self._require_started()
        query = dns.message.make_query(name, rtype)
        return dns.query.tcp(query, self.host, port=self.port, timeout=timeout)

    def _update(self, name: str) -> dns.update.UpdateMessage:
        self._require_started()
        key = dns.tsig.Key(self._key_name, self._secret, self._algorithm)
        return dns.update.UpdateMessage(self.zone_for(name), keyring=key)

    def _send(self, update: dns.update.UpdateMessage, what: str) -> None:
        response = dns.query.tcp(update, self.host, port=self.port, timeout=5.0)
        if response.rcode() != dns.rcode.NOERROR:
            raise RuntimeError(
                f"named refused the update ({what}): {dns.rcode.to_text(response.rcode())}"
                f"{log_tail(self.log_path, 10)}"
            )

    def _require_started(self) -> Path:
        if self._workdir is None:
            raise RuntimeError("Bind9Server is not started")
        return self._workdir

    def __repr__(self) -> str:
        return f"Bind9Server({self.host}:{self.port}, zones={list(self._zones)})"


def _zone_text(zone: str) -> str:
    return (
        "$TTL 60\n"
        f"@ IN SOA ns1.{zone} hostmaster.{zone} 1 3600 600 86400 60\n"
        f"@ IN NS ns1.{zone}\n"
        "ns1 IN A 127.0.0.1\n"
        "* IN A 127.0.0.1\n"
    )


def _rdata(rtype: str, value: str) -> dns.rdata.Rdata:
    if rtype.upper() == "TXT":
        data = value.encode()
        chunks = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
        return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks)
    return dns.rdata.from_text(dns.rdataclass.IN, rtype, value)


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else name + "."


def _sbin(program: str) -> str | None:
    # Debian installs named in /usr/sbin, which a non-root PATH often lacks.
    path = Path("/usr/sbin") / program
    return str(path) if path.exists() else None
