"""Names are normalised and checked locally the way a CA judges them (certherd.names)."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certherd.acme.messages import Identifier
from certherd.errors import ConfigError, InvalidNameError
from certherd.names import (
    canonical_names,
    describe_name,
    normalize_name,
    normalize_names,
    unicode_name,
)


@pytest.mark.parametrize(
    ("typed", "kind", "value"),
    [
        ("Example.COM", "dns", "example.com"),
        ("dot.test.", "dns", "dot.test"),
        ("  spaced.test ", "dns", "spaced.test"),
        ("*.Example.com", "dns", "*.example.com"),
        ("bücher.example", "dns", "xn--bcher-kva.example"),
        ("BÜCHER.example", "dns", "xn--bcher-kva.example"),
        ("XN--BCHER-KVA.example", "dns", "xn--bcher-kva.example"),
        ("*.bücher.example", "dns", "*.xn--bcher-kva.example"),
        ("faß.de", "dns", "xn--fa-hia.de"),  # IDNA 2008, not 2003's "fass.de"
        ("\uff25xample.com", "dns", "example.com"),  # UTS 46 maps full-width letters
        ("localhost", "dns", "localhost"),  # the CA's policy, not a syntax error
        ("::1", "ip", "::1"),
        ("[::1]", "ip", "::1"),
        ("2001:DB8:0:0:0:0:0:1", "ip", "2001:db8::1"),  # RFC 5952: compressed, lower case
        ("192.0.2.1", "ip", "192.0.2.1"),
        ("a" * 63 + ".test", "dns", "a" * 63 + ".test"),
    ],
)
def test_names_are_normalised(typed: str, kind: str, value: str) -> None:
    assert normalize_name(typed) == Identifier(kind, value)


@pytest.mark.parametrize(
    ("typed", "why"),
    [
        ("a b", "white space"),
        ("a_b.test", "'_' is not allowed"),
        ("a" * 64 + ".test", "64 characters long: at most 63"),
        (".".join(["a" * 60] * 5), "at most 253"),
        ("*", "a wildcard needs a name under it"),
        ("*.", "a wildcard needs a name under it"),
        ("foo.*.test", "whole leftmost label"),
        ("*foo.test", "whole leftmost label"),
        ("*.*.test", "whole leftmost label"),
        ("a..test", "empty label"),
        (".test", "empty label"),
        ("two.dots..", "empty label"),
        (".", "only a dot"),
        ("-a.test", "starts or ends with '-'"),
        ("a-.test", "starts or ends with '-'"),
        ("ab--cd.test", "3rd and 4th place"),
        ("xn--zz.test", "not a valid A-label"),
        ("1.2.3", "last label is all digits"),
        ("a/b.test", "'/'"),
        ("a\u202eb.test", "IDNA 2008"),
        ("exa\u200dmple.test", "IDNA 2008"),  # a zero-width joiner outside its context
    ],
)
def test_bad_names_say_why(typed: str, why: str) -> None:
    with pytest.raises(InvalidNameError) as caught:
        normalize_name(typed)
    message = str(caught.value)
    assert why in message
    assert "\n" not in message
    assert "\u202e" not in message


def test_the_message_names_the_name_first() -> None:
    with pytest.raises(ConfigError, match=r"^'a b' is not a valid DNS name: "):
        normalize_name("a b")


@pytest.mark.parametrize(
    ("typed", "why"),
    [("[1.2.3]", "not a valid IP address"), ("fe80::1%eth0", "zone index %eth0"), ("", "empty")],
)
def test_bad_addresses_say_why(typed: str, why: str) -> None:
    with pytest.raises(InvalidNameError, match=re.escape(why)):
        normalize_name(typed)


def test_duplicates_are_dropped_in_order() -> None:
    names = ["B.test", "a.test", "b.test.", "::1", "0::1", "bücher.example"]
    names.append("xn--bcher-kva.example")
    assert canonical_names(names) == ("b.test", "a.test", "::1", "xn--bcher-kva.example")


def test_no_names_is_an_error() -> None:
    with pytest.raises(InvalidNameError, match="at least one"):
        normalize_names([])


def test_an_identifier_keeps_its_type() -> None:
    assert normalize_name(Identifier("dns", "A.test.")) == Identifier("dns", "a.test")
    with pytest.raises(InvalidNameError, match="not a valid dns identifier"):
        normalize_name(Identifier("dns", "::1"))


def test_both_forms_are_shown_for_an_idn() -> None:
    assert unicode_name("*.xn--bcher-kva.example") == "*.bücher.example"
    assert describe_name(Identifier.dns("xn--bcher-kva.example")) == (
        "xn--bcher-kva.example (bücher.example)"
    )
    assert describe_name("example.com") == "example.com"


# -- properties ---------------------------------------------------------------------

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")

_names = st.one_of(
    st.text(max_size=80),
    st.text(alphabet="abcXYZ019-_.*[]:% \u00fc\u00df\u200d", max_size=40),
    st.from_regex(r"\A(\*\.)?([a-zA-Z0-9-]{1,70}\.){0,5}[a-zA-Z0-9-]{1,70}\.?\Z"),
    st.ip_addresses().map(str),
)


def _accepted(identifier: Identifier) -> bool:
    """What a CA accepts, checked independently of the module's own code paths."""
    if identifier.type == "ip":
        return str(ipaddress.ip_address(identifier.value)) == identifier.value
    labels = identifier.value.split(".")
    if labels[0] == "*":
        labels = labels[1:]
    return (
        bool(labels)
        and len(identifier.value) <= 253
        and all(_LABEL.match(label) for label in labels)
        and not labels[-1].isdigit()
    )


@settings(max_examples=400, deadline=None)
@given(_names)
def test_normalising_is_idempotent_and_the_result_is_accepted(text: str) -> None:
    try:
        identifier = normalize_name(text)
    except InvalidNameError:
        return  # the only error it may raise
    assert normalize_name(identifier.value) == identifier
    assert _accepted(identifier), identifier
