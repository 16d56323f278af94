"""The DNS providers the contract suite runs against: append a `ProviderCase` to `PROVIDERS`.

Every case publishes into a zone of the suite's BIND9 (`tests.servers.bind9.Bind9Server`,
zones ``certherd.test.`` and ``delegated.test.``, one TSIG key allowed to change anything in
them); the suite then asks that server directly what it serves. A case's ``build`` gets a
`ContractContext` and returns a ready provider; it runs once per test, so it may use
``context.tmp_path`` for scripts or files. Build through the registry where the provider is
registered, so the name lookup is covered too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.contract.provider_support import ZoneFileMirror, write_update_hook, write_zone_file
from tests.servers.bind9 import Bind9Server

from certherd.dns.base import DnsProvider
from certherd.dns.registry import create_provider

__all__ = ["PROVIDERS", "ContractContext", "ProviderCase"]


@dataclass(frozen=True)
class ContractContext:
    """What a provider under test may use: the server, the zone to publish in, a temp dir."""

    bind9: Bind9Server
    zone: str
    tmp_path: Path


@dataclass(frozen=True)
class ProviderCase:
    """One provider under test: a pytest id, how to build it, and the zone it publishes in."""

    id: str
    build: Callable[[ContractContext], DnsProvider]
    zone: str = "certherd.test."


def _rfc2136(context: ContractContext) -> DnsProvider:
    """rfc2136 straight to BIND9, the zone found by SOA queries."""
    host, port = context.bind9.address
    settings = {
        "server": host,
        "port": str(port),
        "key_name": context.bind9.tsig_key_name,
        "key_secret": context.bind9.tsig_secret,
        "algorithm": context.bind9.tsig_algorithm,
        "timeout": "5",
    }
    return create_provider("rfc2136", settings, environ={})


def _rfc2136_env_key_file(context: ContractContext) -> DnsProvider:
    """rfc2136 configured from CERTHERD_RFC2136_* with a key file and a fixed zone."""
    host, port = context.bind9.address
    environ = {
        "CERTHERD_RFC2136_SERVER": host,
        "CERTHERD_RFC2136_PORT": str(port),
        "CERTHERD_RFC2136_KEY_FILE": str(context.bind9.key_file),
        "CERTHERD_RFC2136_ZONE": context.zone,
        "CERTHERD_RFC2136_TIMEOUT": "5",
    }
    return create_provider("rfc2136", {}, environ)


PROVIDERS: list[ProviderCase] = [
    ProviderCase("rfc2136", _rfc2136),
    ProviderCase("rfc2136-env-key-file", _rfc2136_env_key_file, zone="delegated.test."),
]
"""Every DNS provider the contract suite checks; other providers append their cases here."""


def _exec_update_hook(context: ContractContext) -> DnsProvider:
    """exec running a user's shell hook that calls `nsupdate -k KEYFILE` against BIND9."""
    hook = write_update_hook(context.bind9, context.tmp_path)
    return create_provider("exec", {"command": str(hook), "timeout": "20"}, environ={})


def _lexicon_localzone(context: ContractContext) -> DnsProvider:
    """lexicon:localzone editing a zone file, mirrored name by name into BIND9."""
    zone_file = write_zone_file(context.tmp_path / "lexicon.zone", context.zone)
    settings = {"zone": context.zone, "filename": str(zone_file)}
    inner = create_provider("lexicon:localzone", settings, environ={})
    return ZoneFileMirror(inner, zone_file, context.zone, context.bind9)


PROVIDERS += [
    ProviderCase("exec-nsupdate-hook", _exec_update_hook),
    ProviderCase("lexicon-localzone", _lexicon_localzone, zone="delegated.test."),
]
