"""kill -9 during issuance and renewal, and certherd processes racing on one lineage.

Kills happen at sync points (hooks that wait for the test), after a random delay, and at
exact steps of the write sequence through a ``sitecustomize`` injected with PYTHONPATH
(see ``e2e_helpers.FAULT_MODULE``). After each kill the live files must be sound (each one
parses, the certificate matches the key, all of one version) and a re-run must succeed.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import shlex
import signal
import time
from pathlib import Path

import pytest
from e2e_helpers import (
    archive_versions,
    fault_environment,
    holds_flock,
    live_problems,
    live_version,
    load_cert,
    snapshot,
    wait_until,
)
from e2e_runner import Certherd, PebbleFactory, ca_flags_for, http_flags_for

from certherd.testing.pebble import PebbleServer

SYNC_HOOK = """\
#!/bin/sh
# $1: hook kind. When armed-$1 exists: disarm, say so, wait for release-$1 (at most 60 s).
cd "$(dirname "$0")" || exit 1
[ -e "armed-$1" ] || exit 0
rm -f "armed-$1"
echo "$1" >> ran
touch "reached-$1"
i=0
while [ ! -e "release-$1" ] && [ "$i" -lt 1200 ]; do sleep 0.05; i=$((i + 1)); done
"""


def _sync_hooks(folder: Path) -> list[str]:
    """Hook flags for pre, post and deploy that stop where the test arms them."""
    folder.mkdir()
    script = folder / "sync.sh"
    script.write_text(SYNC_HOOK)
    script.chmod(0o755)
    flags = []
    for kind in ("pre", "post", "deploy"):
        flags += [f"--{kind}-hook", f"{shlex.quote(str(script))} {kind}"]
    return flags


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("kind", ["pre", "post", "deploy"])
def test_kill_during_renewal_at_each_hook(certherd: Certherd, tmp_path: Path, kind: str) -> None:
    sync = tmp_path / "sync"
    certherd.issue("killed.test", args=_sync_hooks(sync))
    old_serial = load_cert(certherd.live("killed.test") / "cert.pem").serial_number

    (sync / f"armed-{kind}").touch()
    running = certherd.start("renew", "--force")
    wait_until(lambda: (sync / f"reached-{kind}").exists(), 60, f"the {kind} hook")
    _kill(running.pid)
    assert running.wait().code == -signal.SIGKILL
    (sync / f"release-{kind}").touch()

    expected = 1 if kind == "pre" else 2  # post and deploy run after the switch
    assert live_version(certherd.config_dir, "killed.test") == expected
    if kind == "pre":
        assert load_cert(certherd.live("killed.test") / "cert.pem").serial_number == old_serial

    again = certherd("--json", "renew", "--force").json()["results"]
    assert [r["action"] for r in again] == ["renewed"]
    assert live_version(certherd.config_dir, "killed.test") == again[0]["version"]
    assert again[0]["version"] == expected + 1


def test_kill_during_the_first_issuance(certherd: Certherd, tmp_path: Path) -> None:
    sync = tmp_path / "sync"
    hooks = _sync_hooks(sync)
    (sync / "armed-pre").touch()
    running = certherd.start("issue", "-d", "first.test", *certherd.http, *certherd.ca, *hooks)
    wait_until(lambda: (sync / "reached-pre").exists(), 60, "the pre hook")
    _kill(running.pid)
    running.wait()
    (sync / "release-pre").touch()
    assert not (certherd.live("first.test") / "cert.pem").exists()

    result = certherd.issue("first.test", args=hooks).json()["results"]
    assert [r["action"] for r in result] == ["issued"]
    assert live_version(certherd.config_dir, "first.test") == result[0]["version"]
    [entry] = certherd("--json", "list").json()["lineages"]
    assert entry["version"] == result[0]["version"]


def test_a_lineage_killed_in_its_deploy_hook_is_still_renewed(
    certherd: Certherd, tmp_path: Path
) -> None:
    """A first issuance killed in its deploy hook (a hung reload, a provisioning timeout)
    left a live certificate: ``renew`` must know the lineage, or it silently expires."""
    sync = tmp_path / "sync"
    hooks = _sync_hooks(sync)
    (sync / "armed-deploy").touch()
    running = certherd.start("issue", "-d", "orphan.test", *certherd.http, *certherd.ca, *hooks)
    wait_until(lambda: (sync / "reached-deploy").exists(), 60, "the deploy hook")
    _kill(running.pid)
    running.wait()
    (sync / "release-deploy").touch()
    assert live_version(certherd.config_dir, "orphan.test") == 1

    names = [entry["name"] for entry in certherd("--json", "list").json()["lineages"]]
    assert names == ["orphan.test"]
    renewed = certherd("--json", "renew", "--force").json()["results"]
    assert [(r["lineage"], r["action"]) for r in renewed] == [("orphan.test", "renewed")]


def test_kill_after_random_delays(certherd: Certherd) -> None:
    certherd.issue("random.test")
    began = time.monotonic()
    certherd("renew", "--force")
    typical = time.monotonic() - began
    chance = random.Random(4)  # seeded: a failure can be repeated
    for attempt in range(4):
        delay = chance.uniform(0.2, typical)
        running = certherd.start("renew", "--force")
        time.sleep(delay)
        _kill(running.pid)
        running.wait()
        problems = live_problems(certherd.config_dir, "random.test")
        assert not problems, f"attempt {attempt}, killed after {delay:.2f} s: {problems}"
    final = certherd("--json", "renew", "--force").json()["results"]
    assert [r["action"] for r in final] == ["renewed"]
    assert live_version(certherd.config_dir, "random.test") == final[0]["version"]


def test_kill_before_each_write_step(certherd: Certherd, tmp_path: Path) -> None:
    """The live files are what a web server reloads at any moment: never half a switch.

    ``renew --force`` is killed just before its 1st, 2nd, ... change to the config dir
    (archive files, live links, state), until a run gets through every step.
    """
    certherd.issue("steps.test")
    step = 0
    while True:
        step += 1
        assert step < 100, "more than 99 writes for one renewal?"
        env = fault_environment(tmp_path / f"fault{step}", certherd.config_dir, f"kill:any:{step}")
        result = certherd("renew", "--force", env=env, check=False)
        problems = live_problems(certherd.config_dir, "steps.test")
        assert not problems, f"killed before step {step}: {problems}"
        if result.code == 0:
            break  # every step done: nothing left to interrupt
        assert result.code == -signal.SIGKILL, result.describe()
    assert step > 4  # at least the four archive files were written one by one

    again = certherd("--json", "renew", "--force").json()["results"]
    assert [r["action"] for r in again] == ["renewed"]
    assert live_version(certherd.config_dir, "steps.test") == again[0]["version"]
    leftovers = [p.name for p in (certherd.config_dir / "live").iterdir()]
    assert leftovers == ["steps.test"], "a crashed switch left files in live/"


def test_revoke_after_a_crash_revokes_the_served_certificate(
    certherd: Certherd, tmp_path: Path, pebble: PebbleServer
) -> None:
    """Killed after the switch but before the state was saved: revoke must hit what is live."""
    certherd.issue("crashrevoke.test")
    # Killed just before the first state write after the live files changed.
    env = fault_environment(tmp_path / "fault", certherd.config_dir, "kill:state:1", after="live")
    assert certherd("renew", "--force", env=env, check=False).code == -signal.SIGKILL
    served = load_cert(certherd.live("crashrevoke.test") / "cert.pem").serial_number

    certherd("revoke", "crashrevoke.test", "--reason", "keyCompromise")
    assert pebble.cert_status(served)["Status"] == "Revoked", "revoke missed the live certificate"
    shown = certherd("--json", "show", "crashrevoke.test").json()
    assert int(shown["serial"], 16) == served


def test_two_forced_renewals_at_once_take_turns(certherd: Certherd) -> None:
    """--force renews unconditionally: both succeed, one after the other (the lock)."""
    certherd.issue("race.test")
    first = certherd.start("--json", "renew", "--force")
    second = certherd.start("--json", "renew", "--force")
    results = [first.wait(), second.wait()]
    for result in results:
        assert result.code == 0, result.describe()
    versions = sorted(r.json()["results"][0]["version"] for r in results)
    assert versions == [2, 3]
    assert sorted(archive_versions(certherd.archive("race.test"))) == [1, 2, 3]
    assert live_version(certherd.config_dir, "race.test") == 3


def test_two_renewals_of_a_due_lineage_give_one_certificate(
    pebble_factory: PebbleFactory, certherd: Certherd, tmp_path: Path
) -> None:
    validity = 10
    server = pebble_factory(certificate_validity_seconds=validity)
    sync = tmp_path / "sync"
    hooks = _sync_hooks(sync)
    args = ["-d", "due.test", *http_flags_for(server), *ca_flags_for(server), *hooks]
    certherd("--json", "issue", *args)
    cert = load_cert(certherd.live("due.test") / "cert.pem")
    # PebbleOptions.certificate_validity_seconds reaches Pebble (notAfter is inclusive).
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime == dt.timedelta(seconds=validity - 1)

    threshold = cert.not_valid_after_utc - lifetime / 3
    not_due = certherd("--json", "renew").json()["results"]
    if dt.datetime.now(dt.UTC) < threshold - dt.timedelta(seconds=1):
        assert [r["action"] for r in not_due] == ["not-due"]
    time.sleep(max(0.0, (threshold - dt.datetime.now(dt.UTC)).total_seconds()) + 0.5)
    dry = certherd("--json", "renew", "--dry-run").json()["results"]
    assert [r["action"] for r in dry] == ["would-renew"]
    assert "third of the lifetime" in dry[0]["reason"]

    (sync / "armed-pre").touch()
    marker = certherd.config_dir / "locks" / ".held" / "due.test"
    first = certherd.start("--json", "renew")
    second = certherd.start("--json", "renew")

    def both_at_the_lease() -> bool:
        """The winner waits in its pre hook, holding the lease (its flock on the lease's
        marker); the loser has decided the lineage is due and says it waits for it."""
        runs = (first, second)
        holding = [run for run in runs if holds_flock(run.pid, marker)]
        waiting = [run for run in runs if "waiting for the lock of due.test" in run.stderr_so_far()]
        return len(holding) == 1 and len(waiting) == 1 and holding != waiting

    wait_until(lambda: (sync / "reached-pre").exists(), 60, "the pre hook")
    wait_until(both_at_the_lease, 60, "one holding the lease, one waiting for it")
    (sync / "release-pre").touch()
    results = [first.wait(), second.wait()]
    for result in results:
        assert result.code == 0, result.describe()
    outcomes = sorted(
        (r.json()["results"][0]["action"], r.json()["results"][0]["version"]) for r in results
    )
    assert outcomes == [("renewed", 2), ("skipped", 2)]
    assert (sync / "ran").read_text().split() == ["pre"]  # the loser ran no hook
    assert sorted(archive_versions(certherd.archive("due.test"))) == [1, 2]
    assert live_version(certherd.config_dir, "due.test") == 2


def test_a_renewal_check_does_not_undo_a_concurrent_renewal(
    certherd: Certherd, tmp_path: Path
) -> None:
    """A plain ``renew`` (cron) that read the state just before a ``renew --force`` saved
    a new version must not write the old state back over it."""
    certherd.issue("lost.test")
    fault = tmp_path / "fault"
    env = fault_environment(fault, certherd.config_dir, "pause:state:1")
    check = certherd.start("--json", "renew", env=env)
    wait_until(
        lambda: (fault / "reached").exists() or check.process.poll() is not None,
        60,
        "the check to write the state",
    )
    marker = certherd.config_dir / "locks" / ".held" / "lost.test"  # flock-ed by the holder
    # Paused with the old state read and not under the lease: a renewal now is the race.
    raced = (fault / "reached").exists() and not holds_flock(check.pid, marker)
    if raced:
        certherd("renew", "--force")
    (fault / "release").touch()
    assert check.wait().code == 0
    if not raced:  # the check held the lock (or wrote nothing): renew after it instead
        certherd("renew", "--force")
    served = load_cert(certherd.live("lost.test") / "cert.pem")
    shown = certherd("--json", "show", "lost.test").json()
    assert shown["version"] == live_version(certherd.config_dir, "lost.test")
    assert int(shown["serial"], 16) == served.serial_number


def test_one_unusable_lock_fails_only_its_lineage(certherd: Certherd) -> None:
    certherd.issue("stuck.test")
    certherd.issue("fine.test")
    lock = certherd.config_dir / "locks" / "stuck.test.lock"
    lock.unlink()
    lock.mkdir()  # opening it for writing fails (EISDIR), even for root
    before = snapshot(certherd.live("stuck.test"))
    result = certherd("--json", "renew", "--force", check=False)
    assert result.code == 1, result.describe()
    assert result.stdout.startswith("{"), result.describe()  # still one JSON document
    by_name = {r["lineage"]: r for r in result.json()["results"]}
    assert by_name["fine.test"]["action"] == "renewed"
    assert by_name["stuck.test"]["action"] == "failed"
    assert "stuck.test.lock" in by_name["stuck.test"]["error"]
    assert snapshot(certherd.live("stuck.test")) == before


SHORT_LEASES = """\
# certherd's lineage leases last one second here (120 s by default), so a test can
# pause a run past its lease without waiting two minutes.
import certherd.manager.hygiene

