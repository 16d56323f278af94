"""The CA far away: the fleet and its baselines again, with every packet to and from the
CA delayed (``--latency-ms`` one way, 25 by default: a 50 ms round trip, a CA in another
region), to choose concurrency (and the database pool that serves it) by measurement.

A second Pebble is started for this part: its validator fetches http-01 through a delay
relay in front of the port certherd answers on, and the clients reach its ACME listener
through another one (:mod:`latency`, a process each: this kernel has no netem). The
database stays near (a unix socket), as in a fleet whose PostgreSQL is in the same
place as its nodes and whose CA is not.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import fleet_issue
from fleet import Database
from latency import Relay
from measure import PebbleLog, free_port, run_measured
from peers import Ca, Certbot, Certherd
from scenarios import _loop_script

__all__ = ["certbot_loop", "far_ca"]


def _pebble_pid(pebble: Any) -> int | None:
    for pid in pebble.pids:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "pebble":
                return int(pid)
        except OSError:
            continue
    return None


def _round_trip(directory: str, bundle: Path) -> dict[str, float]:
    """A new HTTPS connection + GET of the directory, then a GET on the kept connection."""
    import httpx

    with httpx.Client(verify=str(bundle), trust_env=False) as http:
        began = time.perf_counter()
        http.get(directory).raise_for_status()
        cold = time.perf_counter() - began
        began = time.perf_counter()
        http.get(directory).raise_for_status()
        warm = time.perf_counter() - began
    return {"new_connection_and_get": cold, "get_on_kept_connection": warm}


def far_ca(
    bench: Any,
    database: Database,
    *,
    delay_ms: float,
    count: int,
    nodes: int,
    one_process_levels: list[int],
    fleet_levels: list[int],
    pools: list[int],
    loop_count: int,
    solver: str,
) -> dict[str, Any]:
    from certherd.testing.pebble import PebbleOptions, PebbleServer

    serve_port = free_port()
    bench.logs.mkdir(parents=True, exist_ok=True)
    relay_log = (bench.logs / "latency-relays.log").open("ab")
    validation = Relay(("127.0.0.1", serve_port), delay_ms, relay_log)
    options = PebbleOptions(
        http_port=validation.port, nonce_reject_percent=0, authz_reuse_percent=0, va_nosleep=True
    )
    result: dict[str, Any] = {
        "delay_ms_one_way": delay_ms,
        "count": count,
        "one_process": [],
        "fleet": [],
    }
    acme: Relay | None = None
    try:
        with PebbleServer(options) as pebble:
            port = urlsplit(pebble.directory_url).port
            acme = Relay(("127.0.0.1", port or 443), delay_ms, relay_log)
            directory = pebble.directory_url.replace(f":{port}/", f":{acme.port}/")
            ca = Ca(directory, pebble.ca_bundle, serve_port)
            result["round_trip"] = _round_trip(directory, pebble.ca_bundle)
            result["round_trip_direct"] = _round_trip(pebble.directory_url, pebble.ca_bundle)
            bench.say(
                f"  CA {2 * delay_ms:g} ms away: a new HTTPS connection + GET "
                f"{result['round_trip']['new_connection_and_get'] * 1000:.0f} ms, a GET on it "
                f"{result['round_trip']['get_on_kept_connection'] * 1000:.0f} ms"
            )
            pebble_log = PebbleLog(pebble.ca_bundle.parent / "pebble.log", _pebble_pid(pebble))
            client = Certherd(ca, bench.certherd.bin.parent)
            setup = None
            if solver == "dns-hook":
                setup = fleet_issue.dns_hook_setup(
                    bench.work / "far-dns-hook", pebble.challtestsrv_url
                )
            elif solver != "none":
                setup = fleet_issue.http_setup(solver, serve_port, nodes)
            result["solver"] = solver
            relays_cpu = validation.cpu() + acme.cpu()
            for level in one_process_levels:
                for pool in pools or [None]:
                    result["one_process"].append(
                        fleet_issue.one_process(
                            bench, database, client, count, level, "far", pebble=pebble_log,
                            pool=pool, setup=setup,
                        )
                    )  # fmt: skip
            if setup is not None:
                for level in fleet_levels:
                    result["fleet"].append(
                        fleet_issue.fleet_run(
                            bench, database, client, count, nodes, level, setup, "far",
                            pebble=pebble_log,
                        )
                    )  # fmt: skip
            result["relays_cpu"] = validation.cpu() + acme.cpu() - relays_cpu
            if loop_count:
                result["certbot_loop"] = certbot_loop(bench, ca, loop_count, count, pebble_log)
    finally:
        for relay in (validation, acme):
            if relay is not None:
                relay.stop()
        relay_log.close()
    return result


def certbot_loop(
    bench: Any, ca: Ca, loop_count: int, count: int, pebble: PebbleLog, label: str = "far"
) -> dict[str, Any]:
    """Certbot's loop against ``ca``: ``loop_count`` issuances, scaled to ``count``."""
    certbot = Certbot(ca, bench.certbot.bin.parent)
    state = bench.work / f"{label}-certbot"
    log = bench.logs / f"{label}-certbot.log"
    warm = run_measured(
        certbot.issue(state, f"warm.{label}.bench.test"), env=certbot.env(), log=log
    )
    if warm.returncode != 0:
        raise SystemExit(f"bench: certbot failed ({label}), see {log}")
    domains = bench.work / f"{label}-certbot-domains.txt"
    domains.write_text("".join(f"l{i}.{label}.certbot.bench.test\n" for i in range(loop_count)))
    bench.say(f"  certbot: {loop_count} issuances in a shell loop ({label})")
    run = run_measured(
        _loop_script(certbot, state, domains), env=certbot.env(), log=log, pebble=pebble,
        timeout=7200,
    )  # fmt: skip
    if run.returncode != 0:
        raise SystemExit(f"bench: certbot's loop failed ({label}), see {log}")
    bench.say(f"    {run.wall:.2f} s wall ({run.wall / loop_count:.3f} s each)")
    return {
        "measured_count": loop_count,
        "wall": run.wall,
        "scaled_wall": run.wall * count / loop_count,
        "per_certificate": run.wall / loop_count,
        "cpu": run.cpu,
    }
