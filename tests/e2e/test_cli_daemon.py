"""``certherd run``: the daemon renews a 12-second certificate on its own, serves metrics
and health, and stops cleanly on SIGTERM.

Pebble issues certificates valid for 12 s, so (without ARI) one is due when a third of
that is left: about 8 s after issuance. Nothing but the daemon runs after ``issue``.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e_helpers import live_problems, live_version, load_cert, wait_until
from e2e_runner import Certherd, PebbleFactory
from tests.servers.net import free_port

from certherd.testing.pebble import PebbleServer

LIFETIME = 12
EXPIRY = "certherd_certificate_expiry_timestamp_seconds"


@pytest.fixture(scope="module")
def short_lived(pebble_factory: PebbleFactory) -> PebbleServer:
    """A Pebble issuing certificates valid for LIFETIME seconds."""
    return pebble_factory(certificate_validity_seconds=LIFETIME)


@pytest.fixture
def runner(short_lived: PebbleServer, tmp_path: Path) -> Iterator[Certherd]:
    scratch = tmp_path / "runs"
    scratch.mkdir()
    certherd = Certherd(tmp_path / "config", short_lived, scratch)
    yield certherd
    certherd.stop_all()


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=2.0, trust_env=False)
    except httpx.HTTPError:
        return None


def _samples(text: str, family: str) -> dict[str, float]:
    """``{lineage: value}`` of one metric family in the text exposition format."""
    pattern = re.compile(rf'^{family}{{lineage="([^"]*)"}} (\S+)$', re.MULTILINE)
    return {lineage: float(value) for lineage, value in pattern.findall(text)}


def _version_now(config_dir: Path, name: str) -> int:
    """The live version while the daemon may be publishing; 0 for a read that straddled a
    publish (the four links are looked up one by one, the folder may be swapped between)."""
    if live_problems(config_dir, name):
        return 0
    match = re.search(r"(\d+)\.pem$", (config_dir / "live" / name / "cert.pem").resolve().name)
    return int(match.group(1)) if match else 0


def test_the_daemon_renews_on_its_own(runner: Certherd) -> None:
    issued = runner.issue("daemon.test").json()
    assert [r["version"] for r in issued["results"]] == [1]
    live = runner.live("daemon.test")
    first = load_cert(live / "cert.pem")
    assert (first.not_valid_after_utc - first.not_valid_before_utc).total_seconds() <= LIFETIME

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    daemon = runner.start("run", "--min-interval", "0.5", "--metrics", f"127.0.0.1:{port}")
    wait_until(lambda: _get(f"{base}/health") is not None, 15, "the daemon's /health")
    health = _get(f"{base}/health")
    assert health is not None
    assert health.status_code == 200, health.text

    # No other command: the daemon alone brings version 2 within ~15 s of issuance.
    wait_until(
        lambda: _version_now(runner.config_dir, "daemon.test") >= 2,
        15,
        "the daemon to renew daemon.test",
    )

    # /metrics shows the new expiry (once the daemon's cycle has finished).
    def metrics_show_live_expiry() -> bool:
        answer = _get(f"{base}/metrics")
        if answer is None or answer.status_code != 200:
            return False
        shown = _samples(answer.text, EXPIRY).get("daemon.test")
        if _version_now(runner.config_dir, "daemon.test") < 2:
            return False
        current = load_cert(live / "cert.pem").not_valid_after_utc.timestamp()
        return shown == current

    wait_until(metrics_show_live_expiry, 10, f"{EXPIRY} to show the renewed certificate")
    metrics = _get(f"{base}/metrics")
    assert metrics is not None
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert _samples(metrics.text, EXPIRY)["daemon.test"] > first.not_valid_after_utc.timestamp()
    assert _samples(metrics.text, "certherd_renewal_failures_total") == {"daemon.test": 0.0}
    assert re.search(r"^certherd_up 1(\.0)?$", metrics.text, re.MULTILINE)
    health = _get(f"{base}/health")
    assert health is not None
    assert health.status_code == 200, health.text

    began = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    stopped = daemon.wait(timeout=10)
    took = time.monotonic() - began
    assert stopped.code == 0, stopped.describe()
    assert took < 5, f"SIGTERM took {took:.1f} s"
    assert "stopped" in stopped.stderr
    assert "renewed" in stopped.stderr  # it says what it did
    assert _get(f"{base}/health") is None  # the metrics listener is gone too
    assert live_problems(runner.config_dir, "daemon.test") == []
    shown = runner("--json", "show", "daemon.test").json()
    assert shown["version"] == live_version(runner.config_dir, "daemon.test")
    assert shown["failures"] == 0
