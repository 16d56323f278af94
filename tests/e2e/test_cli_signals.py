"""SIGTERM, SIGHUP and Ctrl-C during ``certherd issue``: every clean-up still runs.

A name proven by webroot and another by a DNS exec hook that never finishes its
``present`` keep the order waiting with the challenge file written; the signal then
has to unwind it all: the webroot file removed, the hook's ``cleanup`` called, the
lock released, no live files, and the process ended by that signal once clean.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import pytest
from e2e_runner import Certherd

from certherd.testing.pebble import PebbleServer

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
        "--dns-resolver",  # CNAMEs looked up at challtestsrv: works without outside DNS
        ":".join(map(str, certherd.server.dns_address)),
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


# -- several lineages at once: every one cleans up (issue 10 item 6) -------------------

LINEAGE_HOOK = """\
#!{python}
# The DNS exec provider against challtestsrv. "present" adds the TXT value, then blocks
# until killed; "cleanup" takes a different time per name (so the lineages end their
# clean-up one after another), then clears the name.
import json, os, sys, time, urllib.request

action, name = sys.argv[1], os.environ["CERTHERD_DNS_NAME"]


def post(path, body):
    request = urllib.request.Request(
        {url!r} + path, data=json.dumps(body).encode(), method="POST"
    )
    urllib.request.urlopen(request, timeout=5).read()


def log(line):
    with open({calls!r}, "a") as calls:
        calls.write(line + "\\n")


if action == "present":
    post("/set-txt", {{"host": name, "value": os.environ["CERTHERD_DNS_VALUE"]}})
    log("present " + name)
    time.sleep(120)
else:
    time.sleep({delays!r}.get(name, 0))
    post("/clear-txt", {{"host": name}})
    log("cleanup " + name)
"""


def _txt_values(pebble: PebbleServer, host: str) -> list[str]:
    """What challtestsrv's DNS (Pebble's resolver) serves for ``host`` now."""
    address, port = pebble.dns_address
    query = dns.message.make_query(host, dns.rdatatype.TXT)
    response = dns.query.udp(query, address, port=port, timeout=2.0)
    return [b"".join(rdata.strings).decode() for rrset in response.answer for rdata in rrset]


def test_a_signal_during_several_lineages_cleans_up_every_one(
    certherd: Certherd, pebble: PebbleServer, tmp_path: Path
) -> None:
    """Three lineages proven by a DNS exec hook, each with its TXT value published, are
    stopped by a signal: every lineage's clean-up must run to its end (not only the first
    to finish), then the process ends by the signal; repeated, with apply and renew."""
    names = [f"{word}.lineages.signal.test" for word in ("one", "two", "three")]
    hosts = [f"_acme-challenge.{name}." for name in names]
    calls = tmp_path / "calls"
    hook = tmp_path / "dns-hook"
    delays = dict(zip(hosts, (0.0, 0.6, 1.2), strict=True))
    hook.write_text(
        LINEAGE_HOOK.format(
            python=sys.executable, url=pebble.challtestsrv_url, calls=str(calls), delays=delays
        )
    )
    hook.chmod(0o755)
    resolver = ":".join(map(str, pebble.dns_address))
    solver = (
        f'{{ provider = "exec", command = "{hook}", propagation_timeout = 0, '
        f'resolver = "{resolver}" }}'
    )
    lines = [
        "[defaults]",
        f'server = "{pebble.directory_url}"',
        f'ca_bundle = "{pebble.ca_bundle}"',
        'email = "signal@example.com"',
        "agree_tos = true",
        'solver = "dns"',
        f"solver_options = {solver}",
    ]
    for name in names:
        lines += ["", "[[certificate]]", f'domains = ["{name}"]']
    certherd.config_dir.mkdir(parents=True, exist_ok=True)
    (certherd.config_dir / "certherd.toml").write_text("\n".join(lines) + "\n")

    runs = [("apply", signal.SIGTERM), ("renew", signal.SIGINT), ("apply", signal.SIGHUP)]
    runs += [("renew", signal.SIGTERM)]
    for command, stop in runs:
        calls.unlink(missing_ok=True)
        running = certherd.start(command)

        def presented() -> bool:
            return calls.exists() and calls.read_text().count("present ") == len(names)

        if not _wait_for(presented, 30):
            running.process.kill()
            pytest.fail(f"{command}: not all presented: {running.wait().describe()}")
        assert all(_txt_values(pebble, host) for host in hosts)  # all published now
        running.process.send_signal(stop)
        result = running.wait(timeout=60)

        assert result.code == -stop, f"{command} {stop.name}: {result.describe()}"
        left = {host: _txt_values(pebble, host) for host in hosts}
        assert not any(left.values()), f"{command} {stop.name}: TXT left behind: {left}"
        done = calls.read_text()
        for host in hosts:
            assert f"cleanup {host}" in done, f"{command} {stop.name}: {host}: {done}"
        for name in names:
            assert not certherd.live(name).exists()
