"""certherd with a chosen database pool size: what ``certherd apply`` and ``certherd run
--node`` do, through the library, with ``PostgresStorage(max_connections=POOL)``.

    python bench/pooled.py --pool 10 --concurrency 50 --host-dir DIR apply FILE
    python bench/pooled.py --pool 10 --concurrency 10 --host-dir DIR node NAME --metrics ADDR

The command line has no knob for the pool (the storage opens 10 connections at most), so
the bench sweeps it here to choose it by measurement (bench/far.py). The storage URL
comes from ``CERTHERD_STORAGE``, the password from ``PGPASSWORD``, as for the command.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any


async def main(args: argparse.Namespace) -> int:
    from certherd import Certherd
    from certherd.storage.filesystem import FilesystemStorage
    from certherd.storage.hostfiles import HostFiles
    from certherd.storage.postgresql import PostgresStorage

    url = os.environ["CERTHERD_STORAGE"]
    extra: dict[str, Any] = {"node": args.name} if args.mode == "node" else {}
    shared = PostgresStorage(url, max_connections=args.pool, **extra)
    storage = HostFiles(shared, FilesystemStorage(args.host_dir))
    try:
        async with Certherd(storage, concurrency=args.concurrency) as certherd:
            if args.mode == "apply":
                outcomes = await certherd.apply(args.file)
                failed = [o for o in outcomes if o.failed]
                for outcome in failed[:10]:
                    print(f"{outcome.lineage}: {outcome.error}", file=sys.stderr)
                return 1 if failed else 0
            await certherd.run(metrics=args.metrics, node=True, max_interval=5)
            return 0
    finally:
        await shared.aclose()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pool", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--host-dir", required=True)
    modes = parser.add_subparsers(dest="mode", required=True)
    apply = modes.add_parser("apply")
    apply.add_argument("file")
    node = modes.add_parser("node")
    node.add_argument("name")
    node.add_argument("--metrics", required=True)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse(sys.argv[1:]))))
