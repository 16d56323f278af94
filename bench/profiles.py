"""``bench/run --profile``: where certherd spends its time, for the people changing src/.

Writes to bench/out/profile/ (gitignored), never to the docs:

- ``issue-pyinstrument.txt``: a cold ``certherd issue`` under pyinstrument (wall clock,
  so waiting on the network shows up next to imports and CPU);
- ``issue-cprofile.txt``: the same under cProfile, sorted by own time;
- ``issue-importtime.txt``: ``-X importtime`` of the same, biggest cumulative first;
- ``apply-pyinstrument.txt``: ``certherd apply`` of the bulk test's certificates;
- ``renew-pyinstrument.txt``: ``certherd renew`` over the largest lineage count.
"""

from __future__ import annotations

import argparse
import re
import subprocess
from pathlib import Path

from measure import run_measured, wait_port_free
from scenarios import Bench, ensure_state

__all__ = ["run"]


def _pyinstrument(bench: Bench, argv: list[str], out: Path) -> None:
    python = str(bench.certherd.python)
    wrapped = [python, "-m", "pyinstrument", "-r", "text", "-o", str(out), *argv]
    wait_port_free(bench.ca.http_port)
    result = run_measured(wrapped, env=bench.certherd.env(), log=out.with_suffix(".log"))
    if result.returncode != 0:
        print(f"bench: profiling failed, see {out.with_suffix('.log')}")


def run(bench: Bench, folder: Path, args: argparse.Namespace) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    client = bench.certherd
    state = ensure_state(bench, client)
    print(f"bench: profiling certherd into {folder}")
    _pyinstrument(
        bench, client.issue(state, "p1.profile.bench.test"), folder / "issue-pyinstrument.txt"
    )
    stats = folder / "issue.pstats"
    python = str(client.python)
    wait_port_free(bench.ca.http_port)
    subprocess.run(
        [python, "-m", "cProfile", "-o", str(stats), *client.issue(state, "p2.profile.bench.test")],
        env=client.env(),
        capture_output=True,
        check=False,
    )
    report = subprocess.run(
        [
            python,
            "-c",
            "import pstats,sys; s=pstats.Stats(sys.argv[1]); "
            "s.sort_stats('tottime').print_stats(60); s.sort_stats('cumtime').print_stats(60)",
            str(stats),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    (folder / "issue-cprofile.txt").write_text(report.stdout)
    wait_port_free(bench.ca.http_port)
    imports = subprocess.run(
        [python, "-X", "importtime", *client.issue(state, "p3.profile.bench.test")],
        env=client.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [ln for ln in imports.stderr.splitlines() if ln.startswith("import time:")]
    number = re.compile(r"\|\s+(\d+) \|")

    def cumulative(line: str) -> int:
        match = number.search(line)
        return int(match.group(1)) if match else 0

    (folder / "issue-importtime.txt").write_text("\n".join(sorted(lines, key=cumulative)[::-1]))
    level = args.concurrency[0]
    apply_state = bench.work / "profile-apply"
    bench.run(client, client.register(apply_state), "profile-register")
    domains = [f"a{i}.profile.bench.test" for i in range(args.count)]
    (apply_state / "certherd.toml").write_text(client.config_file(domains))
    _pyinstrument(bench, client.apply(apply_state, level), folder / "apply-pyinstrument.txt")
    renew_root = bench.work / "renew-certherd"
    if renew_root.exists():
        _pyinstrument(bench, client.renew(renew_root), folder / "renew-pyinstrument.txt")
