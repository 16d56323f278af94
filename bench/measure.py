"""Measuring child processes: wall, CPU, peak memory, and the requests Pebble saw.

Every client runs as a child process, started through GNU time (``/usr/bin/time``, Debian
package ``time``), which reports the client's user and system CPU and peak resident set
(``ru_maxrss`` of the client and of the descendants it waited for). Why not ``os.wait4``
on our own child: Linux keeps the peak RSS a process had *before* ``exec`` (here: the
forked copy of this ~50 MB harness) in the figure it reports, so every client would seem
to use at least that much. A small C program in between has a peak of about 2 MB.

Pebble 2.4 writes one line per HTTP request it routes to an ACME handler, before the
handler runs, on its stdout (``PebbleServer`` sends it to ``pebble.log``)::

    Pebble 2026/11/23 11:48:25 POST /order-plz -> calling handler()

Counting those lines between a run's start and end counts the requests of that run
(the bench runs one client at a time). Requests to paths Pebble does not route (404)
and to its management listener are not logged, so they are not counted.
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "PebbleLog",
    "Run",
    "free_port",
    "median",
    "run_measured",
    "summarize",
    "wait_port_free",
]

GNU_TIME = "/usr/bin/time"
SEQUENCE_MAX = 40  # requests of a run kept in order in the summary
_REQUEST = re.compile(r"^Pebble \S+ \S+ (GET|HEAD|POST) (\S+) -> calling handler\(\)", re.M)

# Pebble's paths (wfe/wfe.go) and the RFC 8555 resource each one is.
ENDPOINTS = {
    "/dir": "directory",
    "/nonce-plz": "newNonce",
    "/sign-me-up": "newAccount",
    "/order-plz": "newOrder",
    "/authZ/": "authorization",
    "/chalZ/": "challenge",
    "/finalize-order/": "finalize",
    "/my-order/": "order",
    "/certZ/": "certificate",
    "/revoke-cert": "revokeCert",
    "/rollover-account-key": "keyChange",
    "/my-account/": "account",
    "/list-orderz/": "orders",
}


@dataclass
class Run:
    """One measured child process."""

    wall: float
    user: float
    system: float
    max_rss_kb: int
    returncode: int
    requests: list[str] = field(default_factory=list)
    ca_cpu: float = 0.0  # CPU seconds Pebble spent meanwhile (it shares the machine)

    @property
    def cpu(self) -> float:
        return self.user + self.system

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["cpu"] = round(self.cpu, 4)
        data["ca_cpu"] = round(self.ca_cpu, 4)
        data["wall"] = round(self.wall, 4)
        data["user"] = round(self.user, 4)
        data["system"] = round(self.system, 4)
        return data


class PebbleLog:
    """The requests Pebble logged, read from an offset of its log file; its CPU time."""

    def __init__(self, path: Path, pid: int | None = None) -> None:
        if not path.is_file():
            raise SystemExit(f"bench: Pebble's log {path} is missing: cannot count requests")
        self.path = path
        self.pid = pid

    def cpu(self) -> float:
        """User+system CPU seconds of the Pebble process so far (0 if unknown)."""
        if self.pid is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        # proc(5): utime and stime are fields 14 and 15, in clock ticks.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def offset(self) -> int:
        return self.path.stat().st_size

    def requests_since(self, offset: int) -> list[str]:
        with self.path.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
        return [f"{m.group(1)} {m.group(2)}" for m in _REQUEST.finditer(text)]


def endpoint(request: str) -> str:
    """``POST /order-plz`` -> ``newOrder`` (unknown paths are kept as they are)."""
    _, _, path = request.partition(" ")
    return ENDPOINTS.get(path, path)


def check_tools() -> None:
    if not os.access(GNU_TIME, os.X_OK):
        raise SystemExit(f"bench: {GNU_TIME} is missing: apt-get install -y time")


def run_measured(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log: Path,
    pebble: PebbleLog | None = None,
    cwd: Path | None = None,
    timeout: float = 600.0,
) -> Run:
    """Run ``argv`` to completion with output appended to ``log``; measure it."""
    offset = pebble.offset() if pebble else 0
    ca_cpu = pebble.cpu() if pebble else 0.0
    log.parent.mkdir(parents=True, exist_ok=True)
    figures = log.with_name(f".{log.name}.time")
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        began = time.perf_counter()
        process = subprocess.Popen(
            [GNU_TIME, "-q", "-o", str(figures), "-f", "%U %S %M", *argv],
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            process.wait()
        finally:
            timer.cancel()
        wall = time.perf_counter() - began
        out.write(f"[exit {process.returncode}, {wall:.3f} s]\n".encode())
    user, system, max_rss_kb = figures.read_text().split()[-3:]
    figures.unlink()
    return Run(
        wall=wall,
        user=float(user),
        system=float(system),
        max_rss_kb=int(max_rss_kb),
        returncode=process.returncode,
        requests=pebble.requests_since(offset) if pebble else [],
        ca_cpu=pebble.cpu() - ca_cpu if pebble else 0.0,
    )


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def summarize(runs: Sequence[Run]) -> dict[str, Any]:
    """Medians (and spread) of a series of runs of one command."""
    walls = [r.wall for r in runs]
    kinds = Counter(endpoint(q) for r in runs for q in r.requests)
    return {
        "runs": len(runs),
        "wall": median(walls),
        "wall_min": min(walls),
        "wall_max": max(walls),
        "cpu": median([r.cpu for r in runs]),
        "ca_cpu": median([r.ca_cpu for r in runs]),
        "max_rss_kb": median([r.max_rss_kb for r in runs]),
        "requests": median([len(r.requests) for r in runs]),
        "requests_by_kind": {k: round(n / len(runs), 2) for k, n in sorted(kinds.items())},
        "sequence": [endpoint(q) for q in runs[-1].requests[:SEQUENCE_MAX]] if runs else [],
        "failures": sum(1 for r in runs if r.returncode != 0),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port_free(port: int, timeout: float = 10.0) -> None:
    """Wait until a listener could bind ``port`` (the previous client has let go)."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
                return
            except OSError:
                if time.monotonic() > deadline:
                    message = f"bench: port {port} stays busy: who is listening on it?"
                    raise SystemExit(message) from None
        time.sleep(0.05)
