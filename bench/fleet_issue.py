"""Many certificates issued by a fleet of nodes on one PostgreSQL, against its baselines.

In one run, against one Pebble, each on a fresh database:

- **one certherd process**: ``certherd apply --concurrency C`` of every certificate
  (``--storage`` the same PostgreSQL), the baseline the fleet must not lose to;
- **the fleet**: N ``certherd run --node NAME --concurrency C`` daemons started first,
  then ``certherd apply --defer`` stores the certificates and returns; the clock runs from
  ``apply`` until the database holds a live version of every lineage, and then until every
  node's own ``DIR/live/`` holds every lineage (each host needs the files its web server
  reads);
- **Certbot's loop**: ``certbot certonly`` in a shell loop (fewer, scaled up, said so).

Exactly once: the ``finalize`` requests Pebble logged in the fleet's window are counted
(one per certificate is the target: more means a lineage was obtained twice). Who did the
work: the lease holder that made each version live (``certherd_schedule.obtained_by``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet import Database
from measure import PebbleLog, Run, endpoint, free_port, run_measured, summarize
from peers import Certherd

__all__ = ["FleetSetup", "fleet_run", "one_process"]

_TICK = 0.1


@dataclass
class FleetSetup:
    """How the fleet's lineages prove control and how each node serves (set once the
    fleet's http-01 serving is known; see :func:`default_setup`)."""

    solver_lines: list[str]
    node_args: list[list[str]] = field(default_factory=list)
    """Extra ``run`` arguments per node index (say, ``--http-serve ADDR:PORT`` for one)."""


def http_setup(kind: str, http_port: int, nodes: int) -> FleetSetup:
    """Every node answers http-01 for the whole fleet from the shared storage (solver
    ``kind``); one of them listens where Pebble validates (all would, behind a load
    balancer)."""
    return FleetSetup(
        solver_lines=[f'solver = "{kind}"'],
        node_args=[["--http-serve", f"127.0.0.1:{http_port}"]] + [[] for _ in range(nodes - 1)],
    )


_DNS_HOOK = r"""#!/bin/sh
# certherd's solver hook (bench): a dns-01 answer set in (or cleared from) challtestsrv,
# Pebble's DNS; any node can answer any challenge, and no port is shared.
if [ "$1" = present ]; then
  body="{\"host\":\"$CERTHERD_DNS_NAME\",\"value\":\"$CERTHERD_DNS_VALUE\"}"
  exec curl -sf -o /dev/null -X POST --data "$body" URL/set-txt
fi
exec curl -sf -o /dev/null -X POST --data "{\"host\":\"$CERTHERD_DNS_NAME\"}" URL/clear-txt
"""


def dns_hook_setup(folder: Path, challtestsrv: str) -> FleetSetup:
    """dns-01 through a small shell hook (curl to challtestsrv's management API), for the
    fleet and for the one-process baseline alike (the same work per certificate)."""
    folder.mkdir(parents=True, exist_ok=True)
    program = folder / "dns-hook"
    program.write_text(_DNS_HOOK.replace("URL/", f"{challtestsrv}/"))
    program.chmod(0o755)
    return FleetSetup(
        solver_lines=[
            'solver = "hook"',
            f'solver_options = {{ challenge = "dns-01", command = "{program}" }}',
        ]
    )


def _config(client: Certherd, domains: list[str], solver_lines: list[str]) -> str:
    """certherd.toml for ``domains``; the solver lines replace the standalone solver's."""
    text = client.config_file(domains)
    lines = [
        line
        for line in text.splitlines()
        if not line.startswith(("solver = ", "solver_options = "))
    ]
    head = lines.index("") if "" in lines else len(lines)
    return "\n".join([*lines[:head], *solver_lines, *lines[head:]]) + "\n"


def _checked(run: Run, log: Path, what: str) -> Run:
    if run.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"bench: {what} failed (exit {run.returncode}):\n{tail}")
    return run


def _live_count(database: Database, url: str) -> int:
    rows = database.query(url, "SELECT count(*) FROM certherd_values WHERE key LIKE 'live/%%.json'")
    return int(rows[0][0])


def _failures(log: Path) -> int:
    """How many "renewal failed" lines a node logged."""
    try:
        return log.read_text(errors="replace").count(": renewal failed: ")
    except OSError:
        return 0


def _finalizes(requests: list[str]) -> int:
    return sum(1 for request in requests if endpoint(request) == "finalize")


