"""What ``from certherd.acme import AcmeClient`` costs a library user:
``python bench/import_time.py [--runs N] [STATEMENT]``.

Each run is a fresh interpreter (nothing cached in ``sys.modules``). Prints the median
wall time of the statement, timed inside the process, and from separate runs under
``-X importtime`` the median cumulative time of the heaviest imports the statement made
itself, so a regression names its culprit. The machine may be shared: read medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from collections import defaultdict
from collections.abc import Mapping

DEFAULT_STATEMENT = "from certherd.acme import AcmeClient"
MARKER = "-- certherd bench: the statement starts --"
TIMER = """\
import sys, time
sys.stderr.write({marker!r} + "\\n")
sys.stderr.flush()
start = time.perf_counter()
{statement}
print(time.perf_counter() - start)
"""


def _run(
    python: str, statement: str, env: Mapping[str, str] | None, importtime: bool
) -> subprocess.CompletedProcess[str]:
    flags = ["-X", "importtime"] if importtime else []
    return subprocess.run(
        [python, *flags, "-c", TIMER.format(marker=MARKER, statement=statement)],
        env=dict(env if env is not None else os.environ),
        capture_output=True,
        text=True,
        check=True,
    )


def statement_seconds(
    statement: str = DEFAULT_STATEMENT,
    *,
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
) -> float:
    """Seconds ``statement`` takes in a fresh interpreter (no ``-X importtime``)."""
    return float(_run(python, statement, env, False).stdout.strip().splitlines()[-1])


def top_level_imports(
    statement: str = DEFAULT_STATEMENT,
    *,
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """Cumulative microseconds of each import ``statement`` made itself (``-X importtime``)."""
    lines = _run(python, statement, env, True).stderr.splitlines()
    top: dict[str, int] = {}
    # The interpreter's start-up imports come before the marker and do not count.
    for line in lines[lines.index(MARKER) + 1 :]:
        fields = line.split("|")
        if not line.startswith("import time:") or len(fields) != 3:
            continue
        name, cumulative = fields[2], fields[1].strip()
        # One space after the bar: made by the statement, not by a module it imported.
        if name.startswith(" ") and not name.startswith("  ") and cumulative.isdigit():
            top[name.strip()] = int(cumulative)
    return top


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="fresh interpreters (default 15)")
    parser.add_argument("--top", type=int, default=12, help="heaviest imports shown")
    parser.add_argument("statement", nargs="?", default=DEFAULT_STATEMENT)
    options = parser.parse_args()

    times: list[float] = []
    per_module: dict[str, list[int]] = defaultdict(list)
    for _ in range(options.runs):
        times.append(statement_seconds(options.statement))
        for name, micros in top_level_imports(options.statement).items():
            per_module[name].append(micros)

    print(
        f"{options.statement!r}: median {statistics.median(times) * 1000:.1f} ms over "
        f"{options.runs} fresh interpreters (min {min(times) * 1000:.1f}, "
        f"max {max(times) * 1000:.1f})"
    )
    print("heaviest imports it makes, -X importtime cumulative, median:")
    heaviest = sorted(per_module.items(), key=lambda item: -statistics.median(item[1]))
    for name, values in heaviest[: options.top]:
        print(f"  {statistics.median(values) / 1000:7.1f} ms  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
