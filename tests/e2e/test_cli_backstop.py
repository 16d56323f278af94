"""Issue 9.3's backstop: an exception that is not certherd's own, in one lineage, is that
lineage's failure, never the run's.

The failure is real code, not a mock: a third-party DNS provider plugin, installed the
way plugins are (an entry point in ``certherd.dns_providers``, found on PYTHONPATH), whose
``add_txt`` has a bug and raises ``RuntimeError``. Healthy lineages next to it on the
real Pebble must renew; the failing one must have its error recorded, its failure hook
run and its backoff set; ``renew`` and ``apply`` end with exit 1; the daemon goes on.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
from pathlib import Path
from typing import Any

from e2e_helpers import live_version, wait_until
from e2e_runner import Certherd
from test_cli_apply import _config
from test_cli_daemon import _get, _samples, _version_now

from certherd.testing.pebble import PebbleServer

PLUGIN = '''\
"""A DNS provider plugin with a bug: add_txt raises an exception of its own."""
from certherd.dns.base import ProviderInfo


class BuggyProvider:
    info = ProviderInfo("buggy", "a plugin whose add_txt has a bug", {})

    @classmethod
    def from_settings(cls, settings, environ):
        return cls()

    async def add_txt(self, record):
        raise RuntimeError("the buggy plugin dropped its connection object")

    async def remove_txt(self, record):
        return None
'''

FAILURE_HOOK = """\
#!/bin/sh
printf '%s|%s\\n' "$CERTHERD_FAILURES" "$CERTHERD_ERROR" >> "$(dirname "$0")/failures.log"
"""

BUGGY = '[{{ kind = "dns", provider = "buggy", propagation_timeout = 0, resolver = "{}" }}]'
"""The plugin as the lineage's solver; the resolver (challtestsrv) answers CNAME lookups."""


def _plugin_environment(folder: Path) -> dict[str, str]:
    """PYTHONPATH holding the plugin and its dist-info (what ``pip install`` would make)."""
    folder.mkdir(parents=True)
    (folder / "buggy_dns.py").write_text(PLUGIN)
    info = folder / "buggy_dns-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: buggy-dns\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[certherd.dns_providers]\nbuggy = buggy_dns:BuggyProvider\n"
    )
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}


