"""docs/benchmarks.md's fleet sections (issue 12): the check over many lineages in
PostgreSQL, many certificates by a fleet, and the same with the CA far away. Called by
report.py; rendered from the JSON only."""

from __future__ import annotations

from typing import Any

__all__ = ["fleet_sections", "fleet_targets"]


def _s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 0.01:
        return f"{seconds * 1000:.2f} ms"  # sub-millisecond steps stay readable
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def _x(value: float | None) -> str:
    return "-" if not value else (f"{value:.1f}x" if value >= 0.1 else f"{value:.3f}x")


def _measured(section: dict[str, Any], fallback: dict[str, Any]) -> str:
    """When, on which code and under what load a section was measured."""
    meta = section.get("measured") or {
        "date": fallback["date"],
        "versions": fallback["versions"],
        "load": fallback.get("load", {}),
    }
    loads = meta.get("load", {})
    during = [
        "/".join(str(x) for x in loads[key]["loadavg"])
        for key in ("start", *sorted(k for k in loads if k != "start"))
        if key in loads
    ]
    return (
        f"Measured {meta['date']} on certherd {meta['versions']['certherd_commit']}; "
        f"load average (1/5/15 min) at the start and after each part: {', '.join(during)} "
        "(2 cores, shared with other work: ratios against the baselines measured in the "
        "same run are the figures to trust, not the absolute times)."
    )


