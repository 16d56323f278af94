"""Every command and every option of ``certherd`` says what it does in ``--help``, and
shell completion works through the lazy command group."""

from __future__ import annotations

from pathlib import Path

import click
import click.testing
import pytest

from certherd.cli.main import COMMANDS, cli


def _walk(command: click.Command, path: str) -> list[tuple[str, click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        context = click.Context(command)
        for name in command.list_commands(context):
            child = command.get_command(context, name)
            assert child is not None, f"{path} {name}: listed but cannot be loaded"
            found += _walk(child, f"{path} {name}")
    return found


ALL = _walk(cli, "certherd")


def test_every_listed_command_loads() -> None:
    loaded = {path.split()[1] for path, _ in ALL if len(path.split()) == 2}
    assert loaded == set(COMMANDS)


@pytest.mark.parametrize(("path", "command"), ALL, ids=[path for path, _ in ALL])
def test_every_command_and_option_has_help(path: str, command: click.Command) -> None:
    assert (command.help or "").strip(), f"{path}: the command has no help text"
    missing = [
        "/".join(param.opts)
        for param in command.params
        if isinstance(param, click.Option) and not param.hidden and not (param.help or "").strip()
    ]
    assert not missing, f"{path}: no help text for {', '.join(missing)}"


@pytest.mark.parametrize(("path", "command"), ALL, ids=[path for path, _ in ALL])
def test_help_renders(path: str, command: click.Command) -> None:
    args = [*path.split()[1:], "--help"]
    result = click.testing.CliRunner().invoke(cli, args, prog_name="certherd")
    assert result.exit_code == 0, result.output
    assert "Usage: certherd" in result.output


def test_readme_covers_every_command() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = readme.split("### Commands", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `certherd ")]
    for path, _ in ALL:
        words = path.split()
        if len(words) < 2:
            continue
        top = f"| `{' '.join(words[:2])}"
        row = next((r for r in rows if r.startswith(top + " ") or r.startswith(top + "`")), None)
        assert row is not None, f"README's command table has no row for {' '.join(words[:2])}"
        if len(words) == 3:  # a subcommand: named in its group's row
            assert words[2] in row, f"README's row for {words[1]} does not name {words[2]}"
