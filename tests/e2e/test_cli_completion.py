"""``certherd completion SHELL``: the scripts work in real bash, zsh and fish, through the
lazy command group, and complete lineage names from the config dir."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SHELLS = ("bash", "zsh", "fish")

# Each shell: load the script, then ask for the completions of WORDS (the last one is
# being typed); one candidate per line on stdout. zsh's completion builtins work only
# inside its line editor, so _describe and compadd are replaced by printers of what the
# script hands them.
DRIVERS = {
    "bash": """source <(certherd completion bash)
COMP_WORDS=($WORDS); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
[[ "$WORDS" == *" " ]] && { COMP_WORDS+=(""); COMP_CWORD=$((COMP_CWORD + 1)); }
_certherd_completion certherd
printf '%s\\n' "${COMPREPLY[@]}"
""",
    "zsh": """autoload -U compinit && compinit -u -D
source <(certherd completion zsh)
_describe() { local name=$3; print -l -- "${(@P)name}"; }
compadd() { print -l -- "${(@P)${@[-1]}}"; }
words=(${=WORDS}); [[ "$WORDS" == *" " ]] && words+=("")
CURRENT=${#words}
_certherd_completion
""",
    "fish": """certherd completion fish | source
complete -C"$WORDS"
""",
}


@pytest.fixture
def on_path(tmp_path: Path) -> dict[str, str]:
    """An environment whose ``certherd`` is this checkout's (no install needed)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "certherd"
    program.write_text(f'#!/bin/sh\nexec {sys.executable} -m certherd.cli.main "$@"\n')
    program.chmod(0o755)
    base = {k: v for k, v in os.environ.items() if not k.startswith("CERTHERD_")}
    return {**base, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path)}


def _complete(shell: str, words: str, env: dict[str, str]) -> list[str]:
    program = shutil.which(shell)
    if program is None:
        pytest.fail(f"{shell} is not installed: apt-get install -y {shell} (scripts/test does)")
    flags = ["-f", "-c"] if shell == "zsh" else ["-c"]
    done = subprocess.run(
        [program, *flags, DRIVERS[shell]],
        env={**env, "WORDS": words},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # fish and zsh show "value<TAB or :>description": keep the value.
    return [line.split("\t")[0].split(":")[0] for line in done.stdout.splitlines() if line]


@pytest.mark.parametrize("shell", SHELLS)
def test_script_is_printed(shell: str, on_path: dict[str, str]) -> None:
    done = subprocess.run(
        ["certherd", "completion", shell], env=on_path, capture_output=True, text=True, check=True
    )
    assert "_CERTHERD_COMPLETE" in done.stdout
    assert done.stderr == ""


@pytest.mark.parametrize("shell", SHELLS)
def test_commands_options_and_lineages(shell: str, on_path: dict[str, str], tmp_path: Path) -> None:
    assert _complete(shell, "certherd sh", on_path) == ["show"]
    assert "schedule" in _complete(shell, "certherd s", on_path)
    assert {"--force", "--dry-run", "--json"} <= set(_complete(shell, "certherd renew --", on_path))
    assert _complete(shell, "certherd revoke --reason key", on_path) == ["keyCompromise"]

    config = tmp_path / "config"
    (config / "renewal").mkdir(parents=True)
    for name in ("alpha.test", "beta.test", "www.alpha.test"):
        (config / "renewal" / f"{name}.json").write_text("{}")
    for command in ("show", "renew", "revoke", "delete"):
        words = f"certherd --config-dir {config} {command} "
        assert _complete(shell, words, on_path) == ["alpha.test", "beta.test", "www.alpha.test"]
    assert _complete(shell, "certherd show a", {**on_path, "CERTHERD_DIR": str(config)}) == [
        "alpha.test"
    ]


def test_unknown_shell_is_a_usage_error(on_path: dict[str, str]) -> None:
    done = subprocess.run(
        ["certherd", "completion", "tcsh"], env=on_path, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "tcsh" in done.stderr
    assert done.stdout == ""