def fleet_targets(doc: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    rows: list[tuple[str, str, bool | None]] = []
    scale = doc.get("scale")
    if scale and scale.get("sizes"):
        largest = max(scale["sizes"], key=lambda e: e["lineages"])
        n = largest["lineages"]
        rows.append(
            (
                f"renewal check over {n:,} lineages in PostgreSQL < 2 s",
                f"{_s(largest['wall'])} (a cold `renew` process, nothing due)",
                largest["wall"] < 2,
            )
        )
        rows.append(
            (
                "scheduling overhead < 1 ms per lineage",
                f"{largest['per_lineage_us'] / 1000:.3f} ms (over an empty database's "
                f"{_s(scale['floor']['wall'])})",
                largest["per_lineage_us"] < 1000,
            )
        )
        claim = scale.get("claim")
        if claim:
            full = claim["schedule_read"] + claim["empty_claim"] + claim["empty_due_in"]
            rows.append(
                (
                    f"a fleet node's full check over {claim['lineages']:,} lineages < 2 s",
                    f"{_s(full)} (schedule read + due_in + an empty claim)",
                    full < 2,
                )
            )
            rows.append(
                (
                    "claim + settle + release per due lineage < 1 ms",
                    f"{claim['per_lineage_ms']:.3f} ms ({claim['due']:,} due, "
                    f"{claim['batch']} a claim)",
                    claim["per_lineage_ms"] < 1,
                )
            )
    return rows


def _scale(doc: dict[str, Any]) -> list[str]:
    scale = doc.get("scale")
    if not scale:
        return []
    floor = scale["floor"]
    lines = [
        "## 5. The renewal check over many lineages in PostgreSQL",
        "",
        _measured(scale, doc["meta"]),
        "",
        f"PostgreSQL {scale['postgresql']} (Debian), started by the bench on a unix socket, "
        "`fsync` on. One lineage issued for real through `--storage`, then cloned inside the "
        "database (every value of it, the name replaced). Each row: `certherd --storage URL "
        "-q renew` with nothing due, a new process each time (what a timer pays per pass); "
        "the first run after cloning also copies every new lineage's live files to this "
        "host's config dir.",
        "",
        "| lineages | wall (median) | first run after cloning | CPU | peak RSS | over the "
        "empty database, per lineage |",
        "|---|---|---|---|---|---|",
        f"| 0 (the floor) | {_s(floor['wall'])} | - | {_s(floor['cpu'])} "
        f"| {floor['max_rss_kb'] / 1024:.1f} MiB | - |",
    ]
    for e in scale["sizes"]:
        lines.append(
            f"| {e['lineages']:,} | {_s(e['wall'])} "
            f"| {_s(e['first_run_after_cloning']['wall'])}"
            f"{' (host copies written by the bench)' if e.get('host_prefilled') else ''} "
            f"| {_s(e['cpu'])} | {e['max_rss_kb'] / 1024:.1f} MiB "
            f"| {e['per_lineage_us']:.0f} us |"
        )
    lines.append("")
    if "marginal_us" in scale:
        lines += [f"- Each added lineage costs {scale['marginal_us']:.0f} us (marginal).", ""]
    profile = scale.get("profile")
    if profile:
        lines += [
            f"Where the time goes at the largest size (cProfile, {profile['total']:.2f} s of "
            "CPU in the profiled run; own time, the top 12):",
            "",
            "| function | calls | own | cumulative |",
            "|---|---|---|---|",
        ]
        for row in profile["by_own"][:12]:
            lines.append(
                f"| `{row['function']}` | {row['calls']:,} | {_s(row['own'])} "
                f"| {_s(row['cumulative'])} |"
            )
        ours = [
            r
            for r in profile["by_cumulative"]
            if r["function"].startswith("certherd/")
            and not r["function"].startswith(("certherd/cli/", "certherd/app/tracked"))
        ][:8]
        if ours:
            lines += [
                "",
                "certherd's own functions by cumulative time in the same run (what calls "
                "the above):",
                "",
                "| function | calls | cumulative |",
                "|---|---|---|",
                *[f"| `{r['function']}` | {r['calls']:,} | {_s(r['cumulative'])} |" for r in ours],
            ]
        lines.append("")
    claim = scale.get("claim")
    if claim:
        full = claim["schedule_read"] + claim["empty_claim"] + claim["empty_due_in"]
        lines += [
            f"A fleet node's pass over the same {claim['lineages']:,} lineages, through the "
            f"fleet's API in one process (`bench/claim.py`): reading the whole schedule "
            f"(`schedule()`, {claim['schedule_rows']:,} rows: which live versions this host "
            f"must copy) {_s(claim['schedule_read'])}, `due_in()` "
            f"{_s(claim['empty_due_in'])}, a `claim()` that finds nothing due "
            f"{_s(claim['empty_claim'])}: {_s(full)} for the full check (medians).",
            "",
            f"The fleet's claim: {claim['due']:,} lineages made due at once, claimed by "
            f"one node {claim['batch']} at a time (`claim`, one statement: `FOR UPDATE SKIP "
            f"LOCKED`) and settled one by one (`settle`): {_s(claim['wall'])} in all, "
            f"{claim['per_lineage_ms']:.3f} ms per lineage; with nothing due a claim takes "
            f"{_s(claim['empty_claim'])}.",
            "",
        ]
    return lines


def _solver(solver: str | None) -> str:
    """How a row's certificates were validated, in words."""
    if not solver:
        return ""
    if "hook" in solver:
        return "; dns-01 hook"
    if "standalone" in solver:
        return "; http-01 standalone"
    return f"; {solver.replace('solver = ', '')}"


def _issue_rows(
    block: dict[str, Any], certbot: float | None, one: float | None
) -> list[str]:  # fmt: skip
    rows = []
    for e in block.get("one_process", []):
        pool = f", database pool {e['pool']}" if e.get("pool") else ""
        rows.append(
            f"| one certherd process, `apply --concurrency {e['concurrency']}`{pool}"
            f"{_solver(e.get('solver'))} "
            f"| {e['count']:,} "
            f"| {_s(e['wall'])} | {e['count'] / e['wall']:.1f} | {_s(e['cpu'])} "
            f"| {_s(e.get('ca_cpu'))} | {e['finalize']:,} | {e['requests_per_certificate']:.2f} "
            f"| {_x(certbot / e['wall'] if certbot else None)} "
            f"| {_x(one / e['wall'] if one else None)} |"
        )
    for e in block.get("fleet", []):
        if not e.get("complete", True):
            failed = sum(e["failures_by_node"].values())
            rows.append(
                f"| {e['nodes']} nodes, `run --node --concurrency {e['concurrency']}` each"
                f"{_solver(e.get('solver'))} | {e['count']:,} | **incomplete**: {e['live']:,} "
                f"live after {_s(e['wall'])}, then none for a minute ({failed:,} failed "
                f"attempts logged, backing off) | - | {_s(e['cpu'])} | {_s(e.get('ca_cpu'))} "
                f"| {e['finalize']:,} | {e['requests_per_certificate']:.2f} | - | - |"
            )
            continue
        rows.append(
            f"| {e['nodes']} nodes, `run --node --concurrency {e['concurrency']}` each"
            f"{_solver(e.get('solver'))} "
            f"| {e['count']:,} | {_s(e['wall'])} (every node: {_s(e['wall_every_node'])}) "
            f"| {e['count'] / e['wall']:.1f} | {_s(e['cpu'])} | {_s(e.get('ca_cpu'))} "
            f"| {e['finalize']:,} | {e['requests_per_certificate']:.2f} "
            f"| {_x(certbot / e['wall'] if certbot else None)} "
            f"| {_x(one / e['wall'] if one else None)} |"
        )
    loop = block.get("certbot_loop")
    if loop:
        rows.append(
            f"| Certbot `certonly` in a shell loop ({loop['measured_count']} issued, scaled; "
            "http-01 standalone) "
            f"| {block['count']:,} | {_s(loop['scaled_wall'])} "
            f"| {1 / loop['per_certificate']:.2f} "
            f"| {_s(loop['cpu'] * block['count'] / loop['measured_count'])} "
            f"| - | - | - | 1.0x | {_x(one / loop['scaled_wall'] if one else None)} |"
        )
    return rows


def _table(block: dict[str, Any]) -> list[str]:
    loop = block.get("certbot_loop")
    certbot = loop["scaled_wall"] if loop else None
    ones = block.get("one_process", [])
    one = min(e["wall"] for e in ones) if ones else None
    lines = [
        "| how | certificates | wall | certificates/s | CPU (certherd) | Pebble's CPU "
        "| finalize requests | requests per certificate | Certbot's loop / this "
        "| best one process / this |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *_issue_rows(block, certbot, one),
        "",
    ]
    for e in block.get("fleet", []):
        work = ", ".join(f"{k} {v}" for k, v in e["obtained_by_node"].items())
        cpu = ", ".join(f"{k} {_s(v)}" for k, v in e["cpu_by_node"].items())
        lines.append(
            f"- {e['nodes']} nodes at --concurrency {e['concurrency']}: obtained by {work}; "
            f"CPU {cpu}; `apply --defer` returned in {_s(e['apply_defer_wall'])}."
        )
    if block.get("fleet"):
        lines.append("")
    return lines


def _fleet(doc: dict[str, Any]) -> list[str]:
    block = doc.get("fleet")
    if not block:
        return []
    return [
        f"## 6. {block['count']:,} certificates: a fleet, one process, Certbot's loop",
        "",
        _measured(block, doc["meta"]),
        "",
        "Each on a fresh PostgreSQL database, against the same local Pebble. The fleet's clock "
        "runs from `apply --defer` until the database holds a live version of every lineage; "
        "'every node' until each node's own `live/` holds all of them. The finalize requests "
        "Pebble logged in that window say whether any certificate was obtained twice.",
        "",
        "All of it runs on the same 2 cores: Pebble, PostgreSQL, every node. A fleet on one "
        "machine cannot beat one process at a CPU-bound job (issuing against a local CA is "
        "one: see the CPU column); each node also copies every certificate to its own host. "
        "What the fleet buys is that any node can die, and that every host has every "
        "certificate; its speed shows when each node has its own cores or when the CA is far "
        "away (section 7).",
        "",
        *_table(block),
        *_choice(block),
    ]


def _choice(block: dict[str, Any]) -> list[str]:
    """The fastest configuration measured, in words (what the figures choose)."""
    lines = []
    ones = [e for e in block.get("one_process", []) if e.get("wall")]
    if ones:
        best = min(ones, key=lambda e: e["wall"])
        pool = f" and a database pool of {best['pool']}" if best.get("pool") else ""
        lines.append(
            f"- Fastest single process: `--concurrency {best['concurrency']}`{pool}, "
            f"{_s(best['wall'])} for {best['count']:,} certificates."
        )
        by_pool: dict[int, list[float]] = {}
        for e in ones:
            if e.get("pool"):
                by_pool.setdefault(e["concurrency"], []).append(e["wall"])
        for level, walls in sorted(by_pool.items()):
            if len(walls) > 1:
                ordered = walls in (sorted(walls), sorted(walls, reverse=True))
                note = (
                    ""
                    if ordered
                    else ": not in the order of the pool sizes, so this is the machine's "
                    "noise (one run each, other work on the same cores), not the pool's effect"
                )
                lines.append(
                    f"- At `--concurrency {level}` the pool sizes measured differ by "
                    f"{(max(walls) / min(walls) - 1) * 100:.0f}% in wall time "
                    f"({', '.join(_s(w) for w in walls)}, smallest pool first){note}."
                )
    fleets = [e for e in block.get("fleet", []) if e.get("complete", True)]
    if fleets:
        best = min(fleets, key=lambda e: e["wall"])
        lines.append(
            f"- Fastest fleet: {best['nodes']} nodes at `--concurrency {best['concurrency']}`, "
            f"{_s(best['wall'])}."
        )
    return [*lines, ""] if lines else []


def _latency(doc: dict[str, Any]) -> list[str]:
    block = doc.get("latency")
    if not block:
        return []
    rtt = block["round_trip"]
    delay = block["delay_ms_one_way"]
    return [
        f"## 7. The CA {2 * delay:g} ms away",
        "",
        _measured(block, doc["meta"]),
        "",
        f"Every byte to and from a second Pebble is delayed {delay:g} ms one way by a relay "
        "process (`bench/latency.py`: this kernel has no `netem`); the database stays near. "
        f"Through it a new HTTPS connection and one GET take "
        f"{_s(rtt['new_connection_and_get'])} (direct: "
        f"{_s(block['round_trip_direct']['new_connection_and_get'])}), a GET on a kept "
        f"connection {_s(rtt['get_on_kept_connection'])}. The relays used "
        f"{_s(block.get('relays_cpu'))} of CPU meanwhile.",
        "",
        *_table(block),
        *_choice(block),
    ]


def fleet_sections(doc: dict[str, Any]) -> list[str]:
    return [*_scale(doc), *_fleet(doc), *_latency(doc)]
