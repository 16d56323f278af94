"""A TCP relay that puts a fixed one-way delay on every byte: a CA far away, on loopback.

    python bench/latency.py --listen 127.0.0.1:PORT --target 127.0.0.1:PORT --delay-ms 25

Why not ``tc qdisc ... netem delay`` on a veth in a network namespace: this machine's
kernel is built without ``CONFIG_NET_SCH_NETEM`` ("Specified qdisc kind is unknown"), and
no other queueing discipline it has (htb, tbf, fq_codel, pfifo) delays packets. So the
delay is put on the byte stream instead, in a process of its own:

- every chunk read on one side is written to the other side ``delay`` after it was
  read, in order, in both directions (so a request and its answer cost one round trip,
  ``2 * delay``);
- a new connection is accepted at once, but the first bytes the client sends arrive
  ``3 * delay`` after the accept: on a real path the client's connect returns after the
  handshake's round trip (``2 * delay``), and its first bytes then take ``delay``.

So a new HTTPS connection and one request cost about three round trips (TCP, TLS 1.3,
the request), as over a real path with that round-trip time. Bandwidth, loss and
reordering are not modelled (netem would not be asked for them here either). TLS passes
through untouched. Prints ``ready PORT`` when it listens; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

_CHUNK = 65536


async def _pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    delay: float,
    hold_until: float = 0.0,
) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` seconds late (not before
    ``hold_until`` on the loop's clock); EOF is passed on the same way."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def read() -> None:
        while True:
            data = await reader.read(_CHUNK)
            await queue.put((max(loop.time() + delay, hold_until), data))
            if not data:
                return

    async def write() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                with contextlib.suppress(OSError):
                    if writer.can_write_eof():
                        writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    reading = asyncio.ensure_future(read())
    try:
        await write()
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await reading


async def _relay(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    target: tuple[str, int],
    delay: float,
) -> None:
    loop = asyncio.get_running_loop()
    accepted = loop.time()
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection(*target)
    except OSError:
        client_writer.close()
        return
    try:
        await asyncio.gather(
            _pipe(client_reader, upstream_writer, delay, hold_until=accepted + 3 * delay),
            _pipe(upstream_reader, client_writer, delay),
        )
    except OSError:
        pass
    finally:
        for writer in (client_writer, upstream_writer):
            writer.close()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--listen", type=_address, required=True, help="HOST:PORT (PORT 0: any)")
    parser.add_argument("--target", type=_address, required=True, help="HOST:PORT")
    parser.add_argument("--delay-ms", type=float, required=True, help="one-way delay")
    args = parser.parse_args(argv)
    delay = args.delay_ms / 1000

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await _relay(reader, writer, args.target, delay)

    server = await asyncio.start_server(handle, *args.listen, backlog=1024, reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    print(f"ready {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()


# -- the harness's side: relays as child processes ------------------------------------


class Relay:
    """``latency.py`` as a child process: ``port`` forwards to ``target`` with ``delay_ms``
    one way. Its CPU time is reported (it shares the machine with what it measures)."""

    def __init__(self, target: tuple[str, int], delay_ms: float, log: object) -> None:
        import subprocess

        self.target = target
        self.delay_ms = delay_ms
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--listen", "127.0.0.1:0",
             "--target", f"{target[0]}:{target[1]}", "--delay-ms", str(delay_ms)],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,  # type: ignore[arg-type]
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode().split()
        if len(line) != 2 or line[0] != "ready":
            self.process.kill()
            raise SystemExit(f"bench: the latency relay did not start: {line}")
        self.port = int(line[1])

    def cpu(self) -> float:
        import os
        from pathlib import Path

        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        import subprocess

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(sys.argv[1:]))
