"""The four measurements: cold issuance, 100 certificates, renew with nothing due, start-up.

Each takes a :class:`Bench` (the CA, the clients, where to write) and returns a JSON-able
dict of raw runs and their medians. Nothing here decides pass or fail: the report does.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from import_time import DEFAULT_STATEMENT, statement_seconds
from lineages import clone_certbot, clone_certherd
from measure import PebbleLog, Run, median, run_measured, summarize, wait_port_free
from peers import Ca, Certbot, Certherd, Client

__all__ = ["Bench", "bulk", "cold_issuance", "renew_nothing_due", "startup"]


@dataclass
class Bench:
    """Everything a scenario needs."""

    ca: Ca
    pebble: PebbleLog
    certherd: Certherd
    certbot: Certbot
    peers: list[Client]  # certbot, then lego if present
    work: Path
    logs: Path
    repeats: int = 7
    say: Any = print
    challtestsrv: str = ""  # pebble-challtestsrv's management URL (the fleet's dns-01)
    states: dict[str, Path] = field(default_factory=dict)

    @property
    def clients(self) -> list[Client]:
        return [self.certherd, *self.peers]

    def run(self, client: Client, argv: list[str], log: str, **kw: Any) -> Run:
        wait_port_free(self.ca.http_port)
        result = run_measured(
            argv, env=client.env(), log=self.logs / f"{log}.log", pebble=self.pebble, **kw
        )
        if result.returncode != 0:
            tail = (self.logs / f"{log}.log").read_text(errors="replace")[-3000:]
            raise SystemExit(f"bench: {client.name} failed (exit {result.returncode}):\n{tail}")
        return result


def ensure_state(bench: Bench, client: Client) -> Path:
    """The client's state folder, with its account registered by a first issuance."""
    if client.name not in bench.states:
        state = bench.work / "issue" / client.name
        bench.say(f"  warm-up: {client.name} registers and issues once")
        bench.run(client, client.issue(state, f"warm.{client.name}.bench.test"), "issue-warmup")
        bench.states[client.name] = state
    return bench.states[client.name]


def _rotate(items: list[Client], by: int) -> list[Client]:
    by %= len(items)
    return items[by:] + items[:by]


# -- 1. one issuance, cold process -----------------------------------------------------


def cold_issuance(bench: Bench) -> dict[str, Any]:
    """Each client issues one certificate per process, ``repeats`` times, interleaved.

    A warm-up issuance first registers each client's account and warms the page cache;
    measured runs then reuse the account, as a real second run would.
    """
    runs: dict[str, list[Run]] = defaultdict(list)
    for client in bench.clients:
        ensure_state(bench, client)
    for index in range(bench.repeats):
        for client in _rotate(bench.clients, index):
            domain = f"i{index}.{client.name}.bench.test"
            run = bench.run(client, client.issue(bench.states[client.name], domain), "issue")
            runs[client.name].append(run)
            bench.say(
                f"  {client.name:8} run {index + 1}/{bench.repeats}: {run.wall:.3f} s wall, "
                f"{run.cpu:.3f} s CPU, {run.max_rss_kb / 1024:.1f} MiB, {len(run.requests)} req"
            )
    imports = _issue_imports(bench)
    return {
        "clients": {name: summarize(series) for name, series in runs.items()},
        "raw": {name: [r.to_json() for r in series] for name, series in runs.items()},
        "certherd_import_self_ms_by_package": imports,
    }


def _issue_imports(bench: Bench) -> dict[str, float]:
    """One more certherd issuance with ``PYTHONPROFILEIMPORTTIME``: import time by package."""
    client = bench.certherd
    log = bench.logs / "issue-importtime.log"
    log.unlink(missing_ok=True)
    wait_port_free(bench.ca.http_port)
    argv = client.issue(bench.states[client.name], "importtime.certherd.bench.test")
    env = {**client.env(), "PYTHONPROFILEIMPORTTIME": "1"}
    run = run_measured(argv, env=env, log=log, pebble=bench.pebble)
    if run.returncode != 0:
        raise SystemExit(f"bench: certherd failed under -X importtime, see {log}")
    return import_self_by_package(log.read_text(errors="replace"))


_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", re.M)


def import_self_by_package(text: str) -> dict[str, float]:
    """Sum ``-X importtime`` self times (ms) by top-level package; stdlib as one group."""
    totals: dict[str, float] = defaultdict(float)
    stdlib = sys.stdlib_module_names
    for match in _IMPORT_LINE.finditer(text):
        top = match.group(4).split(".")[0]
        group = "(stdlib)" if top in stdlib or top.startswith("_") else top
        totals[group] += int(match.group(1)) / 1000
    ranked = sorted(totals.items(), key=lambda item: -item[1])
    return {name: round(ms, 1) for name, ms in ranked}


