"""``certherd demo``: the try-it path. A real ACME issuance against a local Pebble CA.

It starts Pebble (and its mock DNS), registers an account, proves the names over
http-01 with certherd's own responder, saves the certificate and key, prints where
they are, and stops Pebble. No domain, no internet, nothing left running.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import click

__all__ = ["demo"]

DEFAULT_NAMES = ("demo.certherd.test", "www.demo.certherd.test")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _issue(
    directory_url: str,
    ca_bundle: str,
    names: tuple[str, ...],
    http_port: int,
    out: Path,
    key_type: str,
) -> dict[str, Any]:
    from certherd.acme.client import AcmeClient
    from certherd.challenges.http01 import Http01StandaloneSolver
    from certherd.crypto.certs import describe_certificate
    from certherd.crypto.files import atomic_write
    from certherd.crypto.keys import generate_key, write_private_key
    from certherd.manager.obtain import obtain_certificate

    account_key = generate_key("ec256")
    started = time.perf_counter()
    async with AcmeClient(directory_url, account_key, ca_bundle=ca_bundle) as client:
        account = await client.register(contact=["demo@certherd.test"], agree_tos=True)
        solver = Http01StandaloneSolver(port=http_port, host="127.0.0.1")
        issued = await obtain_certificate(client, names, [solver], key_type=key_type)
        requests = client.transport.request_count
    elapsed = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    write_private_key(out / "account.key", account_key)
    write_private_key(out / "privkey.pem", issued.key)
    atomic_write(out / "cert.pem", issued.chain.leaf_pem)
    atomic_write(out / "chain.pem", issued.chain.issuers_pem)
    atomic_write(out / "fullchain.pem", issued.chain.leaf_pem + issued.chain.issuers_pem)
    info = describe_certificate(issued.chain.leaf)
    return {
        "account": account.url,
        "names": list(info.dns_names + info.ip_addresses),
        "issuer": info.issuer_cn,
        "serial": info.serial_hex,
        "not_before": info.not_before.isoformat(),
        "not_after": info.not_after.isoformat(),
        "files": {
            name: str((out / name).resolve())
            for name in ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem", "account.key")
        },
        "seconds": round(elapsed, 3),
        "requests": requests,
    }


@click.command("demo")
@click.option(
    "-d",
    "--domain",
    "names",
    multiple=True,
    metavar="NAME",
    help=f"Names to certify (default: {', '.join(DEFAULT_NAMES)}).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("certherd-demo"),
    show_default=True,
    help="Where to write the certificate and keys.",
)
@click.option(
    "--key-type",
    type=click.Choice(["ec256", "ec384", "rsa2048", "rsa3072", "rsa4096"]),
    default="ec256",
    show_default=True,
)
@click.pass_context
def demo(ctx: click.Context, names: tuple[str, ...], out: Path, key_type: str) -> None:
    """Issue a real certificate from a local Pebble test CA (needs `apt-get install pebble`)."""
    from certherd.cli.signals import run_async
    from certherd.testing.pebble import PebbleOptions, PebbleServer

    quiet = bool(getattr(ctx.obj, "quiet", False))
    as_json = bool(getattr(ctx.obj, "json", False))

    def say(text: str) -> None:
        if not (quiet or as_json):
            click.echo(text)

    http_port = _free_port()
    say("Starting a local Pebble ACME CA ...")
    with PebbleServer(PebbleOptions(http_port=http_port, va_nosleep=True)) as pebble:
        say(f"  directory {pebble.directory_url}")
        say(f"Issuing a certificate for {', '.join(names or DEFAULT_NAMES)} over http-01 ...")
        result = run_async(
            _issue(
                pebble.directory_url,
                str(pebble.ca_bundle),
                names or DEFAULT_NAMES,
                http_port,
                out,
                key_type,
            )
        )
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    if quiet:
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="certherd demo: certificate issued", show_header=False)
    table.add_row("names", ", ".join(result["names"]))
    table.add_row("issuer", str(result["issuer"]))
    table.add_row("valid", f"{result['not_before']}  ->  {result['not_after']}")
    table.add_row("serial", result["serial"])
    for name, path in result["files"].items():
        table.add_row(name, path)
    table.add_row("took", f"{result['seconds']} s, {result['requests']} HTTP requests")
    Console().print(table)
    say(
        "Pebble stopped. The certificate is from a throwaway test CA: for real names, "
        "use `certherd issue`."
    )
