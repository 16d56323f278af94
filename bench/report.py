"""Render bench results (the JSON in bench/out/) as docs/benchmarks.md and a PNG chart.

Both files are outputs of this module only: rerun ``bench/run`` (or ``bench/run
--report-only`` to re-render the last results) instead of editing them.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
from pathlib import Path
from typing import Any

from peers import ensure_venv
from report_fleet import fleet_sections, fleet_targets

__all__ = ["targets", "write"]

HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "benchmarks.md"
CHART = HERE / "benchmarks.png"
CHART_LINK = "../bench/benchmarks.png"  # relative to docs/


def _s(seconds: float | None) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def _mib(kb: float | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f} MiB"


def _x(value: float | None) -> str:
    return "-" if value is None or value == 0 else f"{value:.1f}x"


def _ok(met: bool | None) -> str:
    return "n/a" if met is None else ("**met**" if met else "**not met**")


ORDER = ("certherd", "certbot", "lego")


def ordered(mapping: dict[str, Any]) -> list[tuple[str, Any]]:
    """Items of a per-client mapping, certherd first (JSON keeps keys sorted)."""
    return sorted(mapping.items(), key=lambda kv: (*ORDER, kv[0]).index(kv[0]))


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else a / b


def bulk_wall(bulk: dict[str, Any], name: str) -> float | None:
    loop = bulk.get("loops", {}).get(name)
    return None if loop is None else loop["scaled_wall"]


def best_apply(bulk: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    applies = bulk.get("apply", {})
    if not applies:
        return None
    return min(applies.items(), key=lambda item: item[1]["wall"])


# RFC 8555 for one name in a new process with a stored account: the directory (§7.1.1),
# a first nonce (§7.2), newOrder (§7.4), the authorization (§7.5), the challenge answer
# (§7.5.1), finalize and the certificate download (§7.4.2); polls come on top.
MINIMUM = (
    "directory",
    "newNonce",
    "newOrder",
    "authorization",
    "challenge",
    "finalize",
    "certificate",
)
POLLS = ("authorization", "order")


def protocol_extras(sequence: list[str]) -> tuple[list[str], list[str]]:
    """(polls, waste): the requests of ``sequence`` beyond the protocol minimum."""
    rest = list(sequence)
    for needed in MINIMUM:
        if needed in rest:
            rest.remove(needed)
    polls = [r for r in rest if r in POLLS]
    return polls, [r for r in rest if r not in POLLS]


def targets(doc: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for each of issue 5's targets."""
    rows: list[tuple[str, str, bool | None]] = []
    issue = doc.get("issue", {}).get("clients", {})
    ours, certbot = issue.get("certherd"), issue.get("certbot")
    if ours:
        rows.append(("one cold issuance <= 0.5 s wall", _s(ours["wall"]), ours["wall"] <= 0.5))
        polls, waste = protocol_extras(ours["sequence"])
        extra = f", {', '.join(waste)} beyond it" if waste else ""
        rows.append(
            (
                "requests per certificate at the protocol minimum (section 1)",
                f"{len(ours['sequence'])} = the minimum {len(MINIMUM)} + {len(polls)} polls{extra}",
                not waste,
            )
        )
    if ours and certbot:
        speed = certbot["wall"] / ours["wall"]
        rows.append(("one cold issuance >= 6x faster than Certbot", _x(speed), speed >= 6))
        rows.append(
            (
                "peak memory <= Certbot's",
                f"{_mib(ours['max_rss_kb'])} vs {_mib(certbot['max_rss_kb'])}",
                ours["max_rss_kb"] <= certbot["max_rss_kb"],
            )
        )
    bulk = doc.get("bulk", {})
    best = best_apply(bulk) if bulk else None
    certbot_loop = bulk_wall(bulk, "certbot") if bulk else None
    if best and certbot_loop:
        speed = certbot_loop / best[1]["wall"]
        scaled = bulk["loop_count"] != bulk["count"]
        note = f" (Certbot's loop scaled from {bulk['loop_count']})" if scaled else ""
        rows.append(
            (
                f"{bulk['count']} certificates >= 30x faster than Certbot's loop",
                f"{_x(speed)}: {_s(best[1]['wall'])} vs {_s(certbot_loop)}{note}",
                speed >= 30,
            )
        )
    renew = doc.get("renew", {})
    at = {e["lineages"]: e for e in renew.get("certherd", [])}
    configured = {e["lineages"]: e for e in renew.get("certherd_config", [])}
    if configured:
        n = max(configured)
        rows.append(
            (
                f"renew with a certherd.toml of {n:,} lineages (the same file `apply` uses)",
                _s(configured[n]["wall"]),
                None,
            )
        )
    if 10000 in at:
        wall = at[10000]["wall"]
        rows.append(("renew, nothing due, 10,000 lineages < 1 s", _s(wall), wall < 1))
    slope = renew.get("certherd_per_lineage_us")
    if slope is not None:
        sizes = sorted(at)[-2:]
        rows.append(
            (
                "renew grows by <= 50 us per lineage",
                f"{slope:.0f} us (between {sizes[0]:,} and {sizes[1]:,})",
                slope <= 50,
            )
        )
    return rows


