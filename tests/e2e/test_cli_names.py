"""Names as people type them, and ``issue`` run twice (issue 10 items 3 and 4, issue 9 item 9).

Every test counts from the session Pebble's log: a bad name must not reach the CA at
all (no request), and an ``issue`` with nothing to do must place no order.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest
from cryptography import x509
from e2e_helpers import archive_versions, dns_names, load_cert
from e2e_runner import Certherd


def settings_of(certherd: Certherd, lineage: str) -> dict[str, object]:
    return json.loads((certherd.config_dir / "renewal" / f"{lineage}.json").read_text())  # type: ignore[no-any-return]


def lineages(certherd: Certherd) -> set[str]:
    folder = certherd.config_dir / "renewal"
    return {p.name.removesuffix(".json") for p in folder.glob("*.json")}


def dns_hook(certherd: Certherd, folder: Path) -> list[str]:
    """``--solver-hook dns-01=...``: a program that sets the TXT value in challtestsrv."""
    program = folder / "dns-hook"
    program.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys, urllib.request\n"
        "present = sys.argv[1] == 'present'\n"
        "body = {'host': os.environ['CERTHERD_DNS_NAME']}\n"
        "if present:\n"
        "    body['value'] = os.environ['CERTHERD_DNS_VALUE']\n"
        f"url = {certherd.server.challtestsrv_url!r} + ('/set-txt' if present else '/clear-txt')\n"
        "urllib.request.urlopen(urllib.request.Request(url, json.dumps(body).encode()))\n"
    )
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return ["--solver-hook", f"dns-01={program}"]


# -- names (issue 10 item 3) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("a" * 64 + ".names.test", "is 64 characters long: at most 63"),
        ("a b.names.test", "white space"),
        ("under_score.names.test", "'_' is not allowed"),
        ("www.*.names.test", "whole leftmost label"),
    ],
)
def test_a_bad_name_exits_2_before_any_ca_contact(certherd: Certherd, name: str, why: str) -> None:
    before = certherd.server.requests_handled()
    refused = certherd.issue("ok.names.test", name, check=False)
    assert refused.code == 2, refused.describe()
    line = refused.stderr.strip().splitlines()[-1]
    assert f"{name!r} is not a valid DNS name: " in line, refused.describe()
    assert why in line
    assert "lineage name" not in refused.stderr
    # Nothing reached the CA: no directory fetch, no account, no order.
    assert certherd.server.requests_handled() == before
    assert not (certherd.config_dir / "accounts").exists()


def test_case_and_a_trailing_dot_are_the_names_the_ca_sees(certherd: Certherd) -> None:
    issued = certherd.issue("Dot.Names.Test.", "dot.names.test", "WWW.dot.names.test").json()
    assert issued["results"][0]["lineage"] == "dot.names.test"
    stored = settings_of(certherd, "dot.names.test")
    assert stored["names"] == ["dot.names.test", "www.dot.names.test"]
    cert = load_cert(certherd.live("dot.names.test") / "cert.pem")
    assert dns_names(cert) == {"dot.names.test", "www.dot.names.test"}
    # Before: the stored "dot.names.test." never matched the certificate, and every renew
    # reissued because "the names changed".
    orders = certherd.server.orders_created()
    renewed = certherd("--json", "renew").json()["results"]
    assert [r["action"] for r in renewed] == ["not-due"], renewed
    assert certherd.server.orders_created() == orders


def test_names_stored_with_a_dot_by_earlier_versions_still_match(certherd: Certherd) -> None:
    certherd.issue("legacy.names.test")
    path = certherd.config_dir / "renewal" / "legacy.names.test.json"
    stored = json.loads(path.read_text())
    stored["names"] = ["Legacy.names.test."]  # as an earlier certherd wrote it
    path.write_text(json.dumps(stored))
    orders = certherd.server.orders_created()
    renewed = certherd("--json", "renew").json()["results"]
    assert [r["action"] for r in renewed] == ["not-due"], renewed
    assert certherd.server.orders_created() == orders


def test_an_idn_is_ordered_as_its_a_label_and_shown_in_both_forms(certherd: Certherd) -> None:
    issued = certherd("issue", "-d", "Bücher.names.test", *certherd.http, *certherd.ca)
    assert "names: xn--bcher-kva.names.test (bücher.names.test)" in issued.stderr
    assert lineages(certherd) == {"xn--bcher-kva.names.test"}
    both = "xn--bcher-kva.names.test (bücher.names.test)"
    assert both in certherd("list").stdout
    assert both in certherd("show", "xn--bcher-kva.names.test").stdout
    cert = load_cert(certherd.live("xn--bcher-kva.names.test") / "cert.pem")
    assert dns_names(cert) == {"xn--bcher-kva.names.test"}


def test_an_ip_address_needs_no_lineage_name(certherd: Certherd) -> None:
    # "-d ::1" used to fail: the lineage name "__1" was refused. Pebble validates both
    # addresses over http-01 at the port certherd listens on (all addresses).
    port = certherd.server.options.http_port
    issued = certherd.issue("0:0::1", "127.0.0.1", "[::1]", args=["--http", str(port)])
    assert issued.json()["results"][0]["lineage"] == "__1"
    assert settings_of(certherd, "__1")["names"] == ["::1", "127.0.0.1"]
    cert = load_cert(certherd.live("__1") / "cert.pem")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    addresses = {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    assert addresses == {"::1", "127.0.0.1"}


# -- wildcard and apex (issue 9 item 9) -----------------------------------------------


def test_a_wildcard_and_its_apex_are_two_lineages(certherd: Certherd, tmp_path: Path) -> None:
    hook = dns_hook(certherd, tmp_path)
    wild = certherd.issue("*.wild.names.test", args=[*hook, "--deploy-hook", "true"]).json()
    assert wild["results"][0]["lineage"] == "_.wild.names.test"
    apex = certherd.issue("wild.names.test").json()
    assert apex["results"][0]["lineage"] == "wild.names.test"
    assert lineages(certherd) == {"_.wild.names.test", "wild.names.test"}
    # The wildcard's lineage keeps its names and hooks.
    stored = settings_of(certherd, "_.wild.names.test")
    assert stored["names"] == ["*.wild.names.test"]
    assert stored["hooks"]["deploy"] == ["true"]  # type: ignore[index]
    cert = load_cert(certherd.live("_.wild.names.test") / "cert.pem")
    assert dns_names(cert) == {"*.wild.names.test"}


def test_a_lineage_of_other_names_is_never_replaced_without_name(certherd: Certherd) -> None:
    certherd.issue("other.names.test", "www.other.names.test")
    orders = certherd.server.orders_created()
    refused = certherd.issue("other.names.test", check=False)
    assert refused.code == 2, refused.describe()
    assert "lineage 'other.names.test' holds other names" in refused.stderr
    assert "--name other.names.test" in refused.stderr
    assert certherd.server.orders_created() == orders
    assert settings_of(certherd, "other.names.test")["names"] == [
        "other.names.test",
        "www.other.names.test",
    ]
    # Named explicitly: replaced, and said so.
    replaced = certherd.issue("other.names.test", args=["--name", "other.names.test"]).json()
    result = replaced["results"][0]
    assert result["action"] == "renewed"
    assert "drops www.other.names.test" in result["reason"]
    assert settings_of(certherd, "other.names.test")["names"] == ["other.names.test"]
    assert lineages(certherd) == {"other.names.test"}


# -- issue run twice (issue 10 item 4) ------------------------------------------------


def test_issue_again_orders_nothing_until_due_or_forced(certherd: Certherd) -> None:
    certherd.issue("twice.names.test", "www.twice.names.test")
    orders = certherd.server.orders_created()
    again = certherd.issue("www.twice.names.test", "Twice.names.test.")
    result = again.json()["results"][0]
    assert again.code == 0
    assert (result["lineage"], result["action"]) == ("twice.names.test", "not-due")
    assert "already covered by version 1; renewal from 20" in result["reason"]
    assert certherd.server.orders_created() == orders
    assert set(archive_versions(certherd.archive("twice.names.test"))) == {1}
    # New settings given with the same names are kept for the renewals, and said so.
    hooked = certherd.issue(
        "twice.names.test", "www.twice.names.test", args=["--deploy-hook", "true"]
    )
    assert "new settings saved for renewals (hooks)" in hooked.json()["results"][0]["reason"]
    assert settings_of(certherd, "twice.names.test")["hooks"]["deploy"] == ["true"]  # type: ignore[index]
    assert certherd.server.orders_created() == orders

    forced = certherd.issue("twice.names.test", "www.twice.names.test", args=["--force"]).json()
    assert forced["results"][0]["action"] == "renewed"
    assert certherd.server.orders_created() == orders + 1
    assert set(archive_versions(certherd.archive("twice.names.test"))) == {1, 2}
    assert lineages(certherd) == {"twice.names.test"}


def test_more_names_expand_the_lineage_that_holds_some(certherd: Certherd) -> None:
    certherd.issue("grow.names.test")
    grown = certherd.issue("www.grow.names.test", "grow.names.test").json()["results"][0]
    assert (grown["lineage"], grown["action"]) == ("grow.names.test", "renewed")
    assert grown["reason"] == "expanded: adds www.grow.names.test"
    assert lineages(certherd) == {"grow.names.test"}
    cert = load_cert(certherd.live("grow.names.test") / "cert.pem")
    assert dns_names(cert) == {"grow.names.test", "www.grow.names.test"}


def test_two_identical_issues_at_once_place_one_order(certherd: Certherd) -> None:
    # The second waits for the lineage lock, then finds the first's certificate.
    orders = certherd.server.orders_created()
    args = ["--json", "issue", "-d", "race.names.test", *certherd.http, *certherd.ca]
    first, second = certherd.start(*args), certherd.start(*args)
    results = [run.wait() for run in (first, second)]
    assert [r.code for r in results] == [0, 0], [r.describe() for r in results]
    actions = sorted(r.json()["results"][0]["action"] for r in results)
    assert actions == ["issued", "not-due"], [r.describe() for r in results]
    assert certherd.server.orders_created() == orders + 1
    assert set(archive_versions(certherd.archive("race.names.test"))) == {1}
