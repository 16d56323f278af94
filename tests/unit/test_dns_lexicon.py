"""The lexicon DNS provider over lexicon's offline ``localzone`` provider (a zone file)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import dns.rdatatype
import dns.zone
import pytest

from certherd.dns.base import DnsProvider, TxtRecord
from certherd.dns.lexicon import INSTALL_HINT, LexiconConfig, LexiconProvider
from certherd.errors import ConfigError, DnsProviderError

NAME = "_acme-challenge.x.certherd.test."
VALUE = "ZTRx1Ckl1-tM05o5zaizTTA0yUy5AGereMgSNWC6Ll8"
OTHER = "lk4ahGGG3vW6oQkT1Q3QyZBXhKiWs6l6y2T6nP2fJxM"

ZONE_TEXT = """$ORIGIN certherd.test.
$TTL 60
@ IN SOA ns1 hostmaster 1 3600 600 86400 60
@ IN NS ns1
ns1 IN A 127.0.0.1
_acme-challenge.keep IN TXT "not-ours"
"""


@pytest.fixture
def zone_file(tmp_path: Path) -> Path:
    path = tmp_path / "certherd.test.zone"
    path.write_text(ZONE_TEXT)
    return path


def txt_values(zone_file: Path, name: str = NAME) -> list[str]:
    zone = dns.zone.from_file(str(zone_file), origin="certherd.test.", relativize=False)
    rdataset = zone.get_rdataset(name, dns.rdatatype.TXT)
    if rdataset is None:
        return []
    return sorted(b"".join(rdata.strings).decode() for rdata in rdataset)


def localzone(zone_file: Path, **settings: str) -> LexiconProvider:
    return LexiconProvider.from_settings(
        {"provider": "localzone", "zone": "certherd.test", "filename": str(zone_file), **settings},
        {},
    )


async def test_values_are_added_side_by_side_and_removed_one_by_one(zone_file: Path) -> None:
    provider = localzone(zone_file)
    assert isinstance(provider, DnsProvider)
    first = TxtRecord(NAME, VALUE, "x.certherd.test")
    second = TxtRecord(NAME, OTHER, "x.certherd.test")
    await asyncio.gather(provider.add_txt(first), provider.add_txt(second))
    await provider.add_txt(first)  # again: still one copy
    assert txt_values(zone_file) == sorted([VALUE, OTHER])
    await provider.remove_txt(first)
    assert txt_values(zone_file) == [OTHER]
    await provider.remove_txt(first)  # already gone: fine
    await provider.remove_txt(second)
    assert txt_values(zone_file) == []
    assert txt_values(zone_file, "_acme-challenge.keep.certherd.test.") == ["not-ours"]


async def test_options_come_from_settings_then_certherd_then_lexicon_variables(
    zone_file: Path, tmp_path: Path
) -> None:
    environ = {
        "LEXICON_LOCALZONE_FILENAME": str(tmp_path / "lexicon-var.zone"),
        "CERTHERD_LEXICON_PROVIDER": "localzone",
        "CERTHERD_LEXICON_ZONE": "certherd.test.",
    }
    assert LexiconProvider.from_settings({}, environ).config.options == {
        "filename": str(tmp_path / "lexicon-var.zone")
    }
    environ["CERTHERD_LEXICON_FILENAME"] = str(zone_file)
    provider = LexiconProvider.from_settings({}, environ)
    assert provider.config.options == {"filename": str(zone_file)}
    assert provider.config.zone == "certherd.test."
    await provider.add_txt(TxtRecord(NAME, VALUE, "x.certherd.test"))
    assert txt_values(zone_file) == [VALUE]
    overridden = LexiconProvider.from_settings({"filename": "/from/settings.zone"}, environ)
    assert overridden.config.options == {"filename": "/from/settings.zone"}


def test_configuration_errors_say_what_to_do(zone_file: Path) -> None:
    with pytest.raises(ConfigError, match="set 'provider'"):
        LexiconProvider.from_settings({}, {})
    with pytest.raises(ConfigError, match="'no-such-dns' is not a provider name"):
        LexiconProvider.from_settings({"provider": "no-such-dns"}, {})
    with pytest.raises(ConfigError, match="no provider 'nosuchdns'"):
        LexiconProvider.from_settings({"provider": "nosuchdns"}, {})
    with pytest.raises(ConfigError, match=r"unknown options filenme; it takes .*filename"):
        LexiconProvider.from_settings({"provider": "localzone", "filenme": "x"}, {})
    with pytest.raises(ConfigError, match="concurrency"):
        localzone(zone_file, concurrency="many")


def test_a_missing_lexicon_points_at_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lexicon._private.discovery", None)
    with pytest.raises(ConfigError) as caught:
        LexiconProvider(LexiconConfig("cloudflare"))
    assert str(caught.value) == INSTALL_HINT
    assert "pip install 'certherd[lexicon]'" in INSTALL_HINT


async def test_failures_are_provider_errors_with_option_values_masked(tmp_path: Path) -> None:
    secret_path = tmp_path / "s3cr3t-token-like" / "missing.zone"
    provider = localzone(secret_path)
    with pytest.raises(DnsProviderError) as caught:
        await provider.add_txt(TxtRecord(NAME, VALUE, "x.certherd.test"))
    message = str(caught.value)
    assert message.startswith(f"lexicon localzone: cannot add TXT {NAME} in zone certherd.test:")
    assert "s3cr3t-token-like" not in message
    assert "***" in message


def test_repr_lists_option_names_but_never_their_values() -> None:
    config = LexiconConfig("cloudflare", {"auth_token": "very-secret-token"})
    assert "auth_token" in repr(config)
    assert "very-secret-token" not in repr(config)


async def test_a_record_outside_the_configured_zone_is_refused(zone_file: Path) -> None:
    provider = localzone(zone_file)
    target = TxtRecord("x1.auth.acme-dns.test.", VALUE, "x.certherd.test")  # a CNAME target
    with pytest.raises(DnsProviderError, match=r"outside the zone certherd\.test; unset 'zone'"):
        await provider.add_txt(target)
    lookalike = TxtRecord("_acme-challenge.notcertherd.test.", VALUE, "notcertherd.test")
    with pytest.raises(DnsProviderError, match="outside the zone"):
        await provider.add_txt(lookalike)
    assert zone_file.read_text() == ZONE_TEXT


async def test_a_dns_host_api_that_never_answers_fails_within_the_timeout() -> None:
    """lexicon's powerdns provider calls its API through ``requests`` with no timeout: a
    host that accepts the connection and never answers held the lineage forever."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # read nothing, answer nothing, keep it open

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    provider = LexiconProvider.from_settings(
        {
            "provider": "powerdns",
            "zone": "certherd.test",
            "pdns_server": f"http://127.0.0.1:{port}",
            "auth_token": "t0ken-never-shown",
            "timeout": "0.5",
        },
        {},
    )
    try:
        async with asyncio.timeout(30):  # the guard of this test, not the limit under test
            with pytest.raises(DnsProviderError, match=r"no answer within 0\.5 s") as caught:
                await provider.add_txt(TxtRecord(NAME, VALUE, "x.certherd.test"))
    finally:
        for writer in accepted:
            writer.close()  # the worker thread's request then ends too
        server.close()
    assert accepted, "the provider never reached the DNS host"
    assert "t0ken-never-shown" not in str(caught.value)


def test_a_timeout_must_be_positive_seconds() -> None:
    for bad in ("0", "-1", "soon", "nan"):
        with pytest.raises(ConfigError, match="timeout must be a positive number"):
            LexiconProvider.from_settings({"provider": "localzone", "timeout": bad}, {})
