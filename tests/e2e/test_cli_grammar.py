"""One grammar: global options before or after the command, results on stdout and
diagnostics on stderr, and the exit codes of the README's table, all by real invocations."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from e2e_runner import Certherd, Result

README = Path(__file__).parents[2] / "README.md"


def _documented_exit_codes() -> dict[str, str]:
    """The README's exit code table: code -> meaning."""
    text = README.read_text()
    section = text.split("### Exit codes", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+) \|", section, re.MULTILINE)
    assert rows, "README.md has no exit code table under '### Exit codes'"
    return {code: meaning.strip() for code, meaning in rows}


def _expect(result: Result, code: int) -> None:
    assert result.code == code, result.describe()
    assert str(code) in _documented_exit_codes(), f"exit {code} is not in README's table"
    assert "Traceback" not in result.stderr, result.describe()


@pytest.mark.parametrize(
    "args",
    [
        ("list", "--json"),
        ("list", "-q", "--json"),
        ("--json", "list"),
        ("list", "--json", "--config-dir", "{config}"),
        ("renew", "--json"),
        ("renew", "--dry-run", "--json", "-v"),
    ],
)
def test_global_options_before_or_after_the_command(
    certherd: Certherd, tmp_path: Path, args: tuple[str, ...]
) -> None:
    certherd.issue("grammar.test")
    result = certherd(*(a.replace("{config}", str(certherd.config_dir)) for a in args))
    document = result.json()  # stdout is one JSON document
    found = document.get("lineages") or document.get("results")
    assert [d.get("name") or d.get("lineage") for d in found] == ["grammar.test"]


def test_config_dir_after_the_command_is_the_one_used(certherd: Certherd, tmp_path: Path) -> None:
    certherd.issue("where.test")
    other = tmp_path / "other"
    shown = certherd("list", "--json", "--config-dir", str(other)).json()
    assert shown == {"lineages": []}
    assert certherd("show", "where.test", "--json").json()["name"] == "where.test"


def test_group_commands_take_global_options_after(certherd: Certherd) -> None:
    certherd("account", "register", *certherd.ca, "--json")
    shown = certherd("account", "show", *certherd.ca, "--json").json()
    assert shown["status"] == "valid"


def test_results_on_stdout_diagnostics_on_stderr(certherd: Certherd) -> None:
    """``account show``, ``revoke`` and ``delete`` print their result on stdout."""
    certherd("account", "register", *certherd.ca)
    shown = certherd("account", "show", *certherd.ca)
    assert shown.stdout.startswith("account: https://"), shown.describe()
    assert "(valid)" in shown.stdout
    assert shown.stderr == ""

    certherd.issue("streams.test")
    listed = certherd("list")
    assert "streams.test" in listed.stdout, listed.describe()
    assert listed.stderr == ""
    revoked = certherd("revoke", "streams.test")
    assert re.match(r"streams\.test: certificate \w+ revoked", revoked.stdout), revoked.describe()
    assert revoked.stderr == ""
    deleted = certherd("delete", "streams.test")
    assert deleted.stdout.startswith("streams.test: deleted"), deleted.describe()
    assert deleted.stderr == ""
    quiet = certherd("-q", "list")
    assert (quiet.stdout, quiet.stderr) == ("", ""), quiet.describe()


# -- exit codes: every row of README's table, by a real invocation ----------------------


def test_exit_0_success_and_nothing_due(certherd: Certherd) -> None:
    _expect(certherd("--version"), 0)
    nothing = certherd("renew")  # nothing due (nothing at all) is a success
    _expect(nothing, 0)
    assert nothing.stdout == ""  # no table of headers alone
    assert nothing.stderr.startswith("nothing to do: no lineages in ")
    _expect(certherd("list", "--json"), 0)


@pytest.mark.parametrize(
    "args",
    [
        ("no-such-command",),
        ("list", "--no-such-option"),
        ("renew", "--concurrency", "0"),
        ("show", "nosuch"),
        ("renew", "nosuch"),
        ("renew", "--force", "nosuch"),
        ("revoke", "nosuch"),
        ("delete", "nosuch"),
        ("account", "show", "--server", "https://127.0.0.1:1/dir"),
        ("account", "rollover", "--server", "https://127.0.0.1:1/dir"),
    ],
)
def test_exit_2_usage(certherd: Certherd, args: tuple[str, ...]) -> None:
    certherd.issue("known.test")
    result = certherd(*args, check=False)
    _expect(result, 2)
    assert result.stdout == ""
    if "nosuch" in args:
        assert "no lineage named 'nosuch'" in result.stderr
        assert "known.test" in certherd("list").stdout  # nothing renewed or removed
    if "account" in args:
        assert "no account for https://127.0.0.1:1/dir" in result.stderr


def test_exit_2_unknown_lineage_renews_nothing(certherd: Certherd) -> None:
    """An unknown name next to a known one: exit 2 before any renewal."""
    certherd.issue("kept.test")
    result = certherd("--json", "renew", "--force", "kept.test", "nosuch", check=False)
    _expect(result, 2)
    assert result.stdout == ""
    assert (certherd.archive("kept.test") / "cert1.pem").exists()
    assert not (certherd.archive("kept.test") / "cert2.pem").exists()


@pytest.mark.parametrize("config_dir", ["/proc/certherd-test", "{file}/below-a-file"])
def test_exit_2_unusable_config_dir(certherd: Certherd, tmp_path: Path, config_dir: str) -> None:
    (tmp_path / "a-file").write_text("")
    target = Path(config_dir.replace("{file}", str(tmp_path / "a-file")))
    runner = certherd.elsewhere(target)
    for json_flag in ([], ["--json"]):
        result = runner(
            *json_flag, "issue", "-d", "dir.test", *certherd.http, *certherd.ca, check=False
        )
        _expect(result, 2)
        [line] = result.stderr.splitlines()
        assert line.startswith(f"certherd: error: the config dir {target} is not usable"), line


def test_exit_2_bad_config_file(certherd: Certherd) -> None:
    certherd.config_dir.mkdir(parents=True, exist_ok=True)
    (certherd.config_dir / "certherd.toml").write_text("[[certificate]]\ndomains = 3\n")
    result = certherd("apply", check=False)
    _expect(result, 2)
    assert "certherd.toml" in result.stderr


def test_exit_1_a_certificate_failed(certherd: Certherd, tmp_path: Path) -> None:
    """Nothing answers http-01 where Pebble looks: the CA refuses, exit 1."""
    elsewhere = ["--webroot", str(tmp_path)]  # files Pebble never fetches
    result = certherd("--json", "issue", "-d", "fails.test", *elsewhere, *certherd.ca, check=False)
    _expect(result, 1)
    document = json.loads(result.stdout)
    assert document["failed"] == 1
