"""Pre, post and deploy hooks run by ``issue`` and ``renew``, with their environment."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from e2e_helpers import (
    archive_versions,
    forget_authorizations,
    live_version,
    load_cert,
    read_env_dump,
)
from e2e_runner import Certherd, PebbleFactory
from tests.servers.net import free_port

from certherd.testing.pebble import PebbleServer

KINDS = ("pre", "post", "deploy")
EXTS = ("env", "pem")
SECRET = {"CERTHERD_E2E_SECRET": "must-not-leak", "PROVIDER_API_TOKEN": "must-not-leak"}


def _dump(kind: str, folder: Path) -> str:
    """A hook line that saves its environment and a copy of the live certificate."""
    target = shlex.quote(str(folder / kind))
    return (
        f"n=$(ls {target}.*.env 2>/dev/null | wc -l); env -0 > {target}.$n.env; "
        f'if [ -e "$CERTHERD_CERT_PATH" ]; then cp "$CERTHERD_CERT_PATH" {target}.$n.pem; fi'
    )


def test_hooks_get_the_lineage_names_and_paths(certherd: Certherd, tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    seen.mkdir()
    hooks = ["--pre-hook", _dump("pre", seen), "--post-hook", _dump("post", seen)]
    hooks += ["--deploy-hook", _dump("deploy", seen)]
    certherd(
        "--json",
        "issue",
        "-d",
        "hooks.test",
        "-d",
        "www.hooks.test",
        *certherd.http,
        *certherd.ca,
        *hooks,
        env=SECRET,
    )
    live = certherd.live("hooks.test")
    deploy = read_env_dump(seen / "deploy.0.env")
    assert deploy["RENEWED_LINEAGE"] == str(live)
    assert deploy["RENEWED_DOMAINS"] == "hooks.test www.hooks.test"
    assert deploy["CERTHERD_HOOK"] == "deploy"
    assert deploy["CERTHERD_LINEAGE"] == "hooks.test"
    assert deploy["CERTHERD_DOMAINS"] == "hooks.test www.hooks.test"
    assert deploy["CERTHERD_LIVE_DIR"] == str(live)
    assert deploy["CERTHERD_CERT_PATH"] == str(live / "cert.pem")
    assert deploy["CERTHERD_CHAIN_PATH"] == str(live / "chain.pem")
    assert deploy["CERTHERD_FULLCHAIN_PATH"] == str(live / "fullchain.pem")
    assert deploy["CERTHERD_KEY_PATH"] == str(live / "privkey.pem")
    assert deploy["CERTHERD_VERSION"] == "1"
    assert "PATH" in deploy
    for name in SECRET:
        assert name not in deploy  # the environment is explicit, never inherited
    # The deploy hook saw the new certificate in place.
    assert (seen / "deploy.0.pem").read_bytes() == (live / "cert.pem").read_bytes()

    pre = read_env_dump(seen / "pre.0.env")
    assert pre["CERTHERD_HOOK"] == "pre"
    assert pre["CERTHERD_LINEAGE"] == "hooks.test"
    assert "RENEWED_LINEAGE" not in pre  # Certbot sets it for deploy hooks only
    assert not (seen / "pre.0.pem").exists()  # nothing was live before the first issuance
    post = read_env_dump(seen / "post.0.env")
    assert post["CERTHERD_HOOK"] == "post"

    # renew repeats the hooks given to issue.
    certherd("renew", "--force", env=SECRET)
    deploy = read_env_dump(seen / "deploy.1.env")
    assert deploy["CERTHERD_VERSION"] == "2"
    assert (seen / "deploy.1.pem").read_bytes() == (live / "cert.pem").read_bytes()
    assert (seen / "pre.1.pem").read_bytes() == (seen / "deploy.0.pem").read_bytes()
    ran = {p.name for p in seen.iterdir()}
    assert ran == {f"{kind}.{n}.{ext}" for kind in KINDS for n in (0, 1) for ext in EXTS} - {
        "pre.0.pem"
    }

    # Not due: no hooks run.
    certherd("renew")
    assert not (seen / "deploy.2.env").exists()
    assert not (seen / "pre.2.env").exists()


def test_a_failing_deploy_hook_is_reported_and_the_certificate_kept(certherd: Certherd) -> None:
    hook = "echo 'reload failed: nginx is not running' >&2; exit 3"
    failed = certherd.issue("deployfail.test", args=["--deploy-hook", hook], check=False)
    assert failed.code == 1, failed.describe()
    [result] = failed.json()["results"]
    assert result["action"] == "issued"
    [error] = result["hook_errors"]
    assert "deploy hook" in error
    assert "3" in error
    assert "nginx is not running" in error
    assert live_version(certherd.config_dir, "deployfail.test") == 1
    shown = certherd("--json", "show", "deployfail.test").json()
    assert shown["version"] == 1

    human = certherd("renew", "--force", check=False)
    assert human.code == 1
    assert "nginx is not running" in human.stdout + human.stderr
    assert live_version(certherd.config_dir, "deployfail.test") == 2
    assert sorted(archive_versions(certherd.archive("deployfail.test"))) == [1, 2]

    quiet = certherd("-q", "renew", "--force", check=False)
    assert quiet.code == 1
    assert quiet.stdout == ""
    assert "nginx is not running" in quiet.stderr
    assert live_version(certherd.config_dir, "deployfail.test") == 3


def test_quiet_issue_still_prints_a_failing_deploy_hook(certherd: Certherd) -> None:
    hook = "echo 'reload failed: nginx is not running' >&2; exit 3"
    domains = ["-d", "quietfail.test"]
    args = ["-q", "issue", *domains, *certherd.http, *certherd.ca, "--deploy-hook", hook]
    quiet = certherd(*args, check=False)
    assert quiet.code == 1
    assert quiet.stdout == ""
    assert "nginx is not running" in quiet.stderr  # -q is for cron: errors must still show
    assert live_version(certherd.config_dir, "quietfail.test") == 1


def _flagged_hook(folder: Path, otherwise: str) -> str:
    """A deploy hook that logs $CERTHERD_VERSION once ``ok`` exists in ``folder``, and
    until then does ``otherwise``."""
    flag, log = shlex.quote(str(folder / "ok")), shlex.quote(str(folder / "deployed"))
    return f'if [ -e {flag} ]; then echo "$CERTHERD_VERSION" >> {log}; else {otherwise}; fi'


def _results(result: object) -> dict[str, tuple[str, list[str]]]:
    document = result.json()  # type: ignore[attr-defined]
    return {r["lineage"]: (r["action"], r["hook_errors"]) for r in document["results"]}


def test_a_failed_deploy_is_run_again_until_it_succeeds(certherd: Certherd, tmp_path: Path) -> None:
    hook = _flagged_hook(tmp_path, "echo 'reload failed: nginx is down' >&2; exit 3")
    first = certherd.issue("redeploy.test", args=["--deploy-hook", hook], check=False)
    assert first.code == 1, first.describe()
    assert live_version(certherd.config_dir, "redeploy.test") == 1

    # Not due, but its deploy hooks are owed: each run tries them again (and says so).
    again = certherd("--json", "renew", check=False)
    assert again.code == 1, again.describe()
    [(action, errors)] = _results(again).values()
    assert action == "deployed"
    assert "nginx is down" in errors[0]
    dry = certherd("--json", "renew", "--dry-run")
    assert _results(dry)["redeploy.test"] == ("would-deploy", [])
    assert certherd("--json", "show", "redeploy.test").json()["deploy_owed"] is True
    assert "deploy hooks owed" in certherd("list").stdout

    (tmp_path / "ok").touch()
    fixed = certherd("--json", "renew")
    assert _results(fixed)["redeploy.test"] == ("deployed", [])
    assert (tmp_path / "deployed").read_text().split() == ["1"]

    assert certherd("--json", "show", "redeploy.test").json()["deploy_owed"] is False
    settled = certherd("--json", "renew")
    assert _results(settled)["redeploy.test"][0] == "not-due"
    assert (tmp_path / "deployed").read_text().split() == ["1"], "deployed once only"
    assert live_version(certherd.config_dir, "redeploy.test") == 1
    assert sorted(archive_versions(certherd.archive("redeploy.test"))) == [1]


def test_a_deploy_cut_short_by_a_crash_runs_on_the_next_renew(
    certherd: Certherd, tmp_path: Path
) -> None:
    """certherd killed (-9) while its deploy hook runs: the version is live, and the next
    ``renew`` (with nothing due) runs the deploy hook for it."""
    hook = _flagged_hook(tmp_path, "kill -9 $PPID; sleep 5")
    crashed = certherd.issue("crashdeploy.test", args=["--deploy-hook", hook], check=False)
    assert crashed.code == -9, crashed.describe()
    assert live_version(certherd.config_dir, "crashdeploy.test") == 1
    assert not (tmp_path / "deployed").exists()

    (tmp_path / "ok").touch()
    renewed = certherd("--json", "renew")
    assert _results(renewed)["crashdeploy.test"] == ("deployed", [])
    assert (tmp_path / "deployed").read_text().split() == ["1"]
    assert live_version(certherd.config_dir, "crashdeploy.test") == 1


@pytest.fixture(scope="module")
def no_reuse(pebble_factory: PebbleFactory) -> PebbleServer:
    """A Pebble that validates every order again (no authorization reuse)."""
    return pebble_factory(authz_reuse_percent=0)


def test_failure_hooks_tell_someone_when_renewal_fails(
    certherd: Certherd, no_reuse: PebbleServer, tmp_path: Path
) -> None:
    """A renewal that cannot pass validation runs the failure hooks with the error, the
    count of failures in a row and the live certificate's expiry; the live files stay."""
    certherd = certherd.on(no_reuse)
    notify = f"env -0 > {shlex.quote(str(tmp_path))}/failure.$CERTHERD_FAILURES.env"
    certherd.issue("failing.test", args=["--failure-hook", notify])
    assert not list(tmp_path.glob("failure.*")), "no failure, no failure hook"

    # Break the solver: certherd's http-01 server moves to a port Pebble does not use.
    settings_path = certherd.config_dir / "renewal" / "failing.test.json"
    settings = json.loads(settings_path.read_text())
    settings["solvers"][0]["options"]["listen"] = f"127.0.0.1:{free_port()}"
    settings_path.write_text(json.dumps(settings))
    # Else Pebble now and then reuses the issuance's authorization: no challenge, a pass.
    assert forget_authorizations(certherd.config_dir, no_reuse.directory_url, no_reuse.ca_bundle)

    for attempt in (1, 2):
        failed = certherd("--json", "renew", "--force", check=False)
        assert failed.code == 1, failed.describe()
        env = read_env_dump(tmp_path / f"failure.{attempt}.env")
        assert env["CERTHERD_HOOK"] == "failure"
        assert env["CERTHERD_LINEAGE"] == "failing.test"
        assert env["CERTHERD_DOMAINS"] == "failing.test"
        assert env["CERTHERD_FAILURES"] == str(attempt)
        assert env["CERTHERD_VERSION"] == "1"
        assert "failing.test" in env["CERTHERD_ERROR"]
        assert "\n" not in env["CERTHERD_ERROR"]
        cert = load_cert(certherd.live("failing.test") / "cert.pem")
        assert env["CERTHERD_NOT_AFTER"] == cert.not_valid_after_utc.isoformat()
        assert "RENEWED_LINEAGE" not in env
    assert live_version(certherd.config_dir, "failing.test") == 1


def test_a_first_issuance_that_fails_runs_the_failure_hooks(
    certherd: Certherd, tmp_path: Path
) -> None:
    notify = f"env -0 > {shlex.quote(str(tmp_path))}/failure.env"
    failed = certherd(
        "issue",
        "-d",
        "neverissued.test",
        "--http",
        f"127.0.0.1:{free_port()}",  # Pebble validates elsewhere: this cannot pass
        *certherd.ca,
        "--failure-hook",
        notify,
        check=False,
    )
    assert failed.code == 1, failed.describe()
    env = read_env_dump(tmp_path / "failure.env")
    assert env["CERTHERD_LINEAGE"] == "neverissued.test"
    assert env["CERTHERD_FAILURES"] == "1"
    assert env["CERTHERD_NOT_AFTER"] == ""
    assert "neverissued.test" in env["CERTHERD_ERROR"]
