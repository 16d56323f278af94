"""The fleet's measurements (issue 12): certherd on a shared PostgreSQL.

- :func:`scale`: the renewal check over N lineages stored in PostgreSQL (up to 100,000,
  cloned inside the database from one lineage issued for real), as a node pays it on
  every pass: ``certherd --storage URL renew`` with nothing due, from a cold process;
  plus an empty database as the floor, so the cost per lineage is the check's own.
- :func:`issuance` (in fleet_issue.py): the same certificates issued by three nodes, by one
  process, and by Certbot's loop, in one run.

The database is Debian's PostgreSQL started by the tests' own launcher
(``tests/servers/postgres.py``) in a temporary folder, on a unix socket, with ``fsync``
on (the tests turn it off): commits are as durable as a production server's on this
disk. certherd logs in as the ``certherd`` role with its password from ``PGPASSWORD``
(never on the command line) and the URL in ``CERTHERD_STORAGE``.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from measure import Run, run_measured, summarize, wait_port_free

__all__ = ["Database", "clone_in_database", "scale"]

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Database:
    """One PostgreSQL server for the run; :meth:`fresh` makes an empty database."""

    server: Any = None

    def __enter__(self) -> Database:
        if str(REPO) not in sys.path:
            sys.path.insert(0, str(REPO))
        from tests.servers.postgres import PostgresServer, find_binary

        if find_binary("initdb") is None:
            raise SystemExit("bench: PostgreSQL is missing: apt-get install -y postgresql")
        self.server = PostgresServer(fsync=True)
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def fresh(self) -> str:
        """A new empty database owned by ``certherd``: its URL (no password in it)."""
        return str(self.server.url(self.server.database(), password=None))

    def env(self, url: str) -> dict[str, str]:
        """What a certherd process needs to use ``url`` (the password as libpq reads it)."""
        from tests.servers.postgres import PASSWORD

        return {"CERTHERD_STORAGE": url, "PGPASSWORD": PASSWORD}

    def query(self, url: str, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
        """Run ``sql`` as certherd (the owner of its tables) on ``url``'s database."""
        import psycopg
        from tests.servers.postgres import PASSWORD

        with psycopg.connect(url, password=PASSWORD, autocommit=True) as connection:
            cursor = connection.execute(sql.encode(), params)  # type: ignore[call-overload]
            return cursor.fetchall() if cursor.description else []

    def version(self) -> str:
        return str(self.server.execute("SHOW server_version")[0][0])


# Every value of the seed lineage, copied once per new name; the JSON values carry the
# lineage's name (settings, state, live record), so the name is replaced in them too.
# One statement per kind of value, settings first: the fleet's schedule (kept by a
# trigger on each write) makes a lineage due when its settings appear, then takes its
# due moment from its state, as when certherd writes them.
_CLONE = """
INSERT INTO certherd_values (key, data, size, private, modified, version)
SELECT new.key, new.data, octet_length(new.data), new.private, now(),
       nextval('certherd_value_versions')
FROM (
    SELECT replace(v.key, %(seed)s, n.name) AS key,
           CASE WHEN v.key LIKE '%%.json'
                THEN convert_to(replace(convert_from(v.data, 'UTF8'), %(seed)s, n.name), 'UTF8')
                ELSE v.data END AS data,
           v.private
    FROM certherd_values v
    CROSS JOIN (
        SELECT %(prefix)s || lpad(i::text, 6, '0') || %(suffix)s AS name
        FROM generate_series(%(start)s, %(stop)s - 1) AS i
    ) n
    WHERE v.key LIKE %(pattern)s
) new
"""
_KINDS = ("renewal/{seed}.json", "state/{seed}.json", "archive/{seed}/%%", "live/{seed}.json")


def clone_name(index: int, suffix: str = ".scale.bench.test") -> str:
    return f"l{index:06d}{suffix}"


