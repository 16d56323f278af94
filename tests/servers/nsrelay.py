"""A byte relay run as a process of its own, so that it can live in another network
namespace (``ip netns exec NS python nsrelay.py LISTEN TARGET``).

``LISTEN`` and ``TARGET`` are ``tcp:HOST:PORT`` or ``unix:PATH``. Every connection to
``LISTEN`` is forwarded byte for byte to ``TARGET`` (TLS passes through). A unix socket
crosses network namespaces (it lives in the file system): a node in its own namespace
reaches a server of the test's namespace through one relay on each side. Prints
``ready`` once listening; stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys


async def _open(endpoint: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    kind, _, where = endpoint.partition(":")
    if kind == "unix":
        return await asyncio.open_unix_connection(where)
    host, _, port = where.rpartition(":")
    return await asyncio.open_connection(host, int(port))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def main(listen: str, target: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await _open(target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            _pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True
        )

    kind, _, where = listen.partition(":")
    if kind == "unix":
        with contextlib.suppress(FileNotFoundError):
            os.unlink(where)
        server = await asyncio.start_unix_server(handle, where)
    else:
        host, _, port = where.rpartition(":")
        server = await asyncio.start_server(handle, host, int(port), reuse_address=True)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
