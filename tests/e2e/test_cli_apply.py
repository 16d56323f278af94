"""``certherd apply`` and ``renew`` following certherd.toml in the config dir."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path
from typing import Any

from e2e_helpers import archive_versions, dns_names, live_version, load_cert, wait_until
from e2e_runner import Certherd

from certherd.testing.pebble import PebbleServer


def _toml(value: object) -> str:
    """A TOML value: JSON's strings, lists and booleans are TOML too."""
    return json.dumps(value)


def _config(pebble: PebbleServer, *blocks: dict[str, Any]) -> str:
    """certherd.toml: the Pebble and its http-01 port as defaults, then the certificates."""
    listen = f"127.0.0.1:{pebble.options.http_port}"
    lines = [
        "[defaults]",
        f"server = {_toml(pebble.directory_url)}",
        f"ca_bundle = {_toml(str(pebble.ca_bundle))}",
        'email = "apply@example.com"',
        "agree_tos = true",
        'solver = "http"',
        f"solver_options = {{ listen = {_toml(listen)} }}",
    ]
    for block in blocks:
        lines += ["", "[[certificate]]"]
        lines += [f"{key} = {_toml(value)}" for key, value in block.items()]
    return "\n".join(lines) + "\n"


def _write(certherd: Certherd, pebble: PebbleServer, *blocks: dict[str, Any]) -> Path:
    path = certherd.config_dir / "certherd.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_config(pebble, *blocks))
    return path


def _actions(document: dict[str, Any]) -> dict[str, tuple[str, int | None]]:
    return {r["lineage"]: (r["action"], r["version"]) for r in document["results"]}


def _settings(certherd: Certherd, lineage: str) -> dict[str, Any]:
    settings: dict[str, Any] = json.loads(
        (certherd.config_dir / "renewal" / f"{lineage}.json").read_text()
    )
    return settings


ALPHA = {"domains": ["alpha.apply.test"]}
BETA = {"name": "beta", "domains": ["beta.apply.test", "www.beta.apply.test"]}


def test_apply_converges_and_then_leaves_alone(
    certherd: Certherd, pebble: PebbleServer, tmp_path: Path
) -> None:
    _write(certherd, pebble, ALPHA, BETA)
    first = certherd("--json", "apply", "--concurrency", "2").json()
    assert first["failed"] == 0
    assert _actions(first) == {"alpha.apply.test": ("issued", 1), "beta": ("issued", 1)}
    assert {r["reason"] for r in first["results"]} == {"new in the config file"}
    assert live_version(certherd.config_dir, "alpha.apply.test") == 1
    assert live_version(certherd.config_dir, "beta") == 1
    beta_cert = certherd.live("beta") / "cert.pem"
    assert dns_names(load_cert(beta_cert)) == {"beta.apply.test", "www.beta.apply.test"}
    listed = {entry["name"]: entry for entry in certherd("--json", "list").json()["lineages"]}
    assert listed["beta"]["ca"] == pebble.directory_url
    assert listed["beta"]["solvers"] == [
        {
            "kind": "http",
            "options": {"listen": f"127.0.0.1:{pebble.options.http_port}"},
            "names": [],
        }
    ]

    # Nothing changed: nothing happens.
    archives = {n: archive_versions(certherd.archive(n)) for n in ("alpha.apply.test", "beta")}
    again = certherd("--json", "apply", "--concurrency", "2").json()
    assert _actions(again) == {"alpha.apply.test": ("not-due", 1), "beta": ("not-due", 1)}
    assert {n: archive_versions(certherd.archive(n)) for n in archives} == archives
    assert certherd("-q", "apply").stdout == ""

    # A name added to one block: that lineage only is obtained again.
    alpha_serial = load_cert(certherd.live("alpha.apply.test") / "cert.pem").serial_number
    wider = {**BETA, "domains": [*BETA["domains"], "api.beta.apply.test"]}
    _write(certherd, pebble, ALPHA, wider)
    grown = certherd("--json", "apply", "--concurrency", "2").json()
    assert _actions(grown) == {"alpha.apply.test": ("not-due", 1), "beta": ("renewed", 2)}
    [beta] = [r for r in grown["results"] if r["lineage"] == "beta"]
    assert beta["reason"] == "names changed"
    assert live_version(certherd.config_dir, "beta") == 2
    assert dns_names(load_cert(beta_cert)) == {
        "beta.apply.test",
        "www.beta.apply.test",
        "api.beta.apply.test",
    }
    alpha_now = load_cert(certherd.live("alpha.apply.test") / "cert.pem").serial_number
    assert alpha_now == alpha_serial
    assert sorted(archive_versions(certherd.archive("alpha.apply.test"))) == [1]

    # Only the deploy hooks changed: the settings are rewritten, no new certificate.
    ran = tmp_path / "deployed"
    hook = f"echo $CERTHERD_VERSION >> {ran}"
    _write(certherd, pebble, {**ALPHA, "deploy_hooks": [hook]}, wider)
    assert _settings(certherd, "alpha.apply.test")["hooks"]["deploy"] == []
    hooked = certherd("--json", "apply").json()
    assert _actions(hooked) == {"alpha.apply.test": ("not-due", 1), "beta": ("not-due", 2)}
    assert _settings(certherd, "alpha.apply.test")["hooks"]["deploy"] == [hook]
    assert sorted(archive_versions(certherd.archive("alpha.apply.test"))) == [1]
    assert not ran.exists()  # no new certificate, so nothing was deployed
    # ... and the next renewal runs the new hook.
    certherd("renew", "--force", "alpha.apply.test")
    assert ran.read_text() == "2\n"
    assert live_version(certherd.config_dir, "alpha.apply.test") == 2