def one_process(
    bench: Any,
    database: Database,
    client: Certherd,
    count: int,
    concurrency: int,
    label: str,
    pebble: PebbleLog | None = None,
    pool: int | None = None,
    setup: FleetSetup | None = None,
) -> dict[str, Any]:
    """``apply --concurrency C`` of ``count`` certificates by one process on PostgreSQL
    (with ``pool``: through bench/pooled.py, that many database connections at most)."""
    url = database.fresh()
    env = {**client.env(), **database.env(url)}
    state = bench.work / f"{label}-one-c{concurrency}-p{pool or 'default'}"
    state.mkdir(parents=True)
    log = bench.logs / f"{label}-one.log"
    pebble = pebble or bench.pebble
    _checked(run_measured(client.register(state), env=env, log=log), log, "register")
    domains = [f"o{i}.c{concurrency}.{label}.bench.test" for i in range(count)]
    config = state / "certherd.toml"
    solver = setup.solver_lines if setup and not setup.node_args else None
    config.write_text(_config(client, domains, solver) if solver else client.config_file(domains))
    argv = [str(client.bin), "--config-dir", str(state), "apply", "--config", str(config)]
    argv += ["--concurrency", str(concurrency)]
    if pool is not None:
        argv = [str(client.python), str(Path(__file__).with_name("pooled.py")), "--pool"]
        argv += [str(pool), "--concurrency", str(concurrency), "--host-dir", str(state)]
        argv += ["apply", str(config)]
    pooled = f", database pool {pool}" if pool is not None else ""
    bench.say(
        f"  one certherd process: apply {count} certificates, --concurrency {concurrency}{pooled}"
    )
    run = _checked(run_measured(argv, env=env, log=log, pebble=pebble, timeout=7200), log, "apply")
    live = _live_count(database, url)
    if live != count:
        raise SystemExit(f"bench: apply made {live} live lineages, not {count}")
    result = {
        **summarize([run]),
        "solver": "dns-01 hook" if solver else "http-01 standalone",
        "count": count,
        "concurrency": concurrency,
        "pool": pool,
        "per_certificate": run.wall / count,
        "finalize": _finalizes(run.requests),
        "requests_per_certificate": len(run.requests) / count,
    }
    bench.say(
        f"    {run.wall:.2f} s wall ({count / run.wall:.1f} certificates/s), "
        f"{run.cpu:.2f} s CPU, {result['finalize']} finalize"
    )
    return result


@dataclass
class _Node:
    name: str
    folder: Path
    process: subprocess.Popen[bytes]
    metrics: int
    cpu_at_start: float = 0.0

    def cpu(self) -> float:
        """User+system CPU seconds of the node process so far."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1]
        except OSError:
            return 0.0
        parts = fields.split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_kb(self) -> int:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0

    def live(self) -> int:
        folder = self.folder / "live"
        if not folder.is_dir():
            return 0
        return sum(1 for entry in os.scandir(folder) if entry.is_dir())


def _start_node(
    client: Certherd, env: dict[str, str], folder: Path, name: str, concurrency: int,
    extra: list[str], log: Path,
) -> _Node:  # fmt: skip
    metrics = free_port()
    argv = [str(client.bin), "--config-dir", str(folder), "run", "--node", name]
    argv += ["--concurrency", str(concurrency), "--metrics", f"127.0.0.1:{metrics}"]
    argv += ["--max-interval", "5", *extra]  # NOTIFY wakes it; polling is the fallback
    folder.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        process = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    return _Node(name, folder, process, metrics)


def _wait_ready(nodes: list[_Node], timeout: float = 60.0) -> None:
    """Until every node's metrics listener answers (it has opened the storage)."""
    import socket

    deadline = time.monotonic() + timeout
    for node in nodes:
        while True:
            if node.process.poll() is not None:
                raise SystemExit(f"bench: node {node.name} exited ({node.process.returncode})")
            with socket.socket() as sock:
                sock.settimeout(0.2)
                if sock.connect_ex(("127.0.0.1", node.metrics)) == 0:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: node {node.name} did not start in {timeout:.0f} s")
            time.sleep(_TICK)


def _stop(nodes: list[_Node]) -> None:
    for node in nodes:
        if node.process.poll() is None:
            node.process.send_signal(signal.SIGTERM)
    for node in nodes:
        try:
            node.process.wait(30)
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait(10)


