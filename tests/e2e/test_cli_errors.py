"""Usage errors: exit 2, one clear line on stderr, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_runner import Certherd


def _one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert lines[0].startswith("certherd: error: ")
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--eab-kid", "kid-1"], "--eab-hmac-key-file"),
        (["--server", "https://127.0.0.1:1/dir", "--ca", "letsencrypt"], "not both"),
        (["--ca", "nosuchca"], "unknown CA"),
        (["--dns-opt", "zone=example.test"], "need --dns"),
        (["--dns-resolver", "127.0.0.1"], "need --dns"),
        (["--webroot", "/a", "--webroot", "/b", "--webroot", "/c"], "--webroot"),
        (["--webroot-map", "no-equals-sign"], "KEY=VALUE"),
        (["--name", "../escape"], "not usable"),
        (["--name", "-starts-with-a-dash"], "not usable"),
    ],
)
def test_bad_flag_combinations(
    certherd: Certherd, ca_flags: list[str], flags: list[str], expected: str
) -> None:
    ca = ["--agree-tos"] if "--server" in flags or "--ca" in flags else ca_flags
    names = ["-d", "bad.test", "-d", "www.bad.test"]
    result = certherd("issue", *names, "--http", "127.0.0.1:1", *ca, *flags, check=False)
    assert result.code == 2, result.describe()
    assert expected in _one_error_line(result.stderr)
    assert result.stdout == ""
    assert not (certherd.config_dir / "renewal").exists()
    assert not (certherd.config_dir / "accounts").exists()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--http", "99999"], "port must be a number from 1 to 65535"),
        (["--tls-alpn", "127.0.0.1:http"], "port must be a number"),
        (["--dns", "nosuchprovider"], "DNS provider 'nosuchprovider'"),
        (["--webroot", "{missing}"], "does not exist or is not a directory"),
        (["--http", "127.0.0.1:1", "--email", "not-an-address"], "not an e-mail address"),
        (["--http", "127.0.0.1:1", "--email", "a@b.test, c@d.test"], "not an e-mail address"),
    ],
)
def test_local_mistakes_are_found_before_the_ca_is_asked(
    certherd: Certherd, tmp_path: Path, flags: list[str], expected: str
) -> None:
    """Nothing listens at the CA URL: reaching it would fail with exit 1 and a network
    error; a local mistake must be a usage error (exit 2) found before that."""
    flags = [flag.format(missing=tmp_path / "missing") for flag in flags]
    ca = ["--server", "https://127.0.0.1:1/dir", "--agree-tos"]
    result = certherd("issue", "-d", "local.test", *ca, *flags, check=False)
    assert result.code == 2, result.describe()
    assert expected in _one_error_line(result.stderr)
    assert not (certherd.config_dir / "accounts").exists()


def test_no_solver_is_a_usage_error(certherd: Certherd) -> None:
    result = certherd("issue", "-d", "nosolver.test", *certherd.ca, check=False)
    assert result.code == 2
    line = _one_error_line(result.stderr)
    assert "--http" in line
    assert "--dns" in line


@pytest.mark.parametrize(
    "args",
    [
        ["renew", "--no-such-flag"],
        ["revoke", "x.test", "--reason", "because"],
        ["issue", "-d", "x.test", "--key-type", "dsa1024"],
        ["renew", "--concurrency", "0"],
        ["issue", "--http", "80"],
        ["frobnicate"],
    ],
)
def test_click_usage_errors_exit_2_without_a_traceback(certherd: Certherd, args: list[str]) -> None:
    result = certherd(*args, check=False)
    assert result.code == 2, result.describe()
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ")
    assert not certherd.config_dir.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["show", "missing.test"],
        ["revoke", "missing.test"],
        ["delete", "missing.test"],
    ],
)
def test_an_unknown_lineage_is_named(certherd: Certherd, args: list[str]) -> None:
    certherd.issue("present.test")
    result = certherd("--json", *args, check=False)
    assert result.code == 2, result.describe()  # a name the user got wrong: usage error
    line = _one_error_line(result.stderr)
    assert "'missing.test'" in line
    assert "certherd list" in line
    assert result.stdout == ""


def test_renewing_an_unknown_lineage_is_a_usage_error(certherd: Certherd) -> None:
    """As in ``show``, ``revoke`` and ``delete``: exit 2, before anything is renewed."""
    certherd.issue("present.test")
    result = certherd("--json", "renew", "missing.test", "present.test", check=False)
    assert result.code == 2, result.describe()
    assert "'missing.test'" in _one_error_line(result.stderr)
    assert result.stdout == ""


def test_a_bad_lineage_name_is_refused(certherd: Certherd) -> None:
    result = certherd("show", "../../etc", check=False)
    assert result.code == 2
    assert "not usable" in _one_error_line(result.stderr)


def test_an_unreachable_ca_is_one_line(certherd: Certherd, tmp_path: Path) -> None:
    bundle = certherd.server.ca_bundle
    args = ["--server", "https://127.0.0.1:9/dir", "--ca-bundle", str(bundle), "--agree-tos"]
    result = certherd("issue", "-d", "down.test", *certherd.http, *args, check=False)
    assert result.code in (1, 2), result.describe()
    line = _one_error_line(result.stderr)
    assert "127.0.0.1:9" in line