certherd.manager.hygiene.LEASE_TTL = 1.0
"""


def test_a_run_stopped_past_its_lease_cannot_overwrite_the_next_run(
    certherd: Certherd, tmp_path: Path
) -> None:
    """A first ``issue`` is SIGSTOPped in its pre hook, holding the lineage's lease, until
    the lease ran out; a second ``issue`` is granted the lease and makes version 1 live.
    The first wakes up (SIGCONT) and carries on: every write it tries is refused, so
    version 1 stays what the second run made, and the first one says why it failed."""
    sync = tmp_path / "sync"
    hooks = _sync_hooks(sync)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SHORT_LEASES)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path}
    (sync / "armed-pre").touch()
    first = certherd.start(
        "--json", "issue", "-d", "paused.test", *certherd.http, *certherd.ca, *hooks, env=env
    )
    wait_until(lambda: (sync / "reached-pre").exists(), 60, "the first run's pre hook")
    os.kill(first.pid, signal.SIGSTOP)
    try:
        time.sleep(2.0)  # twice the lease: it ran out while the first run was stopped
        second = certherd.issue("paused.test", check=False)
    finally:
        os.kill(first.pid, signal.SIGCONT)
        (sync / "release-pre").touch()
    assert second.code == 0, second.describe()
    [made] = second.json()["results"]
    assert (made["action"], made["version"]) == ("issued", 1)
    served = load_cert(certherd.live("paused.test") / "cert.pem").serial_number

    woken = first.wait()
    assert woken.code == 1, woken.describe()
    assert "refused a write under the lease of paused.test" in woken.stderr, woken.describe()
    assert sorted(archive_versions(certherd.archive("paused.test"))) == [1]
    assert live_version(certherd.config_dir, "paused.test") == 1
    assert load_cert(certherd.live("paused.test") / "cert.pem").serial_number == served
    shown = certherd("--json", "show", "paused.test").json()
    assert shown["version"] == 1
    assert int(shown["serial"], 16) == served