def clone_in_database(
    database: Database, url: str, seed: str, start: int, stop: int, suffix: str
) -> int:
    """Add lineages ``clone_name(start)`` .. ``clone_name(stop - 1)``, copies of ``seed``,
    inside the database (one statement); the number of values written."""
    rows = []
    for kind in _KINDS:
        pattern = kind.format(seed=seed.replace("_", "\\_")).replace("%%", "%")
        params = {"seed": seed, "prefix": "l", "suffix": suffix, "start": start, "stop": stop}
        rows += database.query(url, _CLONE + " RETURNING 1", {**params, "pattern": pattern})
    # The renewal index is a summary of every lineage: stale now, rebuilt by the next run.
    database.query(url, "DELETE FROM certherd_values WHERE key = 'index.json'")
    return len(rows)


def prefill_host(host: Path, seed: str, names: list[str]) -> None:
    """Give this host its copy of each clone's live version (the seed's files, as
    HostFiles writes them: ``archive/NAME/*1.pem`` and ``live/NAME/*`` links), so the
    timed runs measure the check, not a new host's first copy of every lineage (which
    the first 10,000 measure: see ``first_run_after_cloning``)."""
    from lineages import _write

    from certherd.storage.layout import FILES, archive_file

    version = int(os.readlink(host / "live" / seed / "cert.pem").rsplit("cert", 1)[1][:-4])
    contents = {f: (host / archive_file(seed, f, version)).read_bytes() for f in FILES}
    for name in names:
        folder = host / "archive" / name
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        live = host / "live" / name
        live.mkdir(mode=0o700, parents=True, exist_ok=True)
        for file, data in contents.items():
            mode = 0o600 if file == "privkey.pem" else 0o644
            _write(host / archive_file(name, file, version), data, mode)
            (live / file).unlink(missing_ok=True)
            os.symlink(Path("..", "..", archive_file(name, file, version)), live / file)


