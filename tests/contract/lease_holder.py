"""A lease holder in its own process, driven line by line on stdin (contract tests).

``python lease_holder.py filesystem ROOT`` (or ``postgresql URL``) opens that storage;
then each line is a command, answered by one line on stdout:

    acquire NAME TTL    -> the token
    renew               -> "ok" or "lost"
    write KEY VALUE     -> "ok" or "fenced" (the write carries the lease)
    delete KEY          -> "ok" or "fenced"
    release             -> "ok"
    cycle NAME N        -> N acquire/release rounds: their tokens, space-separated

A backend added to the contract suite adds its way to open the store here. Commands
run in one event loop (a PostgreSQL store keeps its connection pool in it).
"""

from __future__ import annotations

import asyncio
import sys

from certherd.errors import FencedError, LeaseLostError
from certherd.storage.base import Lease, Storage


def open_store(kind: str, where: str) -> Storage:
    if kind == "filesystem":
        from certherd.storage import FilesystemStorage

        return FilesystemStorage(where)
    if kind == "postgresql":
        from certherd.storage.postgresql import PostgresStorage

        return PostgresStorage(where)
    raise SystemExit(f"unknown backend {kind!r}")


async def handle(store: Storage, lease: Lease | None, words: list[str]) -> tuple[str, Lease | None]:
    command = words[0]
    if command == "acquire":
        lease = await store.acquire(words[1], ttl=float(words[2]), wait=10)
        return str(lease.token), lease
    if command == "cycle":
        tokens = []
        for _ in range(int(words[2])):
            taken = await store.acquire(words[1], ttl=30, wait=30)
            tokens.append(str(taken.token))
            await store.release(taken)
        return " ".join(tokens), lease
    assert lease is not None, "acquire first"
    try:
        if command == "renew":
            lease = await store.renew(lease, ttl=30)
        elif command == "write":
            await store.write(words[1], words[2].encode(), fence=lease)
        elif command == "delete":
            await store.delete(words[1], fence=lease)
        elif command == "release":
            await store.release(lease)
        else:
            raise SystemExit(f"unknown command {command!r}")
    except LeaseLostError:
        return "lost", lease
    except FencedError:
        return "fenced", lease
    return "ok", lease


async def serve() -> None:
    store = open_store(sys.argv[1], sys.argv[2])
    lease: Lease | None = None
    await store.list("")  # connected (and the schema made) before saying ready
    print("ready", flush=True)
    while line := await asyncio.to_thread(sys.stdin.readline):
        answer, lease = await handle(store, lease, line.split())
        print(answer, flush=True)


def main() -> None:
    asyncio.run(serve())


if __name__ == "__main__":
    main()
