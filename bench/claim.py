"""The fleet's scheduling cost over many lineages in PostgreSQL, through its own API.

    python bench/claim.py --due N --batch B      (CERTHERD_STORAGE, PGPASSWORD set)

Run by fleet.scale after the lineages are cloned, in certherd's venv (the run's source
snapshot first on the path), as one node would:

1. ``schedule()`` (every lineage's row, which a node reads at most once a second to
   bring its host's live files up to date), then ``due_in()`` and ``claim()`` with nothing
   due (one indexed query each, however many lineages there are): a node's full pass;
2. N lineages made due at once (their schedule rows moved to the past: bench-side SQL),
   then claimed ``B`` at a time and each settled (``settle``: due again at its state's
   moment) and its lease released, as a node does after finding nothing to renew: the
   scheduling overhead per lineage, without any ACME work.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from typing import Any


async def measure(due: int, batch: int, repeats: int) -> dict[str, Any]:
    from certherd.storage.fleet import fleet_of
    from certherd.storage.postgresql import PostgresStorage

    storage = PostgresStorage(os.environ["CERTHERD_STORAGE"], node="bench")
    fleet = fleet_of(storage)
    if fleet is None:
        raise SystemExit("bench: this certherd's PostgreSQL storage has no fleet schedule")
    try:
        await fleet.due_in()  # opens the pool
        lineages = int(await _one(storage, "SELECT count(*) FROM certherd_schedule"))
        reads = []
        for _ in range(max(3, repeats // 3)):
            began = time.perf_counter()
            rows = await fleet.schedule()
            reads.append(time.perf_counter() - began)
        idle_due, idle_claim = [], []
        for _ in range(repeats):
            began = time.perf_counter()
            await fleet.due_in()
            idle_due.append(time.perf_counter() - began)
            began = time.perf_counter()
            got = await fleet.claim(limit=batch, ttl=60)
            idle_claim.append(time.perf_counter() - began)
            if got:
                raise SystemExit(f"bench: {len(got)} lineages were due before the test")
        await _one(
            storage,
            "WITH picked AS (SELECT lineage FROM certherd_schedule ORDER BY lineage "
            f"LIMIT {int(due)}) UPDATE certherd_schedule s SET due = now() - interval '1 s' "
            "FROM picked WHERE s.lineage = picked.lineage RETURNING 1",
        )
        claims, settles, releases = [], [], []
        done = 0
        began_all = time.perf_counter()
        while True:
            began = time.perf_counter()
            leases = await fleet.claim(limit=batch, ttl=60)
            claims.append(time.perf_counter() - began)
            if not leases:
                break
            for lease in leases:
                began = time.perf_counter()
                await fleet.settle(lease.name, floor=3600)
                settles.append(time.perf_counter() - began)
                began = time.perf_counter()
                await storage.release(lease)
                releases.append(time.perf_counter() - began)
            done += len(leases)
        wall = time.perf_counter() - began_all
    finally:
        await storage.aclose()
    if done != due:
        raise SystemExit(f"bench: claimed {done} lineages, {due} were made due")
    return {
        "lineages": lineages,
        "due": due,
        "batch": batch,
        "wall": wall,
        "per_lineage_ms": wall / due * 1000,
        "schedule_read": statistics.median(reads),
        "schedule_rows": len(rows),
        "empty_claim": statistics.median(idle_claim),
        "empty_due_in": statistics.median(idle_due),
        "claim_median": statistics.median(claims),
        "settle_median": statistics.median(settles),
        "release_median": statistics.median(releases),
    }


async def _one(storage: Any, sql: str) -> Any:
    """One value of a bench-side query, on a connection of its own (not certherd's pool)."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(storage._conninfo, autocommit=True) as c:
        cursor = await c.execute(sql.encode())
        rows = await cursor.fetchall()
    return rows[0][0] if rows and rows[0] else len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--due", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.due, args.batch, args.repeats))))


if __name__ == "__main__":
    main()
