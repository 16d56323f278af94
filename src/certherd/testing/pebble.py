"""Run a throwaway Pebble ACME CA and pebble-challtestsrv on loopback.

Used by ``certherd demo`` and by the integration test fixtures. It imports only the
standard library, ``cryptography`` and ``httpx``, so the demo needs nothing more.

Facts about Pebble 2.4.0 (Debian's ``pebble`` package) behind this module, checked by
running it:

- No certificate ships for its own listener: each server makes a small EC CA and a
  certificate for ``localhost`` and ``127.0.0.1`` in its temporary folder, and clients
  trust :attr:`PebbleServer.ca_bundle`.
- Its knobs are environment variables read once at start, and bad values are not refused
  but replaced: ``PEBBLE_AUTHZREUSE`` outside 0..100 and ``PEBBLE_WFE_ORDERS_PER_PAGE``
  below 1 become the defaults (50, 3), an unparsable ``PEBBLE_WFE_NONCEREJECT`` becomes 5
  and one above 100 becomes 99, a negative ``PEBBLE_ALTERNATE_ROOTS`` becomes 0, and
  ``PEBBLE_CHAIN_LENGTH=0`` makes it panic. :class:`PebbleOptions` refuses all of these.
- ``PEBBLE_VA_NOSLEEP`` is on for ``1`` or ``true`` (any case) only.
- ``-strict`` is a Go bool flag: ``-strict false`` (as its README writes it) turns strict
  mode *on* and ends flag parsing, silently dropping ``-dnsserver``; we pass ``-strict=...``.
- EAB MAC keys must be unpadded base64url: a key ending in ``=`` stops Pebble at start.
- The management listener serves ``/roots/N`` and ``/intermediates/N`` for N from 0 to
  ``PEBBLE_ALTERNATE_ROOTS`` and 404 beyond; the issuing intermediate's key is shared by
  every alternate chain.
- Config ``certificateValidityPeriod`` (seconds; 0 or absent: 5 years) sets the lifetime
  of issued certificates; ``notAfter`` is inclusive, so it is ``notBefore`` + period - 1 s.
- challtestsrv keeps host names exactly as given: DNS questions are fully qualified, so a
  record for ``x.test`` (no trailing dot) is never served. We add the dot.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx

from certherd.addresses import split_host_port
from certherd.errors import ConfigError, UnavailableError
from certherd.testing.pebble_options import PebbleOptions
from certherd.testing.pki import MiniCA

_HANDLED = re.compile(r" [A-Z]+ (/\S*) -> calling handler\(\)$", re.MULTILINE)

__all__ = ["INSTALL_HINT", "PebbleOptions", "PebbleServer"]

INSTALL_HINT = "pebble is not installed: run `apt-get install -y pebble`"

_LOOPBACK = "127.0.0.1"
_START_ATTEMPTS = 3  # a picked port can be taken by someone else before the child binds it
_STOP_GRACE = 3.0  # seconds between SIGTERM and SIGKILL
_POLL_INTERVAL = 0.05


@dataclass(frozen=True)
class _Ports:
    acme: int
    management: int
    dns: int
    challtestsrv: int


class PebbleServer:
    """A local Pebble CA, plus pebble-challtestsrv as its DNS, as child processes.

    Use as a context manager, or call :meth:`start` and :meth:`stop` (from one thread).
    Every listener is on 127.0.0.1 at a port picked free at start, except the validator's
    ``http_port``/``tls_port`` from the options. Files and logs live in a temporary folder
    that :meth:`stop` removes. A missing program raises :class:`UnavailableError` with the
    install hint; a server that does not come up raises it with the tail of its log.
    """

    def __init__(
        self, options: PebbleOptions | None = None, *, start_timeout: float = 30.0
    ) -> None:
        self.options = options if options is not None else PebbleOptions()
        self.start_timeout = start_timeout
        self.startup_seconds: float | None = None
        """How long the last :meth:`start` took, for the curious."""
        self._ports: _Ports | None = None
        self._workdir: Path | None = None
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._client: httpx.Client | None = None
        self._last_log_tail = ""
        self._finalizer: weakref.finalize[..., PebbleServer] | None = None

    def __repr__(self) -> str:
        where = self.directory_url if self._ports else "not running"
        return f"PebbleServer({where})"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the servers and wait until Pebble's directory answers; no-op if running."""
        if self._ports is not None:
            return
        self.options.validate()
        pebble, challtestsrv = shutil.which("pebble"), shutil.which("pebble-challtestsrv")
        if pebble is None or challtestsrv is None:
            raise UnavailableError(INSTALL_HINT)
        began = time.monotonic()
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                self._launch(pebble, challtestsrv, began + self.start_timeout)
            except _PortTakenError:
                self.stop()
                if attempt == _START_ATTEMPTS:
                    raise UnavailableError(
                        "pebble could not bind its ports after "
                        f"{_START_ATTEMPTS} tries; log tail: {_one_line(self._last_log_tail)}"
                    ) from None
            except BaseException:
                self.stop()
                raise
            else:
                self.startup_seconds = time.monotonic() - began
                return

    def stop(self) -> None:
        """Stop the children (SIGTERM, then SIGKILL after a short wait), remove the folder.

        Safe to call more than once; the last log tail stays readable through
        :meth:`log_tail`.
        """
        if self._workdir is not None and self._workdir.exists():
            self._last_log_tail = self._read_log_tail(20)
        if self._finalizer is not None:
            self._finalizer()
        self._finalizer = None
        self._processes = {}
        self._client = None
        self._workdir = None
        self._ports = None

    @property
    def running(self) -> bool:
        """Whether :meth:`start` succeeded and every child is still alive."""
        return self._ports is not None and all(
            process.poll() is None for process in self._processes.values()
        )

    @property
    def pids(self) -> tuple[int, ...]:
        """The process ids of the children, in start order (challtestsrv, then Pebble)."""
        return tuple(process.pid for process in self._processes.values())

    @property
    def directory_url(self) -> str:
        """The ACME directory (RFC 8555 §7.1.1), served over HTTPS."""
        return f"https://{_LOOPBACK}:{self._need_ports().acme}/dir"

    @property
    def ca_bundle(self) -> Path:
        """The PEM of the CA behind Pebble's listener certificate, for clients to trust."""
        self._need_ports()
        assert self._workdir is not None
        return self._workdir / "listener-ca.pem"

    @property
    def management_url(self) -> str:
        """Pebble's management API (HTTPS, same CA as the listener)."""
        return f"https://{_LOOPBACK}:{self._need_ports().management}"

    @property
    def challtestsrv_url(self) -> str:
        """pebble-challtestsrv's management API (plain HTTP)."""
        self._need_challtestsrv()
        return f"http://{_LOOPBACK}:{self._need_ports().challtestsrv}"

    @property
    def dns_address(self) -> tuple[str, int]:
        """Where Pebble resolves names: ``options.dns_server`` or challtestsrv's DNS (UDP+TCP)."""
        ports = self._need_ports()
        if self.options.dns_server is not None:
            return split_host_port(self.options.dns_server, what="PebbleOptions.dns_server")
        self._need_challtestsrv()
        return (_LOOPBACK, ports.dns)

    def roots_pem(self, index: int = 0) -> bytes:
        """Root certificate ``index`` (0, or 1..alternate_roots) as PEM; KeyError if none."""
        return self._management_get(f"/roots/{int(index)}", f"root {index}").content

    def intermediates_pem(self, index: int = 0) -> bytes:
        """The intermediate under root ``index`` as PEM; KeyError if there is none."""
        return self._management_get(f"/intermediates/{int(index)}", f"intermediate {index}").content

    def cert_status(self, serial_hex: str | int) -> dict[str, Any]:
        """Pebble's record of an issued certificate: ``Status`` (``Valid``/``Revoked``),
        ``Serial``, ``Certificate`` (PEM), ``Reason`` and ``RevokedAt``.

        ``serial_hex`` may be an int or hex in any case, with ``0x``, colons or leading
        zeros. Raises KeyError if Pebble issued no certificate with that serial.
        """
        serial = _serial_hex(serial_hex)
        response = self._management_get(f"/cert-status-by-serial/{serial}", f"serial {serial}")
        data = response.json()
        if not isinstance(data, dict):
            raise UnavailableError(f"pebble sent a non-object cert status: {response.text[:200]}")
        return data

    def set_txt(self, host: str, value: str) -> None:
        """Add a TXT record ``value`` for ``host`` (e.g. ``_acme-challenge.x.test``).

        Repeated calls for one host add values; :meth:`clear_txt` removes them all.
        """
        self._challtestsrv_post("/set-txt", {"host": _fqdn(host), "value": value})

    def clear_txt(self, host: str) -> None:
        """Remove every TXT record of ``host``."""
        self._challtestsrv_post("/clear-txt", {"host": _fqdn(host)})

    def add_a(self, host: str, addresses: Iterable[str]) -> None:
        """Answer A queries for ``host`` with ``addresses`` instead of 127.0.0.1."""
        try:  # challtestsrv itself takes any string and serves nothing for it
            checked = [str(ipaddress.IPv4Address(address)) for address in addresses]
        except ValueError as err:
            raise ConfigError(f"add_a needs IPv4 addresses: {err}") from err
        self._challtestsrv_post("/add-a", {"host": _fqdn(host), "addresses": checked})

    def requests_handled(self, path: str = "") -> int:
        """How many requests Pebble has handled so far whose path starts with ``path``,
        from its log (``"/order-plz"``: new orders; ``""``: any request at all)."""
        text = self._log()
        return sum(1 for found in _HANDLED.finditer(text) if found.group(1).startswith(path))

    def orders_created(self) -> int:
        """How many orders Pebble has created so far, from its log (a new-order request
        retried after a rejected nonce counts once)."""
        return self._log().count('Added order "')

    def accounts_created(self) -> int:
        """How many accounts Pebble holds, from its log (a newAccount request for a key
        it knows already, or retried after a rejected nonce, adds none)."""
        counts = re.findall(r"There are now (\d+) accounts in memory", self._log())
        return int(counts[-1]) if counts else 0

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` of each child's log (after :meth:`stop`: as it was then)."""
        if self._workdir is None:
            return self._last_log_tail
        return self._read_log_tail(lines)

    def _launch(self, pebble: str, challtestsrv: str, deadline: float) -> None:
        options = self.options
        acme, management, challtestsrv_port, dns = _pick_ports(3, udp_too=1)
        ports = _Ports(acme=acme, management=management, dns=dns, challtestsrv=challtestsrv_port)
        workdir = Path(tempfile.mkdtemp(prefix="certherd-pebble-"))
        try:
            ssl_context = _write_tls_files(workdir)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        client = httpx.Client(verify=ssl_context, timeout=10.0, trust_env=False)
        processes: dict[str, subprocess.Popen[bytes]] = {}
        logs: list[IO[bytes]] = []
        self._finalizer = weakref.finalize(self, _cleanup, processes, logs, client, workdir)
        self._workdir, self._ports = workdir, ports
        self._processes, self._client = processes, client
        env = {name: value for name, value in os.environ.items() if not name.startswith("PEBBLE_")}

        def spawn(name: str, args: Sequence[str], extra_env: dict[str, str]) -> None:
            log = (workdir / f"{name}.log").open("wb")
            logs.append(log)
            processes[name] = subprocess.Popen(
                list(args),
                cwd=workdir,
                env={**env, **extra_env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        dns_server = options.dns_server
        if options.start_challtestsrv:
            args = [challtestsrv, "-dns01", f"{_LOOPBACK}:{ports.dns}"]
            args += ["-defaultIPv4", _LOOPBACK, "-defaultIPv6", ""]
            args += ["-management", f"{_LOOPBACK}:{ports.challtestsrv}"]
            for flag in ("http01", "https01", "tlsalpn01", "doh"):
                if flag in _flags_of(challtestsrv):
                    args += [f"-{flag}", ""]
            spawn("challtestsrv", args, {})
            self._wait(deadline, "challtestsrv", lambda: _tcp_answers(ports.challtestsrv))
            dns_server = dns_server or f"{_LOOPBACK}:{ports.dns}"

        config_path = workdir / "pebble-config.json"
        config = options.config(
            listen=f"{_LOOPBACK}:{ports.acme}",
            management=f"{_LOOPBACK}:{ports.management}",
            certificate=workdir / "listener.pem",
            key=workdir / "listener-key.pem",
        )
        config_path.write_text(json.dumps(config, indent=2))
        args = [pebble, "-config", str(config_path), f"-strict={str(options.strict).lower()}"]
        if dns_server:
            args += ["-dnsserver", dns_server]
        spawn("pebble", args, options.environment())
        self._wait(deadline, "pebble", self._pebble_answers)

    def _pebble_answers(self) -> bool:
        assert self._client is not None
        try:
            directory = self._client.get(self.directory_url, timeout=0.5)
            roots = self._client.get(f"{self.management_url}/roots/0", timeout=0.5)
        except httpx.TransportError:
            return False
        return directory.status_code == 200 and roots.status_code == 200

    def _wait(self, deadline: float, name: str, ready: Callable[[], bool]) -> None:
        process = self._processes[name]
        while (code := process.poll()) is None and time.monotonic() < deadline:
            if ready():
                return
            time.sleep(_POLL_INTERVAL)
        self._last_log_tail = tail = self._read_log_tail(15)
        if code is None:
            problem = f"did not answer within {self.start_timeout:g} s"
        elif "address already in use" in tail:
            raise _PortTakenError(name)
        else:
            problem = f"exited with code {code} while starting"
        raise UnavailableError(f"{name} {problem}; log tail: {_one_line(tail)}")

    def _log(self) -> str:
        if self._workdir is None:
            return ""
        try:
            return (self._workdir / "pebble.log").read_text(errors="replace")
        except OSError:
            return ""

    def _read_log_tail(self, lines: int) -> str:
        if self._workdir is None:
            return ""
        parts = []
        for name in self._processes:
            path = self._workdir / f"{name}.log"
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {name} ---\n" + "\n".join(text))
        return "\n".join(parts)

    def _need_ports(self) -> _Ports:
        if self._ports is None:
            raise ConfigError("the PebbleServer is not running: call start() first")
        return self._ports

    def _need_challtestsrv(self) -> None:
        if not self.options.start_challtestsrv:
            raise ConfigError("pebble-challtestsrv was not started (start_challtestsrv=False)")

    def _request(self, method: str, url: str, body: Any = None) -> httpx.Response:
        self._need_ports()
        assert self._client is not None
        try:
            return self._client.request(method, url, json=body)
        except httpx.TransportError as err:
            raise UnavailableError(
                f"no answer from {url}: {err}; log tail: {_one_line(self.log_tail(5))}"
            ) from err

    def _management_get(self, path: str, what: str) -> httpx.Response:
        response = self._request("GET", self.management_url + path)
        if response.status_code == 404:
            raise KeyError(f"pebble has no {what}")
        if response.status_code != 200:
            raise UnavailableError(f"pebble answered {response.status_code} to GET {path}")
        return response

    def _challtestsrv_post(self, path: str, body: dict[str, Any]) -> None:
        response = self._request("POST", self.challtestsrv_url + path, body)
        if response.status_code != 200:
            raise ConfigError(
                f"challtestsrv refused {path} {body}: {response.status_code} {response.text[:200]}"
            )


class _PortTakenError(Exception):
    """A child could not bind a port picked for it: start again with new ports."""


def _cleanup(
    processes: dict[str, subprocess.Popen[bytes]],
    logs: list[IO[bytes]],
    client: httpx.Client,
    workdir: Path,
) -> None:
    """Stop the children and remove the folder; also run at exit for a forgotten server."""
    running = [process for process in processes.values() if process.poll() is None]
    for process in running:
        process.terminate()
    give_up = time.monotonic() + _STOP_GRACE
    for process in running:
        try:
            process.wait(timeout=max(0.0, give_up - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for log in logs:
        log.close()
    client.close()
    shutil.rmtree(workdir, ignore_errors=True)


def _pick_ports(count: int, *, udp_too: int) -> list[int]:
    """``count`` distinct free loopback TCP ports, then ``udp_too`` free for TCP and UDP."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for _ in range(100 * (count + udp_too)):
            if len(ports) == count + udp_too:
                return ports
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(tcp)
            tcp.bind((_LOOPBACK, 0))
            port: int = tcp.getsockname()[1]
            if len(ports) >= count:
                udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(udp)
                try:
                    udp.bind((_LOOPBACK, port))
                except OSError:
                    continue
            ports.append(port)
        raise UnavailableError("no free loopback ports for pebble")
    finally:
        for sock in held:
            sock.close()


def _tcp_answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((_LOOPBACK, port), timeout=0.5):
        return True
    return False


@functools.cache
def _flags_of(program: str) -> frozenset[str]:
    """The flag names a Go program lists for ``-h`` (it prints them on stderr, exit 2)."""
    result = subprocess.run(
        [program, "-h"], capture_output=True, text=True, timeout=10, check=False
    )
    return frozenset(re.findall(r"^\s+-([\w-]+)", result.stdout + result.stderr, re.MULTILINE))


def _write_tls_files(workdir: Path) -> ssl.SSLContext:
    """Write a tiny CA and a ``localhost``/``127.0.0.1`` certificate for the listeners.

    Returns a client SSL context that trusts the CA.
    """
    ca = MiniCA.create("certherd test listener CA", validity=datetime.timedelta(days=7))
    (workdir / "listener-ca.pem").write_bytes(ca.pem)
    ca.write_server_files(workdir, "listener", ["localhost"], [_LOOPBACK])
    return ssl.create_default_context(cadata=ca.pem.decode())


def _fqdn(host: str) -> str:
    """Host names as challtestsrv matches them: lower case with the trailing dot."""
    host = host.strip().lower()
    if not host or host == ".":
        raise ConfigError("a host name is needed")
    return host if host.endswith(".") else host + "."


def _serial_hex(serial: str | int) -> str:
    """A serial as Pebble's management API wants it: lower-case hex, no leading zeros."""
    if isinstance(serial, int):
        return format(serial, "x")
    text = serial.strip().lower().removeprefix("0x").replace(":", "")
    if not re.fullmatch(r"[0-9a-f]+", text):
        raise ConfigError(f"not a hexadecimal serial number: {serial!r}")
    return text.lstrip("0") or "0"


def _one_line(text: str, limit: int = 2000) -> str:
    """Log lines joined by `` | `` (errors are one line), keeping the end if too long."""
    joined = " | ".join(line.strip() for line in text.splitlines() if line.strip())
    return joined if len(joined) <= limit else "..." + joined[-limit:]
