"""``certherd completion bash|zsh|fish``: print the shell's completion script.

The script asks ``certherd`` itself what to offer (click's shell completion, through
the ``_CERTHERD_COMPLETE`` variable): commands, options, choices, paths, and the
lineage names of the config dir for ``show``, ``renew``, ``revoke`` and ``delete``.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
from click.shell_completion import CompletionItem, get_completion_class

__all__ = ["complete_lineages", "completion"]

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_CERTHERD_COMPLETE"


def complete_lineages(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """The lineages of the config dir (``renewal/*.json``), read without loading certherd."""
    from certherd.config_dir import default_config_dir

    given = ctx.find_root().params.get("config_dir")
    config_dir = Path(given) if given else default_config_dir()
    try:
        names = sorted(
            entry.name.removesuffix(".json")
            for entry in os.scandir(config_dir / "renewal")
            if entry.name.endswith(".json") and entry.name.startswith(incomplete)
        )
    except OSError:
        return []
    return [CompletionItem(name) for name in names]


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS), metavar="SHELL")
def completion(shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    \b
    bash: certherd completion bash > /etc/bash_completion.d/certherd
    zsh:  certherd completion zsh > "${fpath[1]}/_certherd"
    fish: certherd completion fish > ~/.config/fish/completions/certherd.fish
    """
    from certherd.cli.main import cli

    kind = get_completion_class(shell)
    assert kind is not None  # the Choice admits only shells click supports
    click.echo(kind(cli, {}, "certherd", COMPLETE_VAR).source())
