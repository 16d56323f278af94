"""One ``HOST:PORT`` parser (issue 11 item 5): listen addresses, resolvers, test servers."""

from __future__ import annotations

import pytest

from certherd.addresses import split_host_port
from certherd.challenges.options import parse_listen_address, parse_resolver
from certherd.errors import ConfigError
from certherd.testing.pebble_options import PebbleOptions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("80", ("", 80)),
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        (":8080", ("", 8080)),
        ("[::1]:443", ("::1", 443)),
        (" 0.0.0.0:80 ", ("0.0.0.0", 80)),
    ],
)
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", ("192.0.2.1", 53)),
        ("192.0.2.1:5353", ("192.0.2.1", 5353)),
        ("2001:db8::53", ("2001:db8::53", 53)),
        ("[2001:db8::53]:5353", ("2001:db8::53", 5353)),
        ("[2001:db8::53]", ("2001:db8::53", 53)),
        ("ns.example", ("ns.example", 53)),
    ],
)
def test_resolvers(text: str, expected: tuple[str, int]) -> None:
    assert parse_resolver(text) == expected


@pytest.mark.parametrize(
    "text",
    ["0", "65536", "host:http", "8²", "1" * 5000, "[::1", "[::1]80", "127.0.0.1:"],
)
def test_bad_listen_addresses_are_one_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="listen address"):
        parse_listen_address(text)


@pytest.mark.parametrize("text", [":53", "192.0.2.1:0", "192.0.2.1:5²", "[::1]x"])
def test_bad_resolvers_are_one_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="resolver"):
        parse_resolver(text)


def test_host_and_port_both_required_without_defaults() -> None:
    assert split_host_port("127.0.0.1:8053", what="dns_server") == ("127.0.0.1", 8053)
    assert split_host_port("[::1]:8053", what="server") == ("::1", 8053)
    for text in ("127.0.0.1", ":8053", "[::1]"):
        with pytest.raises(ConfigError, match="dns_server"):
            split_host_port(text, what="dns_server")
        with pytest.raises(ConfigError, match=r"PebbleOptions\.dns_server"):
            PebbleOptions(dns_server=text)