def test_a_bad_file_is_a_usage_error_naming_the_line(
    certherd: Certherd, pebble: PebbleServer
) -> None:
    path = _write(certherd, pebble, ALPHA, {**BETA, "key_size": 4096})
    line = path.read_text().splitlines().index("key_size = 4096") + 1
    for command in (("apply",), ("--json", "apply"), ("renew",)):
        failed = certherd(*command, check=False)
        assert failed.code == 2, failed.describe()
        assert failed.stdout == ""
        [message] = failed.stderr.splitlines()
        assert message.startswith(f"certherd: error: {path}:{line}: ")
        assert "'key_size'" in message
        assert "key_type" in message  # the fix: the settings it may have meant
    assert not (certherd.config_dir / "live").exists()  # nothing was obtained

    path.write_text(path.read_text().replace("key_size = 4096", 'key_type = "ec256"\nx = [1,'))
    broken = certherd("apply", check=False)
    assert broken.code == 2
    [message] = broken.stderr.splitlines()
    assert re.match(rf"certherd: error: {re.escape(str(path))}:\d+: not valid TOML", message)


def test_renew_follows_the_file(certherd: Certherd, pebble: PebbleServer) -> None:
    _write(certherd, pebble, ALPHA)
    assert _actions(certherd("--json", "apply").json()) == {"alpha.apply.test": ("issued", 1)}

    # A certificate added to the file is obtained by renew, without apply.
    gamma = {"name": "gamma", "domains": ["gamma.apply.test"], "key_type": "rsa2048"}
    _write(certherd, pebble, ALPHA, gamma)
    renewed = certherd("--json", "renew").json()
    assert renewed["failed"] == 0, renewed
    actions = _actions(renewed)
    assert actions["alpha.apply.test"] == ("not-due", 1)
    assert actions["gamma"][1] == 1
    assert actions["gamma"][0] in ("issued", "renewed")
    [gamma_result] = [r for r in renewed["results"] if r["lineage"] == "gamma"]
    assert gamma_result["reason"] == "no certificate yet"
    assert live_version(certherd.config_dir, "gamma") == 1
    assert dns_names(load_cert(certherd.live("gamma") / "cert.pem")) == {"gamma.apply.test"}
    assert _settings(certherd, "gamma")["key_type"] == "rsa2048"

    # Names changed in the file: renew obtains that lineage again, with the new names.
    _write(certherd, pebble, ALPHA, {**gamma, "domains": ["gamma.apply.test", "g.apply.test"]})
    actions = _actions(certherd("--json", "renew").json())
    assert actions["alpha.apply.test"] == ("not-due", 1)
    assert actions["gamma"] == ("renewed", 2)
    cert = load_cert(certherd.live("gamma") / "cert.pem")
    assert dns_names(cert) == {"gamma.apply.test", "g.apply.test"}


def test_renew_alone_obtains_from_a_fresh_file(certherd: Certherd, pebble: PebbleServer) -> None:
    """A config dir holding only certherd.toml (the schedule's first run): ``renew``
    registers the account the file describes and obtains the certificate."""
    _write(certherd, pebble, ALPHA)
    renewed = certherd("--json", "renew").json()
    assert renewed["failed"] == 0, renewed
    assert _actions(renewed)["alpha.apply.test"][1] == 1
    assert live_version(certherd.config_dir, "alpha.apply.test") == 1


def _issued(certherd: Certherd, name: str) -> bool:
    return (certherd.live(name) / "cert.pem").exists() and live_version(
        certherd.config_dir, name
    ) == 1


def test_sighup_makes_the_daemon_follow_a_changed_file(
    certherd: Certherd, pebble: PebbleServer
) -> None:
    """The daemon asleep for an hour: a certificate added to certherd.toml and SIGHUP
    obtain it at once; the daemon keeps running."""
    _write(certherd, pebble, ALPHA)
    daemon = certherd.start("run", "--min-interval", "3600")
    wait_until(
        lambda: _issued(certherd, "alpha.apply.test"),
        30,
        "the daemon's first cycle to obtain alpha",
    )
    time.sleep(0.5)  # asleep now, for an hour
    _write(certherd, pebble, ALPHA, BETA)
    daemon.process.send_signal(signal.SIGHUP)
    wait_until(
        lambda: _issued(certherd, "beta"),
        30,
        "SIGHUP to make the daemon obtain beta",
    )
    assert daemon.process.poll() is None, "SIGHUP must not stop the daemon"
    daemon.process.send_signal(signal.SIGTERM)
    stopped = daemon.wait(timeout=15)
    assert stopped.code == 0, stopped.describe()
    assert "SIGHUP" in stopped.stderr
    assert live_version(certherd.config_dir, "alpha.apply.test") == 1  # not renewed again