def _machine(doc: dict[str, Any]) -> list[str]:
    meta = doc["meta"]
    m, v, o = meta["machine"], meta["versions"], meta["options"]
    load = meta.get("load", {})
    order = ["start", "startup", "issue", "bulk", "renew"]
    loads = ", ".join(
        f"{k} {'/'.join(str(x) for x in load[k]['loadavg'])}" for k in order if k in load
    )
    return [
        "| | |",
        "|---|---|",
        f"| date | {meta['date']} ({meta['duration_seconds']:.0f} s for the whole run) |",
        f"| machine | {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB |",
        f"| system | {m['os']}, Linux {m['kernel']}, Python {m['python']} |",
        f"| fsync of a small file in bench/out | {m['fsync_ms']} ms |",
        f"| load average (1/5/15 min) after each part | {loads} |",
        f"| certherd | {v['certherd']} ({v['certherd_commit']}) |",
        f"| Certbot | {v['certbot']} (PyPI, own venv) |",
        f"| lego | {v['lego']} (Debian package) |",
        f"| Pebble | {v['pebble']} (Debian package), {_pebble_env(meta)} |",
        f"| mode | {'--quick' if o['quick'] else 'full'}: {o['repeats']} cold issuances per "
        f"client, {o['count']} certificates (loops: {o['loop_count']}), "
        f"{o['renew_repeats']} timed renews per size |",
    ]


def _pebble_env(meta: dict[str, Any]) -> str:
    env = meta["pebble"]["env"]
    return ", ".join(f"`{k}={v}`" for k, v in sorted(env.items()))