def fleet_run(
    bench: Any,
    database: Database,
    client: Certherd,
    count: int,
    nodes: int,
    concurrency: int,
    setup: FleetSetup,
    label: str,
    pebble: PebbleLog | None = None,
    timeout: float = 3600.0,
    stall: float = 60.0,
) -> dict[str, Any]:
    """``nodes`` daemons, then ``apply --defer`` of ``count`` certificates: how long until
    every lineage is live in the database, then on every node's disk. When no lineage
    goes live for ``stall`` seconds (failed ones back off for minutes), the run ends
    there: ``complete`` false, ``live`` how many made it, the failures each node logged."""
    url = database.fresh()
    env = {**client.env(), **database.env(url)}
    pebble = pebble or bench.pebble
    folder = bench.work / f"{label}-fleet-n{nodes}-c{concurrency}"
    admin = folder / "admin"
    admin.mkdir(parents=True)
    log = bench.logs / f"{label}-fleet.log"
    _checked(run_measured(client.register(admin), env=env, log=log), log, "register")
    domains = [f"f{i}.n{nodes}c{concurrency}.{label}.bench.test" for i in range(count)]
    config = admin / "certherd.toml"
    config.write_text(_config(client, domains, setup.solver_lines))
    running: list[_Node] = []
    try:
        for index in range(nodes):
            extra = setup.node_args[index] if index < len(setup.node_args) else []
            node_log = bench.logs / f"{label}-node{index + 1}.log"
            running.append(
                _start_node(
                    client, env, folder / f"node{index + 1}", f"node{index + 1}",
                    concurrency, extra, node_log,
                )
            )  # fmt: skip
        _wait_ready(running)
        for node in running:
            node.cpu_at_start = node.cpu()
        offset, ca_cpu = pebble.offset(), pebble.cpu()
        bench.say(
            f"  fleet: {nodes} nodes (--concurrency {concurrency} each), apply --defer of "
            f"{count} certificates"
        )
        began = time.perf_counter()
        argv = [str(client.bin), "--config-dir", str(admin), "apply", "--defer"]
        argv += ["--config", str(config)]
        applied = _checked(run_measured(argv, env=env, log=log, timeout=600), log, "apply --defer")
        deadline = time.monotonic() + timeout
        live, last, moved = 0, -1, time.monotonic()
        while (live := _live_count(database, url)) < count:
            for node in running:
                if node.process.poll() is not None:
                    raise SystemExit(f"bench: node {node.name} exited, see {bench.logs}")
            if live != last:
                last, moved = live, time.monotonic()
            if time.monotonic() > deadline or time.monotonic() - moved > stall:
                break  # failed lineages back off for minutes: say how far it got
            time.sleep(_TICK)
        complete = live >= count
        all_live = time.perf_counter() - began
        cpu_live = {node.name: node.cpu() - node.cpu_at_start for node in running}
        requests = pebble.requests_since(offset)
        ca_cpu = pebble.cpu() - ca_cpu
        while complete and min(node.live() for node in running) < count:
            if time.monotonic() > deadline:
                held = {node.name: node.live() for node in running}
                raise SystemExit(f"bench: nodes' live folders {held} short of {count}")
            time.sleep(_TICK)
        everywhere = time.perf_counter() - began if complete else None
        failures = {
            node.name: _failures(bench.logs / f"{label}-node{index + 1}.log")
            for index, node in enumerate(running)
        }
        by_node = Counter(
            str(row[0]).split("/", 1)[0]
            for row in database.query(url, "SELECT obtained_by FROM certherd_schedule")
        )
        result = {
            "count": count,
            "complete": complete,
            "live": live,
            "failures_by_node": failures,
            "nodes": nodes,
            "concurrency": concurrency,
            "apply_defer_wall": applied.wall,
            "wall": all_live,
            "wall_every_node": everywhere,
            "per_certificate": all_live / count,
            "solver": setup.solver_lines[0],
            "finalize": _finalizes(requests),
            "requests": len(requests),
            "requests_by_kind": dict(sorted(Counter(endpoint(r) for r in requests).items())),
            "requests_per_certificate": len(requests) / count,
            "ca_cpu": ca_cpu,
            "cpu": sum(cpu_live.values()),
            "cpu_by_node": cpu_live,
            "peak_rss_kb_by_node": {node.name: node.peak_rss_kb() for node in running},
            "obtained_by_node": dict(sorted(by_node.items())),
        }
    finally:
        _stop(running)
    if not complete:
        bench.say(
            f"    INCOMPLETE: {live} of {count} live after {all_live:.1f} s (none for "
            f"{stall:.0f} s); failures logged by node {failures}"
        )
        return result
    bench.say(
        f"    all live in the database after {result['wall']:.2f} s "
        f"({count / result['wall']:.1f} certificates/s), on every node after "
        f"{result['wall_every_node']:.2f} s; {result['finalize']} finalize; "
        f"by node {result['obtained_by_node']}"
    )
    return result
