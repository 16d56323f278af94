"""Hypothesis strategies for what a hostile or broken CA sends (issue 9 item 6).

Each document strategy is ``near(valid, hostile)``: half the time a valid document with
a few fields replaced, so parsing gets past its first check, else hostile fields alone.
Numbers run to hundreds of digits, timestamps to year 1 and 9999, text through control
characters, JSON a few levels deep (and, as raw bodies, thousands deep).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fakes import BASE_URL, HostileAcmeServer, order_body
from hypothesis import strategies as st

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.tuples(st.sampled_from([1, -1]), st.integers(0, 300)).map(lambda t: t[0] * 10 ** t[1])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["valid", "pending", "ready", "processing", "invalid", "http-01", "dns"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
urls = st.one_of(
    st.sampled_from(
        [
            BASE_URL + "/order/1",
            BASE_URL + "/authz/1",
            BASE_URL + "/cert/1",
            BASE_URL + "/finalize/1",
            "http://ca.test/x",
            "https://[::1/x",
            "https://[zz]/",
            "https://ca.test:99999999/x",
            "https://xn--/x",
            "https://ca.test/\x1b[2J",
            "",
            "/relative",
            "javascript:alert(1)",
        ]
    ),
    st.text(max_size=40).map(lambda path: BASE_URL + "/" + path),
    st.integers(min_value=2000, max_value=5000).map(lambda length: "https://" + "a" * length),
    json_values,
)
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=80,
)
retry_after_values = st.one_of(
    st.integers(min_value=0, max_value=400).map(lambda digits: "9" * digits),
    st.integers(min_value=-(10**9), max_value=10**9).map(str),
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)).map(
        lambda when: when.strftime("%a, %d %b %Y %H:%M:%S GMT")
    ),
    st.sampled_from(["Fri, 31 Dec 9999 23:59:59 -2359", "Mon, 01 Jan 0100 00:00:00 +2359"]),
    header_text,
)
statuses = st.sampled_from(["valid", "pending", "ready", "processing", "invalid"]) | json_values
timestamps = st.one_of(
    st.datetimes(
        min_value=dt.datetime(1, 1, 2),
        max_value=dt.datetime(9999, 12, 30),
        timezones=st.timezones() | st.just(dt.UTC),
    ).map(lambda when: when.isoformat()),
    st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59", "2025-06-01T12:00Z"]),
    json_values,
)


def maybe(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A dict where each field is present or not, with hostile values."""
    return st.fixed_dictionaries({}, optional=fields)


identifiers = st.one_of(
    st.fixed_dictionaries({"type": st.just("dns"), "value": st.just("example.test")}),
    json_values,
)
problems = st.one_of(
    maybe(
        type=st.sampled_from(
            [
                "urn:ietf:params:acme:error:badNonce",
                "urn:ietf:params:acme:error:rateLimited",
                "urn:ietf:params:acme:error:compound",
                "urn:ietf:params:acme:error:orderNotReady",
                "about:blank",
            ]
        )
        | json_values,
        detail=json_values,
        status=st.integers() | json_values,
        identifier=identifiers,
        subproblems=st.lists(json_values, max_size=3) | json_values,
        algorithms=json_values,
    ),
    json_values,
)
hostile_challenges = maybe(
    type=st.sampled_from(["http-01", "dns-01", "tls-alpn-01"]) | json_values,
    url=urls,
    status=statuses,
    token=st.just("A" * 43) | json_values,
    validated=timestamps,
    error=problems,
)
hostile_authorizations = maybe(
    identifier=identifiers,
    status=statuses,
    challenges=st.lists(hostile_challenges, max_size=3) | json_values,
    expires=timestamps,
    wildcard=json_values,
)
hostile_orders = maybe(
    status=statuses,
    identifiers=st.lists(identifiers, max_size=3) | json_values,
    authorizations=st.lists(urls, max_size=3) | json_values,
    finalize=urls,
    certificate=urls,
    expires=timestamps,
    notBefore=timestamps,
    notAfter=timestamps,
    error=problems,
    profile=json_values,
    replaces=json_values,
)
DIRECTORY_KEYS = ["newNonce", "newAccount", "newOrder", "revokeCert", "keyChange", "newAuthz"]
hostile_directories = st.fixed_dictionaries(
    {},
    optional={
        **{key: urls for key in DIRECTORY_KEYS},
        "renewalInfo": urls,
        "meta": maybe(
            termsOfService=json_values,
            website=json_values,
            caaIdentities=json_values,
            externalAccountRequired=json_values,
            profiles=json_values,
        )
        | json_values,
    },
)