def _installed(name: str) -> bool:
    """Whether top-level package ``name`` can be imported here (certherd's bench venv)."""
    if name.startswith("("):
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _issue(doc: dict[str, Any]) -> list[str]:
    issue = doc.get("issue")
    if not issue:
        return []
    clients = issue["clients"]
    certbot = clients.get("certbot", {})
    lines = [
        "## 1. One issuance, cold process",
        "",
        "Each run is a new process issuing one certificate for a new name with the account",
        "already registered (a warm-up run registered it). Clients take turns, run by run.",
        "",
        "| client | wall (median) | wall min - max | CPU user+sys | peak RSS | requests "
        "| Pebble's CPU meanwhile | Certbot wall / this |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in ordered(clients):
        lines.append(
            f"| {name} | {_s(s['wall'])} | {_s(s['wall_min'])} - {_s(s['wall_max'])} "
            f"| {_s(s['cpu'])} | {_mib(s['max_rss_kb'])} | {s['requests']:g} "
            f"| {_s(s.get('ca_cpu'))} "
            f"| {_x(_ratio(certbot.get('wall'), s['wall']))} |"
        )
    lines += [
        "",
        f"Requests of the last run, as Pebble logged them (the protocol minimum is {len(MINIMUM)}:",
        f"{', '.join(MINIMUM)}; then polls until the authorization and the order are valid):",
        "",
        "```",
    ]
    for name, s in ordered(clients):
        lines.append(f"{name:9} {len(s['sequence']):2}: " + " ".join(s["sequence"]))
    lines += ["```", ""]
    for name, s in ordered(clients):
        polls, waste = protocol_extras(s["sequence"])
        extra = f"; beyond the minimum: {', '.join(waste)}" if waste else ""
        lines.append(f"- {name}: {len(polls)} polls{extra}.")
    lines.append("")
    imports = issue.get("certherd_import_self_ms_by_package", {})
    if imports:
        total = sum(imports.values())
        top = sorted(imports.items(), key=lambda item: -item[1])[:10]
        missing = [name for name, _ in top if not _installed(name)]
        lines += [
            f"Import time of one more certherd issuance: {total:.0f} ms in all "
            "(`-X importtime` self times, by top-level package):",
            "",
            "| package | ms |",
            "|---|---|",
            *[
                f"| {name}{' (not installed)' if name in missing else ''} | {ms:.0f} |"
                for name, ms in top
            ],
            "",
        ]
        if missing:
            lines += [
                f"A package marked not installed is time spent failing to import it, "
                f"again and again: `-X importtime` logs each attempt ({', '.join(missing)}).",
                "",
            ]
    return lines


def _bulk(doc: dict[str, Any]) -> list[str]:
    bulk = doc.get("bulk")
    if not bulk:
        return []
    count, loop_count = bulk["count"], bulk["loop_count"]
    certbot = bulk_wall(bulk, "certbot")
    lines = [f"## 2. {count} certificates", ""]
    if loop_count != count:
        lines += [
            f"**Quick mode:** each shell loop issued {loop_count} certificates; its time is "
            f"scaled by {count / loop_count:g} to {count}. certherd's `apply` issued all {count}.",
            "",
        ]
    lines += [
        "| how | issued | wall | wall for "
        f"{count} | per certificate | CPU | Pebble's CPU | requests per certificate "
        "| Certbot loop / this |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for level, s in sorted(bulk.get("apply", {}).items(), key=lambda kv: int(kv[0])):
        lines.append(
            f"| certherd `apply --concurrency {level}` (one process) | {count} | {_s(s['wall'])} "
            f"| {_s(s['wall'])} | {_s(s['per_certificate'])} | {_s(s['cpu'])} "
            f"| {_s(s.get('ca_cpu'))} | {s['requests_per_certificate']:.2f} "
            f"| {_x(_ratio(certbot, s['wall']))} |"
        )
    for name, s in ordered(bulk.get("loops", {})):
        lines.append(
            f"| {name} `issue` in a shell loop | {s['measured_count']} | {_s(s['wall'])} "
            f"| {_s(s['scaled_wall'])} | {_s(s['per_certificate'])} | {_s(s['scaled_cpu'])} "
            f"| {_s(s.get('ca_cpu'))} | {s['requests_per_certificate']:.2f} "
            f"| {_x(_ratio(certbot, s['scaled_wall']))} |"
        )
    lines.append("")
    for level, s in sorted(bulk.get("apply", {}).items(), key=lambda kv: int(kv[0])):
        kinds = ", ".join(f"{k} {v:g}" for k, v in s["requests_by_kind"].items())
        lines.append(f"- `apply --concurrency {level}` sent: {kinds}.")
    lines.append("")
    return lines


def _renew(doc: dict[str, Any]) -> list[str]:
    renew = doc.get("renew")
    if not renew:
        return []
    certbot_at = {e["lineages"]: e["wall"] for e in renew.get("certbot", [])}
    lines = [
        "## 3. `renew` with nothing due",
        "",
        "One lineage issued for real, cloned on disk; an untimed first run after each",
        "cloning step, then the timed runs (`-q`, as a timer runs them). certherd is timed",
        "again with a certherd.toml listing every lineage, since `renew` follows that file.",
        "",
        "| client | lineages | wall (median) | first run after cloning | CPU | peak RSS "
        "| requests | per lineage | Certbot / this at this size |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    labels = {
        "certherd": "certherd",
        "certherd_config": "certherd, with a certherd.toml listing every lineage",
        "certbot": "certbot",
    }
    for series, label in labels.items():
        for e in renew.get(series, []):
            n = e["lineages"]
            lines.append(
                f"| {label} | {n:,} | {_s(e['wall'])} "
                f"| {_s(e['first_run_after_cloning']['wall'])} | {_s(e['cpu'])} "
                f"| {_mib(e['max_rss_kb'])} | {e['requests']:g} | {e['wall'] / n * 1e6:.0f} us "
                f"| {_x(_ratio(certbot_at.get(n), e['wall']))} |"
            )
    lines.append("")
    for name in ("certherd", "certbot"):
        slope = renew.get(f"{name}_per_lineage_us")
        if slope is not None:
            lines.append(f"- {name}: each added lineage costs {slope:.0f} us (marginal).")
    lines.append("")
    return lines


def _startup(doc: dict[str, Any]) -> list[str]:
    s = doc.get("startup")
    if not s:
        return []
    rows = [
        ("`python -c pass` (the floor, certherd's venv)", s["python_pass"]),
        ("`certherd --version`", s["certherd_version"]),
        ("`certherd -q renew` (no lineages)", s["certherd_renew_empty"]),
        ("`certbot --version`", s["certbot_version"]),
    ]
    lines = [
        "## 4. Start-up",
        "",
        f"`python -X importtime -c 'import certherd.cli.main'`: "
        f"{s['import_certherd_cli_main_ms']:.1f} ms cumulative (median; min "
        f"{s['import_certherd_cli_main_ms_min']:.1f} ms). `certherd --version` costs "
        f"{s['certherd_version_over_floor'] * 1000:.0f} ms over the interpreter's own start.",
        "",
    ]
    if "import_acme_client_ms" in s:  # results recorded before it was measured lack it
        lines += [
            f"A library user's `from certherd.acme import AcmeClient`: "
            f"{s['import_acme_client_ms']:.1f} ms (median, timed in a fresh interpreter; min "
            f"{s['import_acme_client_ms_min']:.1f} ms). httpx is imported when the first "
            "client is made (`bench/import_time.py` shows what each import costs).",
            "",
        ]
    lines += [
        "| command | wall (median) | fastest | CPU | peak RSS |",
        "|---|---|---|---|---|",
    ]
    for label, r in rows:
        lines.append(
            f"| {label} | {_s(r['wall'])} | {_s(r['wall_min'])} | {_s(r['cpu'])} "
            f"| {_mib(r['max_rss_kb'])} |"
        )
    lines.append("")
    return lines


METHOD = """## How it is measured

- `bench/run` installs certherd (editable, from this checkout) into `bench/out/venv-certherd`,
  the latest Certbot from PyPI into `bench/out/venv-certbot` and matplotlib into
  `bench/out/venv-tools`; lego and Pebble come from Debian. Every client runs from its own
  venv's `bin/`, never through a version-manager shim.
- One Pebble for the whole run: validator on, `PEBBLE_VA_NOSLEEP=1`, no nonce rejection, no
  authorization reuse. Every client answers http-01 with its own standalone responder on
  the port Pebble validates on, and uses EC P-256 keys.
- Each command is a child process, timed (wall) by the harness and run under GNU time for
  its user+system CPU and peak resident memory (`ru_maxrss`, its own and its waited-for
  descendants'). GNU time sits in between because Linux counts the memory a process had
  before `exec` (the forked harness) in that peak.
- Requests are counted at Pebble: it logs one line per request routed to an ACME handler
  (`POST /order-plz -> calling handler()`) before handling it; the lines written during a
  run are that run's requests (clients run one at a time).
- Medians throughout. The machine may be shared: the load averages above say how busy it
  was. Raw runs, logs and profiles stay in `bench/out/` (gitignored).
- The fleet's sections (5-7, `bench/fleet.py`, `bench/fleet_issue.py`, `bench/far.py`) start
  Debian's PostgreSQL with the tests' launcher (`tests/servers/postgres.py`) on a unix
  socket with `fsync` on, a fresh database per measurement; certherd gets the URL from
  `CERTHERD_STORAGE` and the password from `PGPASSWORD`. Nodes are `certherd run --node`
  processes; their CPU is read from `/proc` when the last certificate is live. The fleet
  and its one-process baseline prove control with dns-01 through a small shell hook
  (curl to challtestsrv, Pebble's DNS), so no port is shared between nodes; Certbot's
  loop uses its standalone http-01 server. Section 7's database pool sizes are set
  through the library (`bench/pooled.py`): the command line has no knob for them.
"""


def render(doc: dict[str, Any]) -> str:
    rows = targets(doc) + fleet_targets(doc)
    lines = [
        "# Benchmarks: certherd, Certbot and lego on one local CA; a fleet on PostgreSQL",
        "",
        "<!-- Generated by bench/run from bench/out/latest.json: do not edit by hand. -->",
        "",
        "Regenerate with `bench/run` (about 20 minutes here for sections 1-4, as long again "
        "for the fleet's 5-7, which need PostgreSQL; `bench/run --quick` scales the peers' "
        "loops from 20 certificates), one part with `bench/run --only scale,fleet,latency` "
        "(merged into the last results: each such section says when it was measured), or "
        "re-render the last results with `bench/run --report-only`.",
        "",
        f"![benchmark chart]({CHART_LINK})",
        "",
        "## Targets (issues 5 and 12), as measured",
        "",
        "| target | measured | |",
        "|---|---|---|",
        *[f"| {t} | {m} | {_ok(ok)} |" for t, m, ok in rows],
        "",
        "## Machine and versions",
        "",
        *_machine(doc),
        "",
        *_issue(doc),
        *_bulk(doc),
        *_renew(doc),
        *_startup(doc),
        *fleet_sections(doc),
        METHOD,
    ]
    return "\n".join(lines)


def write(doc: dict[str, Any]) -> None:
    DOC.write_text(render(doc))
    print(f"bench: wrote {DOC}")
    tools = ensure_venv(HERE / "out" / "venv-tools", ["matplotlib"])
    data = HERE / "out" / "chart-input.json"
    data.write_text(json.dumps(doc, default=str))
    subprocess.run([str(tools), str(HERE / "chart.py"), str(data), str(CHART)], check=True)
    print(f"bench: wrote {CHART}")