def _run(bench: Any, argv: list[str], env: dict[str, str], log: str, timeout: float) -> Run:
    wait_port_free(bench.ca.http_port)
    full_env = {**bench.certherd.env(), **env}
    result = run_measured(
        argv, env=full_env, log=bench.logs / f"{log}.log", pebble=bench.pebble, timeout=timeout
    )
    if result.returncode != 0:
        tail = (bench.logs / f"{log}.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"bench: certherd failed (exit {result.returncode}):\n{tail}")
    return result


def _renew(host: Path) -> list[str]:
    return ["-q", "--config-dir", str(host), "renew"]


def _profile(bench: Any, argv: list[str], env: dict[str, str], log: str) -> dict[str, Any]:
    """One more run under cProfile: where the time goes (own and cumulative, top 25)."""
    import pstats

    out = bench.logs / f"{log}.cprofile"
    python = str(bench.certherd.python)
    _run(bench, [python, "-m", "cProfile", "-o", str(out), *argv], env, f"{log}-profile", 3600)
    stats = pstats.Stats(str(out))
    total = max(stats.total_tt, 1e-9)  # type: ignore[attr-defined]
    rows = []
    for (file, line, function), entry in stats.stats.items():  # type: ignore[attr-defined]
        _, calls, own, cumulative, _ = entry
        rows.append(
            {
                "function": f"{_short(file)}:{line}({function})",
                "calls": calls,
                "own": round(own, 4),
                "cumulative": round(cumulative, 4),
            }
        )
    by_own = sorted(rows, key=lambda r: -r["own"])[:25]
    by_cumulative = sorted(rows, key=lambda r: -r["cumulative"])[:40]
    return {"total": round(total, 3), "by_own": by_own, "by_cumulative": by_cumulative}


def _short(file: str) -> str:
    for marker in ("/certherd/", "/site-packages/", "/lib/python3"):
        if marker in file:
            return (
                file.split(marker, 1)[1]
                if marker != "/certherd/"
                else "certherd/" + (file.split(marker, 1)[1])
            )
    return file


def claim(bench: Any, env: dict[str, str], due: int, batch: int = 10) -> dict[str, Any] | None:
    """bench/claim.py in certherd's venv: the fleet's claim and settle over the lineages
    of the database in ``env`` (None when this certherd has no fleet schedule yet)."""
    import importlib.util
    import json
    import subprocess

    if importlib.util.find_spec("certherd.storage.fleet") is None:
        bench.say("  (no certherd.storage.fleet in this certherd: the claim is not measured)")
        return None
    argv = [str(bench.certherd.python), str(Path(__file__).with_name("claim.py"))]
    argv += ["--due", str(due), "--batch", str(batch)]
    done = subprocess.run(
        argv, env={**bench.certherd.env(), **env}, capture_output=True, text=True, check=False
    )
    (bench.logs / "scale-claim.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"bench: claim.py failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    bench.say(
        f"  claim + settle + release of {due:,} due lineages (of {result['lineages']:,}), "
        f"{batch} a claim: {result['per_lineage_ms']:.3f} ms per lineage; an empty claim "
        f"{result['empty_claim'] * 1000:.1f} ms"
    )
    return result


def scale(
    bench: Any, database: Database, sizes: list[int], repeats: int, prefill_above: int = 10000
) -> dict[str, Any]:
    """``renew`` with nothing due over N lineages in PostgreSQL, N growing by cloning.

    Above ``prefill_above`` lineages, this host's copies of the new clones are written by
    the bench (:func:`prefill_host`) before the first run: a host copying 90,000 lineages
    for the first time takes many minutes, which the smaller sizes measure already."""
    certherd = str(bench.certherd.bin)
    url = database.fresh()
    env = database.env(url)
    host = bench.work / "scale-host"
    result: dict[str, Any] = {"sizes": [], "postgresql": database.version()}
    # The floor: a process that opens the storage and finds no lineage at all.
    floor_runs = [
        _run(bench, [certherd, *_renew(host)], env, "scale-renew", 600) for _ in range(repeats)
    ]
    result["floor"] = summarize(floor_runs)
    seed = "seed.scale.bench.test"
    issue = bench.certherd.issue(host, seed)
    _run(bench, issue, env, "scale-seed", 600)
    _run(bench, [certherd, *_renew(host)], env, "scale-seed", 600)  # its ARI re-check time
    have = 1
    for size in sorted(sizes):
        began = time.perf_counter()
        values = clone_in_database(database, url, seed, have, size, ".scale.bench.test")
        prefilled = size > prefill_above
        if prefilled:
            prefill_host(host, seed, [clone_name(i) for i in range(have, size)])
        bench.say(
            f"  cloned {size - have:,} lineages ({values:,} values) in the database in "
            f"{time.perf_counter() - began:.1f} s"
        )
        have = size
        database.query(url, "VACUUM ANALYZE certherd_values")
        warm = _run(bench, [certherd, *_renew(host)], env, "scale-renew", 3600)
        runs = [
            _run(bench, [certherd, *_renew(host)], env, "scale-renew", 3600) for _ in range(repeats)
        ]
        summary = summarize(runs)
        summary["lineages"] = size
        summary["first_run_after_cloning"] = warm.to_json()
        summary["host_prefilled"] = prefilled
        summary["per_lineage_us"] = (summary["wall"] - result["floor"]["wall"]) / size * 1e6
        result["sizes"].append(summary)
        bench.say(
            f"  renew over {size:>7,} lineages in PostgreSQL: {summary['wall']:.3f} s wall "
            f"(first run {warm.wall:.2f} s), {summary['per_lineage_us']:.1f} us per lineage"
        )
    result["profile"] = _profile(bench, [certherd, *_renew(host)], env, "scale-renew")
    result["claim"] = claim(bench, env, min(10000, have))
    walls = {entry["lineages"]: entry["wall"] for entry in result["sizes"]}
    if len(walls) >= 2:
        small, large = sorted(walls)[-2:]
        result["marginal_us"] = (walls[large] - walls[small]) / (large - small) * 1e6
    result["database_bytes"] = int(
        database.query(url, "SELECT pg_database_size(current_database())")[0][0]
    )
    result["host_dir"] = str(host)
    result["cores"] = os.cpu_count()
    return result
