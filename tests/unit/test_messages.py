"""Parsing ACME resources (RFC 8555 §7.1, RFC 9773 §4.2, draft-ietf-acme-profiles) from JSON."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from certherd.acme.messages import (
    Authorization,
    Directory,
    Identifier,
    Order,
    RenewalInfo,
    Status,
    UrlPolicy,
    format_time,
    identifiers_from,
    parse_time,
)
from certherd.errors import UnsafeResponseError

HTTPS = UrlPolicy()
CA = "https://ca.test"
RANDOM_ENTRY = "https://community.letsencrypt.org/t/adding-random-entries-to-the-directory/33417"


def directory_json(**extra: Any) -> dict[str, Any]:
    """A directory shaped like Let's Encrypt's, with profiles and the random entry."""
    return {
        "newNonce": f"{CA}/new-nonce",
        "newAccount": f"{CA}/new-acct",
        "newOrder": f"{CA}/new-order",
        "revokeCert": f"{CA}/revoke-cert",
        "keyChange": f"{CA}/key-change",
        "renewalInfo": f"{CA}/renewal-info",
        "meta": {
            "caaIdentities": ["ca.test", "ca.example"],
            "termsOfService": f"{CA}/terms.pdf",
            "website": f"{CA}/docs",
            "profiles": {
                "classic": f"{CA}/docs/profiles#classic",
                "shortlived": f"{CA}/docs/profiles#shortlived",
            },
        },
        "QJB1rQHS7EY": RANDOM_ENTRY,
        **extra,
    }


# -- Directory (RFC 8555 §7.1.1) -------------------------------------------------------------


def test_directory_with_profiles_and_caa_identities() -> None:
    directory = Directory.from_json(directory_json(), f"{CA}/directory", HTTPS)
    assert directory.url == f"{CA}/directory"
    assert directory.new_order == f"{CA}/new-order"
    assert directory.renewal_info == f"{CA}/renewal-info"
    assert directory.new_authz is None
    meta = directory.meta
    assert meta.profiles == {
        "classic": f"{CA}/docs/profiles#classic",
        "shortlived": f"{CA}/docs/profiles#shortlived",
    }
    assert meta.caa_identities == ("ca.test", "ca.example")
    assert meta.terms_of_service == f"{CA}/terms.pdf"
    assert meta.website == f"{CA}/docs"
    assert meta.external_account_required is False
    assert directory.raw["QJB1rQHS7EY"] == RANDOM_ENTRY


def test_directory_of_acme2certifier_with_its_random_key() -> None:
    # acme2certifier adds a uuid4().hex key and its own meta fields.
    data = {
        "newAccount": f"{CA}/acme/newaccount",
        "fa8b347d3849421ebc4b234205418805": RANDOM_ENTRY,
        "keyChange": f"{CA}/acme/key-change",
        "newAuthz": f"{CA}/acme/new-authz",
        "newNonce": f"{CA}/acme/newnonce",
        "meta": {
            "home": "https://github.com/grindsa/acme2certifier",
            "author": "grindsa <grindelsack@gmail.com>",
            "name": "acme2certifier",
            "version": "0.39",
        },
        "newOrder": f"{CA}/acme/neworders",
        "revokeCert": f"{CA}/acme/revokecert",
    }
    directory = Directory.from_json(data, f"{CA}/directory", HTTPS)
    assert directory.new_authz == f"{CA}/acme/new-authz"
    assert directory.renewal_info is None
    assert directory.meta.profiles == {}
    assert directory.meta.terms_of_service is None
    assert directory.meta.raw["name"] == "acme2certifier"
    assert directory.raw["fa8b347d3849421ebc4b234205418805"] == RANDOM_ENTRY


def test_directory_external_account_required_only_when_true() -> None:
    def parse(value: object) -> bool:
        data = directory_json(meta={"externalAccountRequired": value})
        return Directory.from_json(data, f"{CA}/directory", HTTPS).meta.external_account_required

    assert parse(True) is True
    assert parse("true") is False
    assert parse(1) is False


def test_directory_with_odd_meta_is_tolerated() -> None:
    data = directory_json(meta={"profiles": ["classic"], "caaIdentities": "ca.test"})
    meta = Directory.from_json(data, f"{CA}/directory", HTTPS).meta
    assert meta.profiles == {}
    assert meta.caa_identities == ()
    data = directory_json(meta="not an object")
    assert Directory.from_json(data, f"{CA}/directory", HTTPS).meta.profiles == {}


def test_directory_profile_descriptions_are_made_safe() -> None:
    data = directory_json(meta={"profiles": {"x": "line\x1b[31m\nforged"}})
    description = Directory.from_json(data, f"{CA}/directory", HTTPS).meta.profiles["x"]
    assert "\x1b" not in description
    assert "\n" not in description


@pytest.mark.parametrize("missing", ["newNonce", "newAccount", "newOrder"])
def test_directory_without_a_required_url_is_refused(missing: str) -> None:
    data = directory_json()
    del data[missing]
    with pytest.raises(UnsafeResponseError, match=missing):
        Directory.from_json(data, f"{CA}/directory", HTTPS)


@pytest.mark.parametrize("body", [[], "directory", None, 42])
def test_directory_that_is_not_an_object_is_refused(body: object) -> None:
    with pytest.raises(UnsafeResponseError, match="not a JSON object"):
        Directory.from_json(body, f"{CA}/directory", HTTPS)


@pytest.mark.parametrize(
    "url",
    [
        "http://ca.test/new-order",
        "file:///etc/passwd",
        "https://",
        "/new-order",
        "https://ca.test/new order",
        "https://ca.test/\x00",
        "https://ca.test/" + "a" * 3000,
    ],
)
def test_directory_with_an_unacceptable_url_is_refused(url: str) -> None:
    with pytest.raises(UnsafeResponseError):
        Directory.from_json(directory_json(newOrder=url), f"{CA}/directory", HTTPS)


# -- Order (RFC 8555 §7.1.3) ---------------------------------------------------------------


def order_json(**extra: Any) -> dict[str, Any]:
    return {
        "status": "pending",
        "expires": "2025-06-08T12:00:00Z",
        "identifiers": [
            {"type": "dns", "value": "example.test"},
            {"type": "ip", "value": "192.0.2.1"},
        ],
        "authorizations": [f"{CA}/authz/1", f"{CA}/authz/2"],
        "finalize": f"{CA}/finalize/1",
        **extra,
    }


def test_order_without_profile_or_replaces() -> None:
    order = Order.from_json(order_json(), f"{CA}/order/1", HTTPS)
    assert order.status is Status.PENDING
    assert order.identifiers == (Identifier("dns", "example.test"), Identifier("ip", "192.0.2.1"))
    assert order.authorizations == (f"{CA}/authz/1", f"{CA}/authz/2")
    assert order.expires == dt.datetime(2025, 6, 8, 12, tzinfo=dt.UTC)
    assert order.profile is None
    assert order.replaces is None
    assert order.certificate is None
    assert order.error is None


def test_order_with_profile_replaces_and_certificate() -> None:
    data = order_json(
        status="valid",
        profile="shortlived",
        replaces="aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE",
        certificate=f"{CA}/cert/1",
        notBefore="2025-06-01T00:00:00Z",
        notAfter="2025-06-07T00:00:00+00:00",
    )
    order = Order.from_json(data, f"{CA}/order/1", HTTPS)
    assert order.profile == "shortlived"
    assert order.replaces == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
    assert order.certificate == f"{CA}/cert/1"
    assert order.not_after == dt.datetime(2025, 6, 7, tzinfo=dt.UTC)


def test_order_error_is_a_problem() -> None:
    data = order_json(
        status="invalid", error={"type": "urn:ietf:params:acme:error:badCSR", "detail": "weak"}
    )
    order = Order.from_json(data, f"{CA}/order/1", HTTPS)
    assert order.error is not None
    assert order.error.short_type == "badCSR"


def test_order_with_an_http_authorization_url_is_refused() -> None:
    data = order_json(authorizations=["http://ca.test/authz/1"])
    with pytest.raises(UnsafeResponseError):
        Order.from_json(data, f"{CA}/order/1", HTTPS)


# -- Authorization (RFC 8555 §7.1.4) -------------------------------------------------------


def authorization_json(value: str = "example.test", **extra: Any) -> dict[str, Any]:
    return {
        "identifier": {"type": "dns", "value": value},
        "status": "pending",
        "challenges": [
            {
                "type": "dns-01",
                "url": f"{CA}/chall/1",
                "status": "pending",
                "token": "DGyRejmCefe7v4NfDGDKfA",
            }
        ],
        **extra,
    }


def test_wildcard_authorization_full_identifier() -> None:
    # §7.1.4: the identifier is given without "*." and "wildcard" is true.
    authorization = Authorization.from_json(
        authorization_json(wildcard=True), f"{CA}/authz/1", HTTPS
    )
    assert authorization.identifier == Identifier("dns", "example.test")
    assert authorization.full_identifier == Identifier("dns", "*.example.test")
    assert authorization.full_identifier.is_wildcard


def test_non_wildcard_authorization_full_identifier_is_the_identifier() -> None:
    authorization = Authorization.from_json(authorization_json(), f"{CA}/authz/1", HTTPS)
    assert authorization.wildcard is False
    assert authorization.full_identifier == Identifier("dns", "example.test")


def test_wildcard_prefix_is_not_doubled() -> None:
    data = authorization_json("*.example.test", wildcard=True)
    authorization = Authorization.from_json(data, f"{CA}/authz/1", HTTPS)
    assert authorization.full_identifier.value == "*.example.test"


def test_wildcard_must_be_literally_true() -> None:
    data = authorization_json(wildcard="yes")
    authorization = Authorization.from_json(data, f"{CA}/authz/1", HTTPS)
    assert authorization.full_identifier.value == "example.test"


def test_authorization_challenge_lookup() -> None:
    authorization = Authorization.from_json(authorization_json(), f"{CA}/authz/1", HTTPS)
    challenge = authorization.challenge("dns-01")
    assert challenge is not None
    assert challenge.token == "DGyRejmCefe7v4NfDGDKfA"
    assert authorization.challenge("http-01") is None


# -- RenewalInfo (RFC 9773 §4.2) ---------------------------------------------------------------


def renewal_info_json(start: str, end: str, **extra: Any) -> dict[str, Any]:
    return {"suggestedWindow": {"start": start, "end": end}, **extra}


def test_renewal_info_window_and_explanation() -> None:
    data = renewal_info_json(
        "2025-01-02T04:00:00Z",
        "2025-01-03T04:00:00Z",
        explanationURL=f"{CA}/docs/incident-42",
    )
    info = RenewalInfo.from_json(data, HTTPS, retry_after=21600.0)
    assert info.start == dt.datetime(2025, 1, 2, 4, tzinfo=dt.UTC)
    assert info.end == dt.datetime(2025, 1, 3, 4, tzinfo=dt.UTC)
    assert info.explanation_url == f"{CA}/docs/incident-42"
    assert info.retry_after == 21600.0


def test_renewal_info_window_ending_before_it_starts_is_refused() -> None:
    data = renewal_info_json("2025-01-03T04:00:00Z", "2025-01-02T04:00:00Z")
    with pytest.raises(UnsafeResponseError, match="suggestedWindow"):
        RenewalInfo.from_json(data, HTTPS, retry_after=None)


def test_renewal_info_empty_window_is_accepted() -> None:
    data = renewal_info_json("2025-01-03T04:00:00Z", "2025-01-03T04:00:00Z")
    info = RenewalInfo.from_json(data, HTTPS, retry_after=None)
    assert info.start == info.end


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"suggestedWindow": "soon"},
        {"suggestedWindow": {"start": "2025-01-03T04:00:00Z"}},
        renewal_info_json("yesterday", "2025-01-03T04:00:00Z"),
        {"suggestedWindow": {"start": "2025-01-03T04:00:00Z", "end": 1735876800}},
    ],
    ids=["empty", "not-an-object", "no-end", "unreadable-start", "numeric-end"],
)
def test_renewal_info_without_a_usable_window_is_refused(data: dict[str, Any]) -> None:
    with pytest.raises(UnsafeResponseError):
        RenewalInfo.from_json(data, HTTPS, retry_after=None)


@pytest.mark.parametrize(
    "url", ["http://ca.test/docs", "javascript:alert(1)", "https://ca.test/\x1b[2J"]
)
def test_renewal_info_explanation_url_must_be_https(url: str) -> None:
    data = renewal_info_json("2025-01-02T04:00:00Z", "2025-01-03T04:00:00Z", explanationURL=url)
    with pytest.raises(UnsafeResponseError):
        RenewalInfo.from_json(data, HTTPS, retry_after=None)


# -- Identifier (RFC 8555 §9.7.7, RFC 8738) ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", Identifier("ip", "192.0.2.1")),
        ("2001:DB8:0:0::1", Identifier("ip", "2001:db8::1")),
        ("[2001:db8::1]", Identifier("ip", "2001:db8::1")),
        ("::1", Identifier("ip", "::1")),
        ("Example.TEST.", Identifier("dns", "example.test")),
        (" www.example.test ", Identifier("dns", "www.example.test")),
        ("*.Example.test", Identifier("dns", "*.example.test")),
        ("xn--bcher-kva.example", Identifier("dns", "xn--bcher-kva.example")),
        ("192.0.2.1.example", Identifier("dns", "192.0.2.1.example")),
        ("256.0.0.1", Identifier("dns", "256.0.0.1")),
    ],
)
def test_identifier_parse(text: str, expected: Identifier) -> None:
    assert Identifier.parse(text) == expected


def test_identifier_json_round_trip() -> None:
    for identifier in (Identifier.dns("example.test"), Identifier.ip("2001:db8::1")):
        assert Identifier.from_json(identifier.to_json()) == identifier


@pytest.mark.parametrize("data", [{"type": "dns"}, {"value": "x"}, {"type": 1, "value": "x"}, []])
def test_identifier_from_bad_json_is_refused(data: object) -> None:
    with pytest.raises(UnsafeResponseError):
        Identifier.from_json(data)


def test_identifiers_from_drops_duplicates_and_keeps_order() -> None:
    found = identifiers_from(["b.test", "A.test", "a.test.", "192.0.2.1", Identifier.dns("b.test")])
    assert found == (
        Identifier("dns", "b.test"),
        Identifier("dns", "a.test"),
        Identifier("ip", "192.0.2.1"),
    )


# -- timestamps (RFC 3339) --------------------------------------------------------------------


@pytest.mark.parametrize(
    "moment",
    [
        dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC),
        dt.datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=dt.UTC),
        dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        dt.datetime(2038, 1, 19, 3, 14, 8, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    ],
)
def test_format_then_parse_time_round_trips(moment: dt.datetime) -> None:
    text = format_time(moment)
    assert text.endswith("Z")
    assert "+" not in text
    assert parse_time(text, "test") == moment


def test_format_time_treats_naive_as_utc() -> None:
    assert format_time(dt.datetime(2025, 6, 1, 12, 0)) == "2025-06-01T12:00:00Z"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-06-01T12:00:00Z", dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)),
        ("2025-06-01T12:00:00z", dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)),
        ("2025-06-01T14:00:00+02:00", dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)),
        ("2025-06-01T12:00:00", dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)),
        # Go CAs send nanoseconds; the microseconds are kept.
        (
            "2025-06-01T12:00:00.123456789Z",
            dt.datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=dt.UTC),
        ),
    ],
)
def test_parse_time_forms(text: str, expected: dt.datetime) -> None:
    parsed = parse_time(text, "test")
    assert parsed == expected
    assert parsed is not None
    assert parsed.tzinfo is dt.UTC


def test_parse_time_none_is_none() -> None:
    assert parse_time(None, "test") is None


@pytest.mark.parametrize(
    "value",
    [
        "tomorrow",
        "2025-13-01T00:00:00Z",
        1748779200,
        "",
        "9999-12-31T23:59:59-05:00",  # in range as written, past year 9999 in UTC
        "0001-01-01T00:00:00+05:00",
    ],
)
def test_parse_time_refuses_garbage(value: object) -> None:
    with pytest.raises(UnsafeResponseError):
        parse_time(value, "test")


@pytest.mark.parametrize("bad", ["\x00", " ", "\t", "\n", "\x1f", "\x7f"])
def test_urls_with_control_characters_or_spaces_are_refused(bad: str) -> None:
    with pytest.raises(UnsafeResponseError, match="control characters"):
        UrlPolicy().check(f"https://ca.test/acme/{bad}order/1", "an order")


def test_a_plain_https_url_passes_the_check() -> None:
    url = "https://ca.test/acme/order/1?x=%20~"
    assert UrlPolicy().check(url, "an order") == url