# -- 2. a hundred certificates ------------------------------------------------------------


def _loop_script(client: Client, state: Path, domains_file: Path) -> list[str]:
    template = shlex.join(client.issue(state, "BENCHDOMAIN"))
    body = template.replace("BENCHDOMAIN", '"$domain"')
    source = shlex.quote(str(domains_file))
    script = f"set -e\nwhile read -r domain; do\n  {body}\ndone < {source}\n"
    return ["bash", "-c", script]


def bulk(bench: Bench, count: int, loop_count: int, concurrency: list[int]) -> dict[str, Any]:
    """certherd ``apply`` of ``count`` certificates in one process (at each concurrency)
    vs ``loop_count`` issuances in a shell loop per client (scaled to ``count``)."""
    result: dict[str, Any] = {"count": count, "loop_count": loop_count, "apply": {}, "loops": {}}
    client = bench.certherd
    for level in concurrency:
        state = bench.work / f"bulk-apply-c{level}"
        bench.run(client, client.register(state), "bulk-register")
        domains = [f"a{i}.c{level}.apply.bench.test" for i in range(count)]
        (state / "certherd.toml").write_text(client.config_file(domains))
        bench.say(f"  certherd apply: {count} certificates, --concurrency {level}")
        run = bench.run(client, client.apply(state, level), "bulk-apply", timeout=3600)
        issued = len(list((state / "live").iterdir()))
        if issued != count:
            raise SystemExit(f"bench: apply made {issued} lineages, not {count}")
        result["apply"][str(level)] = {
            **summarize([run]),
            "per_certificate": run.wall / count,
            "requests_per_certificate": len(run.requests) / count,
        }
        bench.say(f"    {run.wall:.2f} s wall, {run.cpu:.2f} s CPU, {len(run.requests)} requests")
    for peer in bench.clients:
        domains_file = bench.work / f"bulk-{peer.name}-domains.txt"
        domains = [f"l{i}.{peer.name}.loop.bench.test" for i in range(loop_count)]
        domains_file.write_text("\n".join(domains) + "\n")
        bench.say(f"  {peer.name}: {loop_count} issuances in a shell loop")
        argv = _loop_script(peer, ensure_state(bench, peer), domains_file)
        run = bench.run(peer, argv, f"bulk-loop-{peer.name}", timeout=7200)
        scale = count / loop_count
        result["loops"][peer.name] = {
            **summarize([run]),
            "measured_count": loop_count,
            "scaled_wall": run.wall * scale,
            "scaled_cpu": run.cpu * scale,
            "per_certificate": run.wall / loop_count,
            "requests_per_certificate": len(run.requests) / loop_count,
        }
        bench.say(f"    {run.wall:.2f} s wall ({run.wall / loop_count:.3f} s each)")
    return result


# -- 3. renew with nothing due ----------------------------------------------------------


def _renew_series(
    bench: Bench, client: Client, state: Path, size: int, repeats: int, label: str = ""
) -> dict[str, Any]:
    warm = bench.run(client, client.renew(state), f"renew-{client.name}", timeout=3600)
    runs = [
        bench.run(client, client.renew(state), f"renew-{client.name}", timeout=3600)
        for _ in range(repeats)
    ]
    summary = summarize(runs)
    summary["first_run_after_cloning"] = warm.to_json()
    summary["lineages"] = size
    bench.say(
        f"  {client.name:8} {size:>6} lineages{label}: {summary['wall']:.3f} s wall "
        f"(first run {warm.wall:.3f} s), {summary['requests']:g} requests"
    )
    return summary


def _clone_names(start: int, stop: int) -> list[str]:
    return [f"l{i:06d}.renew.bench.test" for i in range(start, stop)]


