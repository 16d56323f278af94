"""certherd against Certbot and lego on one local Pebble, in one run. Started by bench/run.

Starts Pebble (validator on, no validation sleep, no nonce rejection, no authorization
reuse) and measures, one client at a time:

1. one issuance in a cold process: wall, CPU (user+sys), peak RSS, requests at Pebble;
2. N certificates (default 100): ``certherd apply`` in one process vs each client's
   ``issue`` in a shell loop (``--quick``: 20 in the loop, scaled to N, and said so);
3. ``renew`` with nothing due over many lineages (cloned on disk from one real one);
4. certherd's import time and ``--version`` / no-op ``renew`` start-up;
5. the fleet (issue 12, fleet.py): the renewal check over 100,000 lineages in PostgreSQL
   (``scale``), and more certificates issued by three nodes on one PostgreSQL, by one
   process and by Certbot's loop (``fleet``), also with the CA 50 ms away (``latency``).

Raw results go to bench/out/ (gitignored); docs/benchmarks.md and bench/benchmarks.png
are regenerated from them by report.py, never edited by hand.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import measure
from peers import Ca, Certbot, Certherd, Lego, ensure_venv, pebble_version

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
SECTIONS = ("startup", "issue", "bulk", "renew", "scale", "fleet", "latency")
FLEET_SECTIONS = ("scale", "fleet", "latency")  # these need PostgreSQL


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--quick", action="store_true", help="shorter: see --loop-count")
    parser.add_argument("--repeats", type=int, help="cold issuances per client (7; quick 5)")
    parser.add_argument("--count", type=int, default=100, help="certificates in the bulk test")
    parser.add_argument(
        "--loop-count",
        type=int,
        help="issuances per shell loop, scaled to --count (default: --count; quick: 20)",
    )
    parser.add_argument(
        "--concurrency", type=_ints, default=[10, 50], help="apply --concurrency levels"
    )
    parser.add_argument("--renew-sizes", type=_ints, default=[100, 1000, 10000])
    parser.add_argument("--certbot-renew-sizes", type=_ints, default=[100, 1000])
    parser.add_argument(
        "--config-renew-sizes",
        type=_ints,
        default=[100, 1000],
        help="also time certherd renew with a certherd.toml listing every lineage",
    )
    parser.add_argument("--renew-repeats", type=int, help="timed renews per size (5; quick 3)")
    parser.add_argument(
        "--scale-sizes",
        type=_ints,
        default=[1000, 10000, 100000],
        help="lineages in PostgreSQL for the renewal check (scale)",
    )
    parser.add_argument(
        "--scale-prefill-above",
        type=int,
        default=10000,
        help="above this size the bench writes this host's copies of new clones (scale)",
    )
    parser.add_argument("--fleet-count", type=int, default=1000, help="certificates (fleet)")
    parser.add_argument("--fleet-nodes", type=int, default=3, help="nodes (fleet)")
    parser.add_argument(
        "--fleet-concurrency", type=_ints, default=[10], help="run --concurrency per node"
    )
    parser.add_argument(
        "--one-process-concurrency",
        type=_ints,
        default=[10, 50],
        help="apply --concurrency of the one-process baseline (fleet, latency)",
    )
    parser.add_argument(
        "--fleet-loop-count", type=int, default=20, help="Certbot's loop, scaled (fleet)"
    )
    parser.add_argument(
        "--fleet-solver",
        default="dns-hook",
        help="how the fleet proves control: dns-hook (dns-01 through a hook to "
        "challtestsrv, the one-process baseline too), fleet (the shared http-01 solver, "
        "answered by run --http-serve on node 1; the baseline uses standalone http-01), "
        "or none (only the baselines)",
    )
    parser.add_argument("--latency-ms", type=float, default=25.0, help="one-way delay (latency)")
    parser.add_argument(
        "--latency-concurrency",
        type=_ints,
        default=[10, 50],
        help="run --concurrency per node and apply --concurrency levels (latency)",
    )
    parser.add_argument(
        "--latency-pools",
        type=_ints,
        default=[4, 10, 25],
        help="database pool sizes of the one-process baseline (latency; bench/pooled.py)",
    )
    parser.add_argument("--startup-repeats", type=int, default=31)
    parser.add_argument("--only", type=lambda s: s.split(","), default=list(SECTIONS))
    parser.add_argument("--no-lego", action="store_true", help="skip lego")
    parser.add_argument("--upgrade-certbot", action="store_true", help="pip install -U certbot")
    parser.add_argument("--profile", action="store_true", help="also profile certherd")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--report-only", action="store_true", help="regenerate the docs from bench/out/latest.json"
    )
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (5 if args.quick else 7)
    args.renew_repeats = args.renew_repeats or (3 if args.quick else 5)
    args.loop_count = args.loop_count or (min(20, args.count) if args.quick else args.count)
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(f"--only: unknown sections {sorted(unknown)}; use {','.join(SECTIONS)}")
    return args


def _text(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=REPO)
    return result.stdout.strip()


def _fsync_ms(folder: Path) -> float:
    """Median time of one small write + fsync in ``folder`` (it matters for storage)."""
    path = folder / ".fsync-probe"
    times = []
    for _ in range(30):
        began = time.perf_counter()
        with path.open("wb") as handle:
            handle.write(b"x" * 1000)
            handle.flush()
            os.fsync(handle.fileno())
        times.append(time.perf_counter() - began)
    path.unlink()
    return measure.median(times) * 1000


def machine(work: Path) -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_kb = 0
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
    distro = "unknown"
    if Path("/etc/os-release").exists():
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                distro = line.split("=", 1)[1].strip('"')
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": distro,
        "python": platform.python_version(),
        "fsync_ms": round(_fsync_ms(work), 2),
    }


def snapshot_source(target: Path) -> str:
    """Copy src/certherd to ``target``/certherd; a short hash of what was copied.

    Other people commit while a run takes 20 minutes: every certherd process of the
    run (and this harness) imports the copy, through PYTHONPATH, so one run measures
    one version of the code.
    """
    source = REPO / "src" / "certherd"
    shutil.copytree(source, target / "certherd", ignore=shutil.ignore_patterns("__pycache__"))
    digest = hashlib.sha256()
    for path in sorted((target / "certherd").rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(target)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _pebble_pid(pebble: Any) -> int | None:
    """The pid of the ``pebble`` child (not challtestsrv's), by its command name."""
    for pid in pebble.pids:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "pebble":
                return int(pid)
        except OSError:
            continue
    return None


def versions(
    certherd: Certherd, certbot: Certbot, lego: Lego | None, source_hash: str
) -> dict[str, str]:
    commit = _text(["git", "rev-parse", "--short", "HEAD"]) or "unknown"
    dirty = _text(["git", "status", "--porcelain", "--untracked-files=all", "--", "src"])
    state = " + uncommitted changes in src/" if dirty else ""
    return {
        "certherd": certherd.version(),
        "certherd_commit": f"{commit}{state}, source snapshot {source_hash}",
        "certbot": certbot.version(),
        "lego": lego.version() if lego else "skipped",
        "pebble": pebble_version(),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import report

    if args.report_only:
        report.write(json.loads((OUT / "latest.json").read_text()))
        return
    measure.check_tools()
    # SIGTERM unwinds like Ctrl-C, so Pebble and its helper are stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    work = OUT / f"work-{stamp}"
    logs = OUT / f"logs-{stamp}"
    work.mkdir(parents=True)
    if not args.keep:  # also when interrupted (Ctrl-C, SIGTERM, a failed client)
        atexit.register(shutil.rmtree, work, True)
    snapshot = work / "source"
    source_hash = snapshot_source(snapshot)
    sys.path.insert(0, str(snapshot))
    os.environ["BENCH_CERTHERD_PYTHONPATH"] = str(snapshot)
    import scenarios

    from certherd.testing.pebble import PebbleOptions, PebbleServer

    certbot_bin = ensure_venv(OUT / "venv-certbot", ["certbot"], upgrade=args.upgrade_certbot)
    lego_path = None if args.no_lego else shutil.which("lego")
    if lego_path is None and not args.no_lego:
        raise SystemExit("bench: lego is not installed: `apt-get install -y lego` or --no-lego")
    port = measure.free_port()
    options = PebbleOptions(
        http_port=port, nonce_reject_percent=0, authz_reuse_percent=0, va_nosleep=True
    )
    results: dict[str, Any] = {}
    load: dict[str, Any] = {"start": scenarios.environment_note()}
    print(f"bench: starting Pebble (http-01 validation on 127.0.0.1:{port})")
    with PebbleServer(options) as pebble:
        ca = Ca(pebble.directory_url, pebble.ca_bundle, port)
        certherd = Certherd(ca, Path(sys.executable).parent)
        certbot = Certbot(ca, certbot_bin.parent)
        lego = Lego(ca, Path(lego_path)) if lego_path else None
        bench = scenarios.Bench(
            ca=ca,
            pebble=measure.PebbleLog(pebble.ca_bundle.parent / "pebble.log", _pebble_pid(pebble)),
            certherd=certherd,
            certbot=certbot,
            peers=[certbot, *([lego] if lego else [])],
            work=work,
            logs=logs,
            repeats=args.repeats,
            challtestsrv=pebble.challtestsrv_url,
        )
        meta = {
            "date": started.isoformat(timespec="seconds"),
            "machine": machine(work),
            "versions": versions(certherd, certbot, lego, source_hash),
            "options": {
                "quick": args.quick,
                "repeats": args.repeats,
                "count": args.count,
                "loop_count": args.loop_count,
                "concurrency": args.concurrency,
                "renew_sizes": args.renew_sizes,
                "certbot_renew_sizes": args.certbot_renew_sizes,
                "config_renew_sizes": args.config_renew_sizes,
                "renew_repeats": args.renew_repeats,
                "startup_repeats": args.startup_repeats,
                "sections": args.only,
            },
            "pebble": {
                "env": options.environment(),
                "startup_seconds": pebble.startup_seconds,
            },
        }
        print(f"bench: {json.dumps(meta['versions'])}")
        database = None
        if set(args.only) & set(FLEET_SECTIONS):
            import fleet

            database = fleet.Database().__enter__()
            atexit.register(database.__exit__)
        for section in SECTIONS:
            if section not in args.only:
                continue
            print(f"bench: {section}")
            began = time.perf_counter()
            if section == "startup":
                results[section] = scenarios.startup(bench, args.startup_repeats)
            elif section == "issue":
                results[section] = scenarios.cold_issuance(bench)
            elif section == "bulk":
                results[section] = scenarios.bulk(
                    bench, args.count, args.loop_count, args.concurrency
                )
            elif section == "renew":
                results[section] = scenarios.renew_nothing_due(
                    bench,
                    args.renew_sizes,
                    args.certbot_renew_sizes,
                    args.config_renew_sizes,
                    args.renew_repeats,
                )
            elif section == "scale":
                results[section] = fleet.scale(
                    bench, database, args.scale_sizes, args.renew_repeats,
                    args.scale_prefill_above,
                )  # fmt: skip
            elif section in ("fleet", "latency"):
                results[section] = _fleet_section(section, bench, database, args)
            results[section]["seconds"] = round(time.perf_counter() - began, 1)
            load[section] = scenarios.environment_note()
            partial = {"meta": {**meta, "load": load}, **results}
            (OUT / f"results-{stamp}.json").write_text(
                json.dumps(partial, indent=2, sort_keys=True, default=str)
            )  # after each part: a later failure loses nothing measured
        if args.profile:
            import profiles

            profiles.run(bench, OUT / "profile", args)
    meta["load"] = load
    meta["duration_seconds"] = round(time.time() - started.timestamp(), 1)
    document = {"meta": meta, **results}
    text = json.dumps(document, indent=2, sort_keys=True, default=str)
    (OUT / f"results-{stamp}.json").write_text(text)
    print(f"bench: raw results in {OUT / f'results-{stamp}.json'}, logs in {logs}")
    if set(args.only) == set(SECTIONS):
        (OUT / "latest.json").write_text(text)
        report.write(document)
    else:
        _merge_partial(document, text)


def _fleet_section(section: str, bench: Any, database: Any, args: argparse.Namespace) -> Any:
    import far
    import fleet_issue

    setup = None
    if args.fleet_solver == "dns-hook":
        setup = fleet_issue.dns_hook_setup(bench.work / "dns-hook", bench.challtestsrv)
    elif args.fleet_solver != "none":
        setup = fleet_issue.http_setup(args.fleet_solver, bench.ca.http_port, args.fleet_nodes)
    if section == "latency":
        return far.far_ca(
            bench,
            database,
            delay_ms=args.latency_ms,
            count=args.fleet_count,
            nodes=args.fleet_nodes,
            one_process_levels=args.latency_concurrency,
            fleet_levels=args.latency_concurrency,
            pools=args.latency_pools,
            loop_count=max(1, args.fleet_loop_count // 2),
            solver=args.fleet_solver,
        )
    count = args.fleet_count
    result: dict[str, Any] = {"count": count, "one_process": [], "fleet": []}
    for level in args.one_process_concurrency:
        result["one_process"].append(
            fleet_issue.one_process(
                bench, database, bench.certherd, count, level, "near", setup=setup
            )
        )
    if setup is not None:
        for level in args.fleet_concurrency:
            result["fleet"].append(
                fleet_issue.fleet_run(
                    bench, database, bench.certherd, count, args.fleet_nodes, level, setup, "near"
                )
            )
    result["certbot_loop"] = far.certbot_loop(
        bench, bench.ca, args.fleet_loop_count, count, bench.pebble, label="near"
    )
    return result


def _merge_partial(document: dict[str, Any], text: str) -> None:
    """A partial run (--only) replaces its sections in latest.json, each carrying the
    date, version and load of the run that measured it, and re-renders the docs."""
    latest = OUT / "latest.json"
    if not latest.exists():
        print("bench: partial run (--only) and no latest.json: docs/benchmarks.md left as it was")
        return
    import report

    merged = json.loads(latest.read_text())
    meta = document["meta"]
    for section in meta["options"]["sections"]:
        if section in document:
            merged[section] = {
                **document[section],
                "measured": {
                    "date": meta["date"],
                    "versions": meta["versions"],
                    "load": meta["load"],
                    "machine": meta["machine"],
                    "options": meta["options"],
                },
            }
    latest.write_text(json.dumps(merged, indent=2, sort_keys=True, default=str))
    print(f"bench: partial run: sections {', '.join(meta['options']['sections'])} merged")
    report.write(merged)


if __name__ == "__main__":
    main()
