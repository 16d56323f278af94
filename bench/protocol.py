"""Issue N certificates against a local Pebble in one process; report rate and requests.

Pebble runs with its validator on, no validation sleep and no nonce rejection, and no
authorization reuse (every certificate proves its names). One AcmeClient (one account,
one connection pool, one nonce pool) and one http-01 responder serve all orders.

Prints certificates per second and HTTP requests per certificate, split by kind and
compared with the protocol minimum: per certificate one newOrder, one authorization
fetch and one challenge answer per name, one finalize, one certificate download, plus
polls; newNonce and directory only once per run (newNonce: once per concurrent slot).

    python bench/protocol.py -n 50 --concurrency 1
    python bench/protocol.py -n 200 --concurrency 20 --names 2
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import socket
import statistics
import time

from certherd.acme import AcmeClient
from certherd.challenges import Http01StandaloneSolver
from certherd.crypto import generate_key
from certherd.manager import obtain_certificate
from certherd.testing.pebble import PebbleOptions, PebbleServer

POLLS = ("authorization", "order")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def run(
    directory: str, ca_bundle: str, port: int, args: argparse.Namespace
) -> dict[str, object]:
    async with AcmeClient(directory, generate_key("ec256"), ca_bundle=ca_bundle) as client:
        await client.register(contact=["bench@certherd.test"], agree_tos=True)
        client.transport.trace.clear()
        solver = Http01StandaloneSolver(port=port, host="127.0.0.1")
        gate = asyncio.Semaphore(args.concurrency)
        durations: list[float] = []

        async def one(index: int) -> None:
            names = [f"n{j}.c{index}.bench.test" for j in range(args.names)]
            async with gate:
                began = time.perf_counter()
                await obtain_certificate(client, names, [solver])
                durations.append(time.perf_counter() - began)

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(args.count)))
        wall = time.perf_counter() - started
        trace = list(client.transport.trace)
    kinds = collections.Counter(label for _, label in trace)
    minimum = 3 + 2 * args.names  # newOrder, finalize, certificate + per name: authz, challenge
    non_poll = sum(n for k, n in kinds.items() if k not in POLLS)
    per_cert_polls = (
        kinds["authorization"] - args.names * args.count + kinds["order"]
    ) / args.count
    return {
        "certificates": args.count,
        "names_per_certificate": args.names,
        "concurrency": args.concurrency,
        "wall_seconds": round(wall, 3),
        "certificates_per_second": round(args.count / wall, 1),
        "median_issuance_seconds": round(statistics.median(durations), 4),
        "requests_per_certificate": round(len(trace) / args.count, 2),
        "protocol_minimum_without_polls": minimum,
        "requests_per_certificate_without_polls": round(
            (non_poll + args.names * args.count) / args.count, 2
        ),
        "polls_per_certificate": round(per_cert_polls, 2),
        "requests_by_kind": dict(sorted(kinds.items())),
        "first_certificate_sequence": [label for _, label in trace[: minimum + 4]]
        if args.concurrency == 1
        else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--names", type=int, default=1, help="names per certificate")
    args = parser.parse_args()
    port = free_port()
    options = PebbleOptions(
        http_port=port, nonce_reject_percent=0, authz_reuse_percent=0, va_nosleep=True
    )
    with PebbleServer(options) as pebble:
        result = asyncio.run(run(pebble.directory_url, str(pebble.ca_bundle), port, args))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
