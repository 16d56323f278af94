"""What ``list`` and ``show`` print: times with their zone, expired certificates flagged,
settings as text (never a Python repr)."""

from __future__ import annotations

import json
import re

from e2e_runner import Certherd

HUMAN_TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)? UTC"


def _expire(certherd: Certherd, name: str) -> None:
    """Make the stored state say the certificate ended in 2020 (as a stale machine would)."""
    path = certherd.config_dir / "state" / f"{name}.json"
    state = json.loads(path.read_text())
    state["not_before"] = "2019-10-01T00:00:00+00:00"
    state["not_after"] = "2020-01-01T00:00:00+00:00"
    path.write_text(json.dumps(state))


def test_times_carry_their_zone(certherd: Certherd) -> None:
    certherd.issue("zone.test")
    listed = certherd("list").stdout
    [row] = [line for line in listed.splitlines() if line.startswith("zone.test")]
    assert len(re.findall(HUMAN_TIME, row)) == 2, listed  # expires, next renewal
    [entry] = certherd("--json", "list").json()["lineages"]
    assert entry["not_after"].endswith("+00:00")  # ISO 8601 with offset
    assert entry["expired"] is False
    renewed = certherd("renew", "--force").stdout
    assert re.search(rf"zone\.test\s+renewed\s+.*{HUMAN_TIME}", renewed), renewed


def test_list_and_show_flag_an_expired_certificate(certherd: Certherd) -> None:
    certherd.issue("old.test")
    certherd.issue("fresh.test")
    _expire(certherd, "old.test")
    listed = certherd("list").stdout
    rows = {line.split()[0]: line for line in listed.splitlines()[1:]}
    assert "EXPIRED 2020-01-01 00:00 UTC" in rows["old.test"], listed
    assert "EXPIRED" not in rows["fresh.test"]
    documents = {d["name"]: d for d in certherd("--json", "list").json()["lineages"]}
    assert documents["old.test"]["expired"] is True
    assert documents["fresh.test"]["expired"] is False
    shown = certherd("show", "old.test").stdout
    assert re.search(r"^not after\s+EXPIRED 2020-01-01 00:00:00 UTC$", shown, re.M), shown


def test_show_prints_settings_as_text(certherd: Certherd) -> None:
    certherd.issue("text.test", "www.text.test", args=["--deploy-hook", "true"])
    shown = certherd("show", "text.test").stdout
    for python_repr in ("{'", "['", "None", "True", "False", "': '"):
        assert python_repr not in shown, shown
    listen = f"127.0.0.1:{certherd.server.options.http_port}"
    assert re.search(rf"^solvers\s+http \(listen={re.escape(listen)}\)$", shown, re.M), shown
    assert re.search(rf"^not before\s+{HUMAN_TIME}$", shown, re.M), shown
    assert re.search(r"^names\s+text\.test\n\s+www\.text\.test$", shown, re.M), shown
    assert re.search(r"^expired\s+no$", shown, re.M), shown
    files = re.findall(r"^(?:files)?\s+(cert|chain|fullchain|privkey)\.pem: /\S+$", shown, re.M)
    assert files == ["cert", "chain", "fullchain", "privkey"], shown
