"""The rfc2136 provider against BIND9: its errors, zone discovery, key files and settings.

The shared behaviour (add, remove, concurrency) is in tests/contract; this covers what is
particular to RFC 2136: TSIG failures, finding the zone, and reading the configuration.
"""

from __future__ import annotations

import base64
import dataclasses
import secrets
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.servers.bind9 import Bind9Server

from certherd.dns.base import TxtRecord
from certherd.dns.rfc2136 import Rfc2136Config, Rfc2136Provider
from certherd.errors import ConfigError, DnsProviderError


def _record(zone: str, depth: int = 1) -> TxtRecord:
    labels = ".".join(f"l{uuid.uuid4().hex[:8]}" for _ in range(depth))
    domain = f"{labels}.{zone}".rstrip(".")
    return TxtRecord(f"_acme-challenge.{domain}.", secrets.token_urlsafe(32), domain)


def _config(bind9: Bind9Server, **changes: Any) -> Rfc2136Config:
    host, port = bind9.address
    config = Rfc2136Config(
        server=host,
        port=port,
        key_name=bind9.tsig_key_name,
        key_secret=bind9.tsig_secret,
        algorithm=bind9.tsig_algorithm,
        timeout=5.0,
    )
    return dataclasses.replace(config, **changes)


def _settings(bind9: Bind9Server, **changes: str) -> dict[str, str]:
    host, port = bind9.address
    return {"server": host, "port": str(port), **changes}


def _other_secret() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


# -- errors from the server ----------------------------------------------------------


@pytest.mark.parametrize("zone", ["certherd.test.", None], ids=["zone-set", "zone-discovered"])
async def test_wrong_secret_is_a_clear_error(bind9: Bind9Server, zone: str | None) -> None:
    wrong = _other_secret()
    provider = Rfc2136Provider(_config(bind9, key_secret=wrong, zone=zone))
    record = _record("certherd.test.")
    with pytest.raises(DnsProviderError) as caught:
        await provider.add_txt(record)
    message = str(caught.value)
    assert "\n" not in message
    assert record.name in message
    assert f"{bind9.host}:{bind9.port}" in message
    assert "TSIG signature" in message
    assert "key_secret" in message
    assert wrong not in message
    assert bind9.tsig_secret not in message
    assert bind9.query(record.name, "TXT") == []


async def test_unknown_key_name_is_a_clear_error(bind9: Bind9Server) -> None:
    provider = Rfc2136Provider(_config(bind9, key_name="nobody.", zone="certherd.test."))
    with pytest.raises(DnsProviderError, match=r"does not know TSIG key 'nobody\.'.*key_name"):
        await provider.add_txt(_record("certherd.test."))


async def test_zone_the_server_does_not_serve_names_the_update_policy(
    bind9: Bind9Server,
) -> None:
    provider = Rfc2136Provider(_config(bind9, zone="elsewhere.test."))
    record = _record("elsewhere.test.")
    with pytest.raises(DnsProviderError) as caught:
        await provider.add_txt(record)
    message = str(caught.value)
    assert "NOTAUTH" in message
    assert "update-policy" in message
    assert record.name in message


async def test_name_outside_the_configured_zone_fails_before_sending(
    bind9: Bind9Server,
) -> None:
    provider = Rfc2136Provider(_config(bind9, zone="delegated.test."))
    with pytest.raises(DnsProviderError, match=r"outside zone delegated\.test\."):
        await provider.add_txt(_record("certherd.test."))


async def test_closed_port_is_a_provider_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends
    config = Rfc2136Config(
        server="127.0.0.1", port=port, key_name="k.", key_secret=_other_secret(), timeout=2
    )
    with pytest.raises(DnsProviderError, match="cannot connect"):
        await Rfc2136Provider(config).add_txt(_record("certherd.test."))


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


async def test_no_answer_is_a_timeout_error(silent_server: int) -> None:
    config = Rfc2136Config(
        server="127.0.0.1",
        port=silent_server,
        key_name="k.",
        key_secret=_other_secret(),
        zone="certherd.test.",
        timeout=0.3,
    )
    with pytest.raises(DnsProviderError, match=r"no answer within 0\.3 s"):
        await Rfc2136Provider(config).add_txt(_record("certherd.test."))


# -- zone discovery --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "depth"),
    [("certherd.test.", 1), ("delegated.test.", 1), ("delegated.test.", 4)],
)
async def test_zone_is_found_by_soa_queries(bind9: Bind9Server, zone: str, depth: int) -> None:
    provider = Rfc2136Provider(_config(bind9))
    record = _record(zone, depth)
    await provider.add_txt(record)
    assert bind9.query(record.name, "TXT") == [record.value]
    await provider.remove_txt(record)
    assert bind9.query(record.name, "TXT") == []


async def test_name_in_no_served_zone_asks_for_the_zone_setting(bind9: Bind9Server) -> None:
    provider = Rfc2136Provider(_config(bind9))
    with pytest.raises(DnsProviderError, match=r"authoritative for no zone.*set 'zone'"):
        await provider.add_txt(_record("example.org."))


