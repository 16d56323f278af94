"""``-v`` and ``-vv`` against real Pebble: what a person debugging needs, on stderr, and
never a secret; stdout stays one JSON document."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import secrets
import time
from pathlib import Path

import pytest
from e2e_runner import Certherd

from certherd.testing.pebble import PebbleServer

REQUEST_LINE = re.compile(
    r"^\d\d:\d\d:\d\d\.\d{3} acme\.transport: (GET|POST|HEAD) (\S+) (https://\S+) -> "
    r"(\d{3})( urn:\S+: .*)? \(\d+ ms\)$",
    re.MULTILINE,
)


def _requests(stderr: str) -> list[tuple[str, str, str, int]]:
    return [(m[0], m[1], m[2], int(m[3])) for m in REQUEST_LINE.findall(stderr)]


def _secret_lines(path: Path) -> list[str]:
    """The base64 lines of a PEM private key: none may appear in any output."""
    return [line for line in path.read_text().splitlines() if line and "-----" not in line]


def test_v_shows_requests_and_challenge_steps(certherd: Certherd) -> None:
    result = certherd("-v", "--json", "issue", "-d", "verbose.test", *certherd.http, *certherd.ca)
    assert result.json()["results"][0]["action"] == "issued"  # stdout: the document only
    requests = _requests(result.stderr)
    labels = [(method, label, status) for method, label, _, status in requests]
    assert ("GET", "directory", 200) in labels
    assert ("POST", "newAccount", 201) in labels
    assert ("POST", "newOrder", 201) in labels
    assert ("POST", "finalize", 200) in labels
    assert all(url.startswith(certherd.server.directory_url[:20]) for *_, url, _ in requests)
    assert "verbose.test: the CA offers " in result.stderr
    assert "answering http-01" in result.stderr
    assert re.search(
        r"challenges\.http01: http-01: 127\.0\.0\.1 asked 'GET /\.well-known/acme-challenge/"
        r"[A-Za-z0-9_-]+ HTTP/1\.1': 200$",
        result.stderr,
        re.MULTILINE,
    ), result.stderr  # the CA's fetch, as certherd's own server saw it
    assert "verbose.test: authorization valid" in result.stderr
    assert "cleaned up 1 challenge(s), 0 error(s)" in result.stderr
    assert "request headers" not in result.stderr  # -vv only


def test_v_shows_the_problem_type(certherd: Certherd) -> None:
    certherd.issue("twice.test")
    certherd("revoke", "twice.test")
    result = certherd("-v", "revoke", "twice.test", check=False)
    assert result.code == 1, result.describe()
    assert re.search(
        r"POST revokeCert https://\S+ -> 400 urn:ietf:params:acme:error:alreadyRevoked: ",
        result.stderr,
    ), result.stderr


def test_vv_adds_headers_and_never_secrets(
    certherd: Certherd, pebble_factory: object, tmp_path: Path
) -> None:
    kid, hmac_key = "kid-verbose", base64.urlsafe_b64encode(secrets.token_bytes(32))
    server: PebbleServer = pebble_factory(eab_keys={kid: hmac_key.decode().rstrip("=")})  # type: ignore[operator]
    key_file = tmp_path / "eab.key"
    key_file.write_text(hmac_key.decode().rstrip("="))
    runner = certherd.on(server)
    eab = ["--eab-kid", kid, "--eab-hmac-key-file", str(key_file)]
    result = runner("-vv", "--json", "issue", "-d", "headers.test", *runner.http, *runner.ca, *eab)
    assert result.json()["results"][0]["action"] == "issued"
    stderr = result.stderr
    assert "request headers: User-Agent: certherd/" in stderr
    assert re.search(r"response headers: .*Replay-Nonce: [A-Za-z0-9_-]+", stderr, re.I)
    assert 'JWS protected {"alg": "ES256", "jwk": "<EC public key>"' in stderr
    assert "payload and signature <redacted>" in stderr
    assert '"payload"' not in stderr
    assert '"signature"' not in stderr
    assert hmac_key.decode().rstrip("=") not in stderr
    [account_key] = certherd.config_dir.glob("accounts/*/*/key.pem")
    for line in _secret_lines(account_key) + _secret_lines(
        certherd.live("headers.test") / "privkey.pem"
    ):
        assert line not in stderr


def test_quiet_hides_requests(certherd: Certherd) -> None:
    result = certherd("-q", "issue", "-d", "quiet.test", *certherd.http, *certherd.ca, "-v")
    assert (result.stdout, result.stderr) == ("", ""), result.describe()


def test_waiting_for_a_lock_says_so(certherd: Certherd) -> None:
    """Another process holds the lineage's lock: the command says it waits, then goes on."""
    certherd.issue("locked.test")
    lock = certherd.config_dir / "locks" / "locked.test.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        running = certherd.start("--json", "renew", "--force", "locked.test")
        err = Path(running._err)
        deadline = time.monotonic() + 30
        while "waiting for the lock" not in err.read_text() and time.monotonic() < deadline:
            assert running.process.poll() is None, err.read_text()
            time.sleep(0.05)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    result = running.wait()
    assert result.code == 0, result.describe()
    assert re.search(
        r"^certherd: warning: waiting for the lock of locked\.test \(.*\): another certherd",
        result.stderr,
        re.MULTILINE,
    ), result.stderr
    assert re.search(r"got the lock of locked\.test after \d+\.\d s", result.stderr)
    assert json.loads(result.stdout)["results"][0]["action"] == "renewed"


@pytest.mark.parametrize("flags", [["-v"], ["-vv"]])
def test_verbose_renew_keeps_json_parseable(certherd: Certherd, flags: list[str]) -> None:
    certherd.issue("json.test")
    result = certherd("renew", "--force", "--json", *flags)
    assert result.json()["results"][0]["action"] == "renewed"
    assert ("POST", "finalize") in [(m, label) for m, label, _, _ in _requests(result.stderr)]
