"""Draw the bench results as one PNG: ``python chart.py RESULTS.json OUT.png``.

Runs in bench/out/venv-tools (matplotlib), apart from certherd's venv, and reads only
the JSON that bench/suite.py wrote: the same medians as docs/benchmarks.md.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ORDER = ("certherd", "certbot", "lego")
COLORS = {"certherd": "#2a7ab9", "certbot": "#d9822b", "lego": "#5a9e4b"}


def _bars(ax: Any, labels: list[str], values: list[float], colors: list[str], unit: str) -> None:
    bars = ax.bar(labels, values, color=colors)
    for bar, value in zip(bars, values, strict=True):
        text = f"{value:.0f} {unit}" if unit == "ms" or value >= 100 else f"{value:.2f} {unit}"
        ax.annotate(
            text,
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.tick_params(axis="x", labelsize=8)


def issue_panel(ax: Any, doc: dict[str, Any]) -> None:
    clients = doc.get("issue", {}).get("clients", {})
    names = [n for n in ORDER if n in clients] + [n for n in clients if n not in ORDER]
    walls = [clients[n]["wall"] for n in names]
    cpus = [clients[n]["cpu"] for n in names]
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], walls, 0.4, label="wall", color=[COLORS[n] for n in names])
    ax.bar([x + 0.2 for x in xs], cpus, 0.4, label="CPU", color="#999999")
    for x, wall, cpu in zip(xs, walls, cpus, strict=True):
        ax.annotate(f"{wall:.2f}", (x - 0.2, wall), ha="center", va="bottom", fontsize=8)
        ax.annotate(f"{cpu:.2f}", (x + 0.2, cpu), ha="center", va="bottom", fontsize=8)
    ax.axhline(0.5, color="red", linestyle=":", linewidth=1, label="target 0.5 s")
    ax.set_xticks(list(xs), names)
    ax.set_ylabel("seconds (median)")
    ax.set_title("1. one issuance, cold process")
    ax.legend(fontsize=7)


def bulk_panel(ax: Any, doc: dict[str, Any]) -> None:
    bulk = doc.get("bulk", {})
    labels, values, colors = [], [], []
    for level, s in sorted(bulk.get("apply", {}).items(), key=lambda kv: int(kv[0])):
        labels.append(f"certherd\napply c={level}")
        values.append(s["wall"])
        colors.append(COLORS["certherd"])
    loops = bulk.get("loops", {})
    for name in [n for n in ORDER if n in loops]:
        s = loops[name]
        labels.append(f"{name}\nloop")
        values.append(s["scaled_wall"])
        colors.append(COLORS.get(name, "#777777"))
    _bars(ax, labels, values, colors, "s")
    ax.set_yscale("log")
    ax.set_ylabel("seconds (log scale)")
    title = f"2. {bulk.get('count', '?')} certificates"
    if bulk and bulk.get("loop_count") != bulk.get("count"):
        title += f" (loops scaled from {bulk['loop_count']})"
    ax.set_title(title)


def renew_panel(ax: Any, doc: dict[str, Any]) -> None:
    renew = doc.get("renew", {})
    styles = {
        "certherd": ("certherd", COLORS["certherd"], "-"),
        "certherd_config": ("certherd + certherd.toml", COLORS["certherd"], "--"),
        "certbot": ("certbot", COLORS["certbot"], "-"),
    }
    for name, (label, color, line) in styles.items():
        series = renew.get(name, [])
        if not series:
            continue
        xs = [e["lineages"] for e in series]
        ys = [e["wall"] for e in series]
        ax.plot(xs, ys, marker="o", label=label, color=color, linestyle=line)
        for x, y in zip(xs, ys, strict=True):
            ax.annotate(f"{y:.2f} s", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.scatter([10000], [1.0], marker="x", color="red", label="target < 1 s at 10,000")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("lineages")
    ax.set_ylabel("seconds (median)")
    ax.set_title("3. renew with nothing due")
    ax.legend(fontsize=7)


def startup_panel(ax: Any, doc: dict[str, Any]) -> None:
    s = doc.get("startup", {})
    if not s:
        return
    labels = [
        "python\n-c pass",
        "certherd\n--version",
        "certherd\nrenew (empty)",
        "certbot\n--version",
    ]
    keys = ["python_pass", "certherd_version", "certherd_renew_empty", "certbot_version"]
    values = [s[k]["wall"] * 1000 for k in keys]
    colors = ["#bbbbbb", COLORS["certherd"], COLORS["certherd"], COLORS["certbot"]]
    _bars(ax, labels, values, colors, "ms")
    ax.set_ylabel("milliseconds (median wall)")
    imports = s["import_certherd_cli_main_ms"]
    ax.set_title(f"4. start-up (import certherd.cli.main: {imports:.0f} ms)")


def main() -> None:
    source, target = sys.argv[1], sys.argv[2]
    with open(source) as handle:
        doc = json.load(handle)
    figure, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    issue_panel(axes[0][0], doc)
    bulk_panel(axes[0][1], doc)
    renew_panel(axes[1][0], doc)
    startup_panel(axes[1][1], doc)
    meta = doc["meta"]
    mode = "--quick" if meta["options"]["quick"] else "full run"
    versions = meta["versions"]
    figure.suptitle(
        f"certherd {versions['certherd']} vs Certbot {versions['certbot']} and lego "
        f"{versions['lego']} on Pebble {versions['pebble']} - {meta['date']} ({mode})",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(target, dpi=110)


if __name__ == "__main__":
    main()