def near(
    valid: dict[str, Any], hostile: st.SearchStrategy[dict[str, Any]]
) -> st.SearchStrategy[Any]:
    """Half the time a valid document with a few fields replaced by hostile ones (so the
    parser gets past its first check), else the hostile document alone."""
    return st.one_of(hostile.map(lambda fields: {**valid, **fields}), hostile)


_HONEST = HostileAcmeServer()
VALID_CHALLENGE = {
    "type": "http-01",
    "url": BASE_URL + "/chall/1",
    "status": "valid",
    "token": "A" * 43,
}
VALID_AUTHORIZATION = {
    "identifier": {"type": "dns", "value": "example.test"},
    "status": "valid",
    "challenges": [VALID_CHALLENGE],
}
challenges = near(VALID_CHALLENGE, hostile_challenges)
authorizations = near(
    VALID_AUTHORIZATION,
    hostile_authorizations.map(
        lambda fields: (
            fields if "challenges" in fields else {**fields, "challenges": [VALID_CHALLENGE]}
        )
    ),
)
orders = near(order_body(_HONEST, "valid", certificate=BASE_URL + "/cert/1"), hostile_orders)
directories = near(_HONEST.directory, hostile_directories)
VALID_WINDOW = {"start": "2025-07-01T00:00:00Z", "end": "2025-07-02T00:00:00Z"}


link_headers = st.one_of(
    header_text,
    st.lists(
        st.tuples(
            urls.filter(lambda u: isinstance(u, str)),
            st.sampled_from(["next", "alternate", "up", 'next"; x']),
        ),
        max_size=4,
    ).map(lambda links: ", ".join(f'<{u}>;rel="{rel}"' for u, rel in links)),
    st.text(alphabet='<>;,= "relnxt', max_size=200),
)


def bodies(documents: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """A JSON document as the CA sends it, or bytes that are not quite one."""

    def encode(value: Any) -> bytes:
        try:
            return json.dumps(value).encode()
        except ValueError:  # an integer over 4300 digits: send its digits raw
            return b"[" + b"9" * 5000 + b"]"

    return st.one_of(
        documents.map(encode),
        st.binary(max_size=200),
        st.integers(min_value=400, max_value=5000).map(lambda depth: b"[" * depth + b"]" * depth),
        st.integers(min_value=100, max_value=600).map(
            lambda depth: b'{"a":' * depth + b"1" + b"}" * depth
        ),
    )


headers = maybe(
    **{
        "Retry-After": retry_after_values,
        "Link": link_headers,
        "Location": header_text,
        "Content-Type": st.sampled_from(
            [
                "application/json",
                "application/problem+json",
                "text/plain",
                "application/pem-certificate-chain",
            ]
        ),
        "Content-Encoding": st.sampled_from(["gzip", "deflate", "identity", "x-unknown"]),
        "Content-Length": st.sampled_from(["0", "1", "9" * 30, "-1", "abc"]),
    }
).map(lambda fields: {name: value.encode() for name, value in fields.items()})


Answer = tuple[int, dict[str, bytes], bytes]


def answers(documents: st.SearchStrategy[Any]) -> st.SearchStrategy[Answer]:
    """A whole HTTP answer: any status, hostile headers, a body from ``documents``."""
    return st.tuples(
        st.just(200) | st.sampled_from([201, 204, 400, 404, 429, 500, 503]) | st.integers(100, 599),
        headers,
        bodies(documents),
    )


def respond(answer: Answer) -> httpx.Response:
    """The answer as the CA streams it (so Content-Encoding is decoded by the client)."""
    status, head, body = answer

    async def stream() -> AsyncIterator[bytes]:
        yield body

    return httpx.Response(status, headers=head, content=stream())
