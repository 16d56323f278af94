"""``certherd storage-key new|reseal``: the key file that seals private keys in a database."""

from __future__ import annotations

import os
from pathlib import Path

import click

from certherd.cli.common import Context, pass_context, run_async

__all__ = ["storage_key"]


@click.group("storage-key")
def storage_key() -> None:
    """The key file that seals private keys before they reach the --storage database."""


@storage_key.command("new")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--rotate",
    is_flag=True,
    help="Put a new key first in an existing FILE (it seals from now on; the old keys "
    "still unseal until `certherd storage-key reseal` ran and their lines are removed).",
)
@pass_context
def new(ctx: Context, file: Path, rotate: bool) -> None:
    """Write a new storage key to FILE (0600; copy it to every node, keep a copy safe)."""
    from certherd._nofollow import untrusted_reason
    from certherd.crypto.files import atomic_write
    from certherd.errors import ConfigError
    from certherd.storage.sealing import new_key_text, read_key_file

    target = file.expanduser().absolute()
    reason = untrusted_reason(target.parent)
    if reason is not None:
        raise ConfigError(f"will not write the storage key {target}: {reason}")
    old = ""
    if os.path.lexists(target):
        if not rotate:
            raise ConfigError(
                f"{target} exists: a new key there would leave every value it sealed "
                "unreadable; give --rotate to put a new key first, or another FILE"
            )
        read_key_file(target)  # a valid, private key file, or a one-line error
        old = target.read_text()
    elif rotate:
        raise ConfigError(f"--rotate puts a new key into {target}, which does not exist")
    atomic_write(target, (new_key_text() + old).encode(), 0o600)
    sealer = read_key_file(target)
    ctx.emit(
        {"file": str(target), "sealing_key": sealer.current_id, "keys": len(sealer.keys)},
        lambda: ctx.result(
            f"wrote {target}: key {sealer.current_id} seals"
            + (f" ({len(sealer.keys) - 1} older key(s) still unseal)" if rotate else "")
        ),
    )


@storage_key.command("reseal")
@pass_context
def reseal(ctx: Context) -> None:
    """Seal every private value in the database with the key file's first key."""

    async def work() -> tuple[int, int]:
        async with ctx.certherd() as certherd:
            return await certherd.reseal()

    resealed, current = run_async(work())
    ctx.emit(
        {"resealed": resealed, "current": current},
        lambda: ctx.result(f"resealed {resealed} private value(s); {current} were current"),
    )
