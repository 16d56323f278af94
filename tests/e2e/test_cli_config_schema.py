"""A certherd.toml or a solver flag that does not fit its schema is a usage error (exit 2,
one line: file, line, key path) found before any account is looked up or order placed."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_runner import Certherd

UNREACHABLE = "https://127.0.0.1:1/dir"  # reaching it would be exit 1 and a network error


def _one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert lines[0].startswith("certherd: error: ")
    assert "Traceback" not in stderr
    return lines[0]


def _config(tmp: Path, setting: str) -> str:
    return (
        "[defaults]\n"
        f'server = "{UNREACHABLE}"\n'
        'email = "ops@example.com"\n'
        "agree_tos = true\n"
        'solver = "http"\n'
        "\n"
        "[[certificate]]\n"
        'domains = ["schema.test"]\n'
        f"{setting}\n"
    )


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ('preferred_chain = ["a"]', "certificate[0].preferred_chain must be a string"),
        ("email = 3", "certificate[0].email must be a string"),
        ("ca_bundle = 1", "certificate[0].ca_bundle must be a string"),
        ('reuse_key = "no"', "certificate[0].reuse_key must be true or false"),
        ("profile = 7", "certificate[0].profile must be a string"),
        (
            'solver_options = { lisen = "127.0.0.1:8080" }',
            "certificate[0].solver_options.lisen: unknown setting 'lisen'",
        ),
        ('colour = "blue"', "certificate[0].colour: unknown setting 'colour'"),
    ],
)
@pytest.mark.parametrize("command", ["apply", "renew"])
def test_a_config_mistake_stops_before_any_account(
    certherd: Certherd, tmp_path: Path, command: str, setting: str, expected: str
) -> None:
    certherd.config_dir.mkdir(parents=True)
    path = certherd.config_dir / "certherd.toml"
    path.write_text(_config(tmp_path, setting))
    result = certherd(command, check=False)
    assert result.code == 2, result.describe()
    line = _one_error_line(result.stderr)
    assert line.startswith(f"certherd: error: {path}:9: {expected}"), line
    assert not (certherd.config_dir / "accounts").exists()
    assert not (certherd.config_dir / "renewal").exists()


def test_a_config_file_that_is_not_utf8(certherd: Certherd) -> None:
    certherd.config_dir.mkdir(parents=True)
    path = certherd.config_dir / "certherd.toml"
    path.write_bytes(b'[defaults]\nemail = "caf\xe9@example.com"\n')
    result = certherd("apply", check=False)
    assert result.code == 2, result.describe()
    assert f"{path}:2: not UTF-8 text" in _one_error_line(result.stderr)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--dns", "rfc2136", "--dns-opt", "lisen=x"], "--dns-opt lisen: unknown setting"),
        (["--dns", "rfc2136", "--dns-opt", "port=fifty"], "--dns-opt port must be a whole number"),
        (["--dns", "exec", "--dns-opt", "timeout=-1"], "--dns-opt timeout must be a number > 0"),
        (["--dns", "rfc2136", "--dns-opt", "server:env=X"], "server is not a secret setting"),
        (
            ["--dns", "lexicon:localzone", "--dns-opt", "filenam=/tmp/zone"],
            "--dns-opt filenam: unknown setting of lexicon provider localzone",
        ),
        (
            ["--dns-propagation-timeout", "-3", "--dns", "exec"],
            "--dns-propagation-timeout: propagation_timeout must be",
        ),
        (["--solver-hook", "http-01= "], "hook command is empty"),
    ],
)
def test_a_solver_flag_mistake_stops_before_the_ca(
    certherd: Certherd, flags: list[str], expected: str
) -> None:
    ca = ["--server", UNREACHABLE, "--agree-tos"]
    result = certherd("issue", "-d", "flags.test", *ca, *flags, check=False)
    assert result.code == 2, result.describe()
    assert expected in _one_error_line(result.stderr)
    assert not (certherd.config_dir / "accounts").exists()