def renew_nothing_due(
    bench: Bench,
    certherd_sizes: list[int],
    certbot_sizes: list[int],
    config_sizes: list[int],
    repeats: int,
) -> dict[str, Any]:
    """``renew`` over N lineages that are all far from due, N growing by cloning.

    At the ``config_sizes``, certherd is timed a second time with a certherd.toml that
    lists every lineage (``renew`` follows the file), then the file is removed again.
    """
    result: dict[str, Any] = {"certherd": [], "certherd_config": [], "certbot": []}
    client = bench.certherd
    root = bench.work / "renew-certherd"
    seed = "seed.renew.bench.test"
    bench.run(client, client.issue(root, seed), "renew-seed")
    bench.run(client, client.renew(root), "renew-seed")  # stores its ARI re-check time
    have = 1
    for size in sorted(set(certherd_sizes) | set(config_sizes)):
        began = time.perf_counter()
        clone_certherd(root, seed, _clone_names(have, size))
        bench.say(f"  cloned certherd lineages up to {size} in {time.perf_counter() - began:.1f} s")
        have = max(have, size)
        if size in certherd_sizes:
            result["certherd"].append(_renew_series(bench, client, root, size, repeats))
        if size in config_sizes:
            config = root / "certherd.toml"
            config.write_text(client.config_file([seed, *_clone_names(1, size)]))
            series = _renew_series(bench, client, root, size, repeats, " + certherd.toml")
            series["with_config_file"] = True
            result["certherd_config"].append(series)
            config.unlink()
    certbot = bench.certbot
    state = bench.work / "renew-certbot"
    bench.run(certbot, certbot.issue(state, seed), "renew-seed")
    have = 1
    for size in sorted(certbot_sizes):
        clone_certbot(state / "config", seed, _clone_names(have, size))
        have = max(have, size)
        result["certbot"].append(_renew_series(bench, certbot, state, size, repeats))
    walls = {entry["lineages"]: entry["wall"] for entry in result["certherd"]}
    if len(walls) >= 2:
        small, large = sorted(walls)[-2:]
        result["certherd_per_lineage_us"] = (walls[large] - walls[small]) / (large - small) * 1e6
    walls = {entry["lineages"]: entry["wall"] for entry in result["certbot"]}
    if len(walls) >= 2:
        small, large = sorted(walls)[-2:]
        result["certbot_per_lineage_us"] = (walls[large] - walls[small]) / (large - small) * 1e6
    return result


# -- 4. start-up --------------------------------------------------------------------------


def _walls(argv: list[str], env: dict[str, str], log: Path, count: int) -> dict[str, Any]:
    runs = [run_measured(argv, env=env, log=log) for _ in range(count)]
    failed = [r for r in runs if r.returncode != 0]
    if failed:
        raise SystemExit(f"bench: {' '.join(argv)} failed, see {log}")
    return {
        "wall": median([r.wall for r in runs]),
        "wall_min": min(r.wall for r in runs),
        "cpu": median([r.cpu for r in runs]),
        "max_rss_kb": median([r.max_rss_kb for r in runs]),
        "runs": count,
    }


def _import_cumulative_ms(python: Path, module: str, env: dict[str, str]) -> float:
    import subprocess

    result = subprocess.run(
        [str(python), "-X", "importtime", "-c", f"import {module}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    for match in _IMPORT_LINE.finditer(result.stderr):
        if match.group(4) == module and match.group(3) == " ":
            return int(match.group(2)) / 1000
    raise SystemExit(f"bench: no importtime line for {module}:\n{result.stderr[-2000:]}")


def startup(bench: Bench, count: int) -> dict[str, Any]:
    """Import time of ``certherd.cli.main`` and of the library's client (``from certherd.acme
    import AcmeClient``); ``--version`` and no-op ``renew`` wall times."""
    env = bench.certherd.env()
    python = bench.certherd.python
    log = bench.logs / "startup.log"
    empty = bench.work / "startup-empty"
    shutil.rmtree(empty, ignore_errors=True)
    empty.mkdir(parents=True)
    imports = [_import_cumulative_ms(python, "certherd.cli.main", env) for _ in range(count)]
    library = [
        statement_seconds(DEFAULT_STATEMENT, python=str(python), env=env) * 1000
        for _ in range(count)
    ]
    result = {
        "import_certherd_cli_main_ms": median(imports),
        "import_certherd_cli_main_ms_min": min(imports),
        "import_acme_client_ms": median(library),
        "import_acme_client_ms_min": min(library),
        "python_pass": _walls([str(python), "-c", "pass"], env, log, count),
        "certherd_version": _walls([str(bench.certherd.bin), "--version"], env, log, count),
        "certherd_renew_empty": _walls(bench.certherd.renew(empty), env, log, count),
        "certbot_version": _walls(
            [str(bench.certbot.bin), "--version"], bench.certbot.env(), log, max(5, count // 3)
        ),
    }
    result["certherd_version_over_floor"] = (
        result["certherd_version"]["wall"] - result["python_pass"]["wall"]
    )
    bench.say(
        f"  import certherd.cli.main {result['import_certherd_cli_main_ms']:.1f} ms; "
        f"{DEFAULT_STATEMENT} {result['import_acme_client_ms']:.1f} ms; "
        f"--version {result['certherd_version']['wall'] * 1000:.0f} ms; "
        f"python -c pass {result['python_pass']['wall'] * 1000:.0f} ms"
    )
    return result


def environment_note() -> dict[str, Any]:
    """Load average now (the machine may be shared)."""
    return {"loadavg": [round(x, 2) for x in os.getloadavg()], "at": time.time()}