def _hook(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    hook = folder / "failure.sh"
    hook.write_text(FAILURE_HOOK)
    hook.chmod(0o755)
    return hook


def _write(
    certherd: Certherd, pebble: PebbleServer, hook: Path, *, buggy: bool, bad_names: list[str]
) -> None:
    """Lineages ``one`` and ``two`` (http-01), and ``bad``: through the buggy plugin when
    ``buggy``, else http-01 too."""
    text = _config(
        pebble,
        {"name": "one", "domains": ["one.backstop.test"]},
        {"name": "two", "domains": ["two.backstop.test"]},
        {"name": "bad", "domains": bad_names, "failure_hooks": [str(hook)]},
    )
    if buggy:
        host, port = pebble.dns_address
        text += f"solvers = {BUGGY.format(f'{host}:{port}')}\n"
    path = certherd.config_dir / "certherd.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _results(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["lineage"]: r for r in document["results"]}


def _state(certherd: Certherd, name: str) -> dict[str, Any]:
    state: dict[str, Any] = json.loads((certherd.config_dir / "state" / f"{name}.json").read_text())
    return state


def test_an_unexpected_error_fails_only_its_lineage(
    certherd: Certherd, pebble: PebbleServer, tmp_path: Path
) -> None:
    hook = _hook(tmp_path / "hooks")
    env = _plugin_environment(tmp_path / "plugin")
    _write(certherd, pebble, hook, buggy=False, bad_names=["bad.backstop.test"])
    first = certherd("--json", "apply", env=env).json()
    assert {r["action"] for r in first["results"]} == {"issued"}

    # The lineage now goes through the buggy plugin; a forced renewal of all three. A new
    # name, so its authorization cannot be one Pebble reuses and the plugin must run.
    names = ["bad.backstop.test", "www.bad.backstop.test"]
    _write(certherd, pebble, hook, buggy=True, bad_names=names)
    renewed = certherd("--json", "renew", "--force", env=env, check=False)
    assert renewed.code == 1, renewed.describe()
    results = _results(renewed.json())
    assert results["one"]["action"] == "renewed"
    assert results["two"]["action"] == "renewed"
    assert results["bad"]["action"] == "failed"
    assert "unexpected RuntimeError" in results["bad"]["error"]
    assert "dropped its connection object" in results["bad"]["error"]
    assert "Traceback" not in renewed.stderr
    assert live_version(certherd.config_dir, "one") == 2
    assert live_version(certherd.config_dir, "two") == 2
    assert live_version(certherd.config_dir, "bad") == 1  # untouched

    state = _state(certherd, "bad")
    assert state["failures"] == 1
    assert "unexpected RuntimeError" in state["last_error"]
    failed_at = dt.datetime.fromisoformat(state["last_failure"])
    next_check = dt.datetime.fromisoformat(state["next_check"])
    assert next_check - failed_at >= dt.timedelta(minutes=5)  # the first backoff step
    told = (hook.parent / "failures.log").read_text().splitlines()
    assert len(told) == 1, told
    assert told[0].startswith("1|unexpected RuntimeError"), told
    listed = {e["name"]: e for e in certherd("--json", "list").json()["lineages"]}
    assert "unexpected RuntimeError" in (listed["bad"]["last_error"] or "")

    # apply: the buggy lineage's names change again, so it is obtained again at once
    # (and fails again); the other two are not due and stay as they are.
    _write(certherd, pebble, hook, buggy=True, bad_names=[*names, "mail.bad.backstop.test"])
    applied = certherd("--json", "apply", env=env, check=False)
    assert applied.code == 1, applied.describe()
    results = _results(applied.json())
    assert results["bad"]["action"] == "failed"
    assert "unexpected RuntimeError" in results["bad"]["error"]
    assert results["one"]["action"] == "not-due"
    assert results["two"]["action"] == "not-due"
    assert "Traceback" not in applied.stderr
    assert _state(certherd, "bad")["failures"] == 2
    assert len((hook.parent / "failures.log").read_text().splitlines()) == 2


def test_the_daemon_goes_on_past_an_unexpected_error(
    certherd: Certherd, pebble_factory: Any, tmp_path: Path
) -> None:
    """With 12-second certificates: the buggy lineage (a new name: no reused
    authorization) fails in the first cycle; the daemon keeps running and renews the
    healthy one when it falls due (~8 s)."""
    short_lived: PebbleServer = pebble_factory(certificate_validity_seconds=12)
    runner = certherd.on(short_lived)
    hook = _hook(tmp_path / "hooks")
    env = _plugin_environment(tmp_path / "plugin")
    _write(runner, short_lived, hook, buggy=False, bad_names=["bad.backstop.test"])
    runner("--json", "apply", env=env)
    names = ["bad.backstop.test", "www.bad.backstop.test"]
    _write(runner, short_lived, hook, buggy=True, bad_names=names)

    from tests.servers.net import free_port

    port = free_port()
    daemon = runner.start("run", "--min-interval", "0.5", "--metrics", f"127.0.0.1:{port}", env=env)
    failures = "certherd_renewal_failures_total"

    def bad_failed() -> bool:
        answer = _get(f"http://127.0.0.1:{port}/metrics")
        return answer is not None and _samples(answer.text, failures).get("bad", 0) >= 1

    wait_until(bad_failed, 20, "the daemon to record the buggy lineage's failure")
    wait_until(lambda: _version_now(runner.config_dir, "one") >= 2, 20, "one to renew")
    assert daemon.process.poll() is None, "the daemon exited"
    assert (hook.parent / "failures.log").read_text().startswith("1|unexpected RuntimeError")
    daemon.process.send_signal(signal.SIGTERM)
    stopped = daemon.wait(timeout=15)
    assert stopped.code == 0, stopped.describe()
    assert "Traceback" not in stopped.stderr