async def test_cname_delegated_record_lands_in_the_target_zone(bind9: Bind9Server) -> None:
    """``_acme-challenge.<name>`` CNAMEd into another zone: the provider gets the target."""
    label = f"app{uuid.uuid4().hex[:8]}"
    target = f"_acme-challenge.{label}.delegated.test."
    bind9.add_record(f"_acme-challenge.{label}.certherd.test.", "CNAME", target)
    record = TxtRecord(target, secrets.token_urlsafe(32), f"{label}.certherd.test")
    provider = Rfc2136Provider(_config(bind9))
    await provider.add_txt(record)
    assert bind9.query(target, "TXT") == [record.value]
    await provider.remove_txt(record)
    bind9.delete_record(f"_acme-challenge.{label}.certherd.test.", "CNAME")


# -- key files and settings ------------------------------------------------------------


async def test_key_file_gives_name_algorithm_and_secret(bind9: Bind9Server) -> None:
    config = Rfc2136Config.from_mapping(_settings(bind9, key_file=str(bind9.key_file)))
    assert config.key_name == bind9.tsig_key_name.rstrip(".")
    assert config.algorithm == "hmac-sha256"
    assert config.key_secret == bind9.tsig_secret
    record = _record("certherd.test.")
    await Rfc2136Provider(config).add_txt(record)
    assert bind9.query(record.name, "TXT") == [record.value]
    await Rfc2136Provider(config).remove_txt(record)


def test_key_file_with_several_keys_needs_key_name(bind9: Bind9Server, tmp_path: Path) -> None:
    key_file = tmp_path / "keys.conf"
    key_file.write_text(
        bind9.key_file.read_text()
        + f'key "second" {{\n\talgorithm hmac-sha512;\n\tsecret "{_other_secret()}";\n}};\n'
    )
    with pytest.raises(ConfigError, match="key_file has 2 keys"):
        Rfc2136Config.from_mapping(_settings(bind9, key_file=str(key_file)))
    chosen = Rfc2136Config.from_mapping(_settings(bind9, key_file=str(key_file), key_name="second"))
    assert chosen.algorithm == "hmac-sha512"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"key_file": "/nonexistent/tsig.key"}, r"'key_file'.*cannot be read.*tsig-keygen"),
        ({"key_file": "{bad}", "key_secret": "c2VjcmV0"}, r"both set: give only one"),
        ({"key_name": "k", "key_secret": "not base64!"}, r"'key_secret'.*not valid base64"),
        ({"key_name": "k"}, r"'key_secret'.*is missing"),
        ({"key_name": "k", "key_secret": "c2VjcmV0", "port": "dns"}, r"'port'.*whole number"),
        ({"key_name": "k", "key_secret": "c2VjcmV0", "port": "0"}, r"'port'.*1 to 65535"),
        ({"key_name": "k", "key_secret": "c2VjcmV0", "algorithm": "md5"}, r"'algorithm'"),
        ({"key_name": "k", "key_secret": "c2VjcmV0", "timeout": "-1"}, r"'timeout'"),
        ({"key_name": "k", "key_secret": "c2VjcmV0", "servre": "x"}, r"no setting 'servre'"),
    ],
)
def test_bad_settings_are_one_line_config_errors(
    bind9: Bind9Server, changes: dict[str, str], expected: str
) -> None:
    settings = _settings(bind9, **changes)
    with pytest.raises(ConfigError, match=expected) as caught:
        Rfc2136Config.from_mapping(settings)
    message = str(caught.value)
    assert "\n" not in message
    assert "not base64!" not in message  # a secret, even a wrong one, is never echoed
    assert "c2VjcmV0" not in message


def test_settings_come_from_the_environment(bind9: Bind9Server) -> None:
    host, port = bind9.address
    environ = {
        "CERTHERD_RFC2136_SERVER": host,
        "CERTHERD_RFC2136_PORT": str(port),
        "CERTHERD_RFC2136_KEY_NAME": bind9.tsig_key_name,
        "CERTHERD_RFC2136_KEY_SECRET": bind9.tsig_secret,
        "CERTHERD_RFC2136_ALGORITHM": "HMAC-SHA256.",
        "CERTHERD_RFC2136_ZONE": "Certherd.Test",
        "CERTHERD_RFC2136_TTL": "120",
        "UNRELATED": "x",
    }
    config = Rfc2136Config.from_env(environ)
    assert (config.server, config.port, config.zone) == (host, port, "certherd.test.")
    assert (config.algorithm, config.ttl) == ("hmac-sha256", 120)
    # Settings win over the environment; a key_file in settings hides the env secret.
    merged = Rfc2136Config.from_settings({"key_file": str(bind9.key_file)}, environ)
    assert merged.key_secret == bind9.tsig_secret
    assert merged.zone == "certherd.test."


def test_secret_is_not_in_repr(bind9: Bind9Server) -> None:
    config = _config(bind9)
    assert bind9.tsig_secret not in repr(config)
    assert bind9.tsig_secret not in repr(Rfc2136Provider(config))
