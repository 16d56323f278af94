"""SIGTERM, SIGHUP and Ctrl-C during ``certherd issue``: every clean-up still runs.

A name proven by webroot and another by a DNS exec hook that never finishes its
``present`` keep the order waiting with the challenge file written; the signal then
has to unwind it all: the webroot file removed, the hook's ``cleanup`` called, the
lock released, no live files, and the process ended by that signal once clean.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from e2e_runner import Certherd

HOOK = """\
#!/bin/sh
# The DNS exec provider: log each call; "present" never finishes on its own.
echo "$1 $CERTHERD_DNS_NAME" >> "$(dirname "$0")/calls"
if [ "$1" = present ]; then
    exec sleep 120
fi
"""


def _wait_for(check: object, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(check) and check():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signal_during_issue_cleans_up(
    certherd: Certherd, tmp_path: Path, stop: signal.Signals
) -> None:
    webroot = tmp_path / "webroot"
    webroot.mkdir()
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    hook = hooks / "dns-hook"
    hook.write_text(HOOK)
    hook.chmod(0o755)
    challenges = webroot / ".well-known" / "acme-challenge"

    running = certherd.start(
        "issue",
        "-d",
        "web.signal.test",
        "-d",
        "dns.signal.test",
        "--webroot-map",
        f"web.signal.test={webroot}",
        "--dns",
        "exec",
        "--dns-opt",
        f"command={hook}",
        "--dns-propagation-timeout",
        "0",
        *certherd.ca,
    )
    calls = hooks / "calls"
    assert _wait_for(lambda: calls.exists() and "present" in calls.read_text()), "no present"
    assert _wait_for(lambda: challenges.is_dir() and any(challenges.iterdir())), "no file"

    running.process.send_signal(stop)
    result = running.wait(timeout=60)

    assert result.code == -stop, result.describe()
    assert f"interrupted ({stop.name})" in result.stderr
    assert not challenges.exists() or not any(challenges.iterdir()), list(challenges.iterdir())
    assert "cleanup _acme-challenge.dns.signal.test." in calls.read_text()
    assert not certherd.live("web.signal.test").exists()
    # The lock is free again: the same order can be issued at once (by http-01 now).
    again = certherd.issue("web.signal.test", args=["--name", "web.signal.test"])
    assert again.code == 0, again.describe()
