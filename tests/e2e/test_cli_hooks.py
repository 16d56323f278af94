"""Pre, post and deploy hooks run by ``issue`` and ``renew``, with their environment."""

from __future__ import annotations

import shlex
from pathlib import Path

from e2e_helpers import archive_versions, live_version, read_env_dump
from e2e_runner import Certherd

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
