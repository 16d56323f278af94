"""The ``rfc2136`` DNS provider: TXT values added and removed by dynamic update (RFC 2136).

Each change is one UPDATE message (RFC 2136 §2) signed with a TSIG key (RFC 8945) and sent over
TCP to the zone's primary server (BIND9, Knot, PowerDNS, ...). Adding puts one RR into the TXT
RRset (§2.5.1 "Add To An RRset"), so other values at the name stay; removing deletes exactly
that RR (§2.5.4 "Delete An RR From An RRset"), which is a no-op when it is already gone.

Settings (a config mapping, or ``CERTHERD_RFC2136_<SETTING>`` variables; see `SETTINGS`):
``server``, ``port``, ``key_name`` with ``key_secret`` or ``key_file``, ``algorithm``, ``zone``,
``timeout``, ``ttl``. Without ``zone``, the zone is found by asking the server for the SOA of
the record's name and then of each parent in turn.

dnspython is imported only when a provider is built, so listing providers does not need it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import importlib.util
import ipaddress
import math
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import msgspec

from certherd.dns.base import ProviderInfo, TxtRecord
from certherd.errors import ConfigError, DnsProviderError, UnavailableError, safe_text
from certherd.schema import Secret

if TYPE_CHECKING:
    import dns.message
    import dns.name
    import dns.rcode
    import dns.rdata
    import dns.update

__all__ = [
    "ALGORITHMS",
    "ENV_PREFIX",
    "SETTINGS",
    "Rfc2136Config",
    "Rfc2136Options",
    "Rfc2136Provider",
]

ENV_PREFIX = "CERTHERD_RFC2136_"
"""Environment variables ``CERTHERD_RFC2136_<SETTING>`` (upper case) give the settings."""

SETTINGS: Mapping[str, str] = {
    "server": "the primary name server that takes updates: an IP address or a host name",
    "port": "its DNS port (default 53); updates go over TCP",
    "key_name": "the TSIG key's name, as in the server's `key` clause",
    "key_secret": "the TSIG key's secret (base64); or use key_file",
    "key_file": "a BIND key file as written by tsig-keygen (name, algorithm and secret)",
    "algorithm": "the TSIG algorithm: hmac-sha256 (default), hmac-sha512, hmac-sha384, "
    "hmac-sha224 or hmac-sha1",
    "zone": "the zone to update (default: found by SOA queries to the server)",
    "timeout": "seconds to wait for each answer (default 10)",
    "ttl": "the TTL of added TXT records (default: the record's own, 60)",
}
"""Setting -> what it means; the variable is ``ENV_PREFIX`` + the setting in upper case."""

ALGORITHMS = ("hmac-sha256", "hmac-sha512", "hmac-sha384", "hmac-sha224", "hmac-sha1")
"""TSIG algorithms accepted (RFC 8945 §6); ``sha256`` and a trailing dot are accepted too."""

_MAX_TTL = 2**31 - 1  # RFC 2181 §8
_KEY_CLAUSE = re.compile(r'\bkey\s+"?([^"\s{]+)"?\s*\{(.*?)\}\s*;', re.DOTALL)
_KEY_ALGORITHM = re.compile(r'\balgorithm\s+"?([\w.-]+)"?\s*;')
_KEY_SECRET = re.compile(r'\bsecret\s+"([^"]*)"\s*;')


class Rfc2136Options(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The schema of the settings (see `SETTINGS`); each may also come from the
    environment, so none is required here. ``key_secret`` is a secret: prefer
    ``key_file``, or give it as ``{ file = ... }`` / ``{ env = ... }``."""

    server: str | None = None
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] | None = None
    key_name: str | None = None
    key_secret: Secret | None = None
    key_file: str | None = None
    algorithm: str | None = None
    zone: str | None = None
    timeout: Annotated[float, msgspec.Meta(gt=0)] | None = None
    ttl: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] | None = None

    def __post_init__(self) -> None:
        if self.algorithm is not None:
            try:
                _canonical_algorithm(self.algorithm)
            except ConfigError as err:
                raise ValueError(str(err)) from None


def _invalid(setting: str, problem: str) -> ConfigError:
    """One line naming the setting, its variable, what is wrong and how to fix it."""
    return ConfigError(f"rfc2136 setting {setting!r} ({ENV_PREFIX}{setting.upper()}) {problem}")


@dataclass(frozen=True)
class Rfc2136Config:
    """Where and how to send updates. Validated on construction (`ConfigError`, one line).

    ``algorithm`` is kept in its canonical form (``hmac-sha256``) and ``zone`` fully
    qualified in lower case; ``ttl`` None means each record's own TTL. The secret is left
    out of ``repr()``.
    """

    server: str
    key_name: str
    key_secret: str = field(repr=False)
    port: int = 53
    algorithm: str = "hmac-sha256"
    zone: str | None = None
    timeout: float = 10.0
    ttl: int | None = None

    def __post_init__(self) -> None:
        server = self.server.strip()
        if not server or any(char.isspace() for char in server):
            raise _invalid("server", "is missing: give the IP address or host name of the primary")
        if ":" in server:
            try:
                ipaddress.IPv6Address(server)
            except ValueError:
                raise _invalid(
                    "server",
                    f"is not an address or host name: {safe_text(server, 100)!r}; "
                    "give the port in the 'port' setting",
                ) from None
        object.__setattr__(self, "server", server)
        if isinstance(self.port, bool) or not 1 <= self.port <= 65535:
            raise _invalid("port", f"must be a port number from 1 to 65535, not {self.port!r}")
        key_name = self.key_name.strip()
        if not key_name or any(char.isspace() for char in key_name):
            raise _invalid("key_name", "is missing: give the TSIG key's name from the server")
        object.__setattr__(self, "key_name", key_name)
        secret = self.key_secret.strip()
        if not secret:
            raise _invalid("key_secret", "is missing: give the TSIG secret (base64) or key_file")
        try:
            base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError):
            # Never echo the secret itself, not even a wrong one.
            raise _invalid(
                "key_secret", "is not valid base64: copy the secret from the key file"
            ) from None
        object.__setattr__(self, "key_secret", secret)
        object.__setattr__(self, "algorithm", _canonical_algorithm(self.algorithm))
        if self.zone is not None:
            zone = self.zone.strip().lower()
            if not zone.strip("."):
                raise _invalid("zone", "is empty: give the zone's name or leave it unset")
            object.__setattr__(self, "zone", zone if zone.endswith(".") else zone + ".")
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise _invalid("timeout", f"must be a positive number of seconds, not {self.timeout}")
        if self.ttl is not None and (isinstance(self.ttl, bool) or not 0 <= self.ttl <= _MAX_TTL):
            raise _invalid("ttl", f"must be a whole number of seconds >= 0, not {self.ttl!r}")

    @classmethod
    def from_mapping(cls, settings: Mapping[str, str]) -> Rfc2136Config:
        """Build from settings named as in `SETTINGS`; empty values count as unset."""
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise ConfigError(
                f"rfc2136 has no setting {', '.join(map(repr, unknown))}; "
                f"the settings are: {', '.join(SETTINGS)}"
            )
        values = {key: str(value).strip() for key, value in settings.items()}
        values = {key: value for key, value in values.items() if value}
        key_name = values.get("key_name")
        algorithm = values.get("algorithm")
        secret = values.get("key_secret")
        if "key_file" in values:
            if secret is not None:
                raise _invalid("key_file", "and 'key_secret' are both set: give only one")
            key_name, file_algorithm, secret = _read_key_file(values["key_file"], key_name)
            if algorithm is not None and _canonical_algorithm(algorithm) != file_algorithm:
                raise _invalid(
                    "algorithm",
                    f"is {algorithm!r} but key_file says {file_algorithm!r}: unset one",
                )
            algorithm = file_algorithm
        if "server" not in values:
            raise _invalid("server", "is missing: give the IP address or host name of the primary")
        if key_name is None:
            raise _invalid("key_name", "is missing: give the TSIG key's name (or key_file)")
        if secret is None:
            raise _invalid("key_secret", "is missing: give the TSIG secret (base64) or key_file")
        port = _int_setting(values, "port")
        timeout = _float_setting(values, "timeout")
        return cls(
            server=values["server"],
            key_name=key_name,
            key_secret=secret,
            port=53 if port is None else port,
            algorithm=algorithm or "hmac-sha256",
            zone=values.get("zone"),
            timeout=10.0 if timeout is None else timeout,
            ttl=_int_setting(values, "ttl"),
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Rfc2136Config:
        """Build from ``CERTHERD_RFC2136_<SETTING>`` variables in *environ*."""
        return cls.from_mapping(_env_settings(environ))

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, str], environ: Mapping[str, str]
    ) -> Rfc2136Config:
        """Settings first, the environment for what they leave out.

        A credential in *settings* (``key_secret`` or ``key_file``) hides both credential
        variables, so the two sources never mix into a conflict.
        """
        merged = _env_settings(environ)
        if {"key_secret", "key_file"} & {key for key, value in settings.items() if value}:
            merged.pop("key_secret", None)
            merged.pop("key_file", None)
        merged.update(settings)
        return cls.from_mapping(merged)


class Rfc2136Provider:
    """Adds and removes TXT values by TSIG-signed RFC 2136 updates over TCP.

    Safe for concurrent calls: each call is its own update, applied atomically by the server.
    Cancellation abandons the exchange; the update may or may not have been applied.
    """

    options = Rfc2136Options
    info = ProviderInfo(
        name="rfc2136",
        description="Dynamic DNS updates (RFC 2136) signed with a TSIG key: BIND9, Knot, "
        "PowerDNS and most name servers",
        settings=SETTINGS,
    )

    def __init__(self, config: Rfc2136Config) -> None:
        if importlib.util.find_spec("dns") is None:
            raise UnavailableError("the rfc2136 provider needs dnspython: pip install dnspython")
        self.config = config
        self._zones: dict[str, dns.name.Name] = {}
        self._address: str | None = None

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, str], environ: Mapping[str, str]
    ) -> Rfc2136Provider:
        """The registry's constructor: see `Rfc2136Config.from_settings`."""
        return cls(Rfc2136Config.from_settings(settings, environ))

    async def add_txt(self, record: TxtRecord) -> None:
        """Add ``record.value`` to the TXT RRset at ``record.name`` (RFC 2136 §2.5.1)."""
        name = _absolute(record.name)
        update = self._update(await self._zone_for(name, record))
        ttl = record.ttl if self.config.ttl is None else self.config.ttl
        update.add(name, ttl, _txt_rdata(record.value))
        await self._apply(update, record, "add")

    async def remove_txt(self, record: TxtRecord) -> None:
        """Delete exactly ``record.value`` at ``record.name`` (RFC 2136 §2.5.4)."""
        name = _absolute(record.name)
        update = self._update(await self._zone_for(name, record))
        update.delete(name, _txt_rdata(record.value))
        await self._apply(update, record, "remove")

    async def check_credentials(self, domain: str) -> str:
        """A harmless call proving the key (``certherd check``): a TSIG-signed SOA query
        for the zone that holds ``domain``'s challenge record; a server that does not
        know the key, or rejects its signature, says so (DnsProviderError). Returns what
        was proven, in words."""
        import dns.message
        import dns.rcode
        import dns.rdatatype
        import dns.tsig

        record = TxtRecord(f"_acme-challenge.{domain.removeprefix('*.')}.", "", domain)
        zone = await self._zone_for(_absolute(record.name), record)
        query = dns.message.make_query(zone, dns.rdatatype.SOA)
        query.use_tsig(
            dns.tsig.Key(self.config.key_name, self.config.key_secret, self.config.algorithm)
        )
        response = await self._exchange(query, record, "check the TSIG key on")
        if response.rcode() != dns.rcode.NOERROR:
            raise self._fail("check the TSIG key on", record, _rcode_reason(response.rcode(), zone))
        where = f"{self.config.server}:{self.config.port}"
        return f"TSIG key {self.config.key_name!r} accepted by {where} (zone {zone.to_text()})"

    def __repr__(self) -> str:
        return f"Rfc2136Provider(server={self.config.server}:{self.config.port})"

    # -- internals ----------------------------------------------------------------------

    def _fail(self, action: str, record: TxtRecord, reason: str) -> DnsProviderError:
        where = f"{self.config.server}:{self.config.port}"
        name = safe_text(record.name, 300)
        return DnsProviderError(f"rfc2136: cannot {action} TXT at {name} on {where}: {reason}")

    def _update(self, zone: dns.name.Name) -> dns.update.UpdateMessage:
        import dns.tsig
        import dns.update

        key = dns.tsig.Key(self.config.key_name, self.config.key_secret, self.config.algorithm)
        return dns.update.UpdateMessage(zone, keyring=key)

    async def _apply(
        self, update: dns.update.UpdateMessage, record: TxtRecord, action: str
    ) -> None:
        import dns.rcode

        response = await self._exchange(update, record, action)
        rcode = response.rcode()
        if rcode != dns.rcode.NOERROR:
            raise self._fail(action, record, _rcode_reason(rcode, update.origin))

    async def _zone_for(self, name: dns.name.Name, record: TxtRecord) -> dns.name.Name:
        """The configured zone, or the nearest enclosing zone the server has an SOA for."""
        import dns.name
        import dns.tsig

        from certherd.dns.zone import find_zone

        if self.config.zone is not None:
            zone = dns.name.from_text(self.config.zone)
            if not name.is_subdomain(zone):
                raise self._fail("change", record, f"the name is outside zone {self.config.zone}")
            return zone
        cached = self._zones.get(name.to_text())
        if cached is not None:
            return cached

        async def ask(query: dns.message.Message) -> dns.message.Message:
            # Signed like the update, so a wrong key is reported here, before any change.
            key = dns.tsig.Key(self.config.key_name, self.config.key_secret, self.config.algorithm)
            query.use_tsig(key)
            return await self._exchange(query, record, "find the zone of")

        found = await find_zone(name, ask)
        if found is None:
            raise self._fail(
                "find the zone of",
                record,
                "the server is authoritative for no zone containing it; set 'zone'",
            )
        self._zones[name.to_text()] = found
        return found

    async def _exchange(
        self, message: dns.message.Message, record: TxtRecord, action: str
    ) -> dns.message.Message:
        import dns.asyncquery
        import dns.exception
        import dns.tsig

        timeout = self.config.timeout
        try:
            address = await self._server_address()
            return await dns.asyncquery.tcp(
                message, address, timeout=timeout, port=self.config.port
            )
        except dns.tsig.PeerBadKey:
            reason = (
                f"the server does not know TSIG key {self.config.key_name!r} "
                f"({self.config.algorithm}); check key_name and algorithm"
            )
        except dns.tsig.PeerBadSignature:
            reason = (
                f"the server rejected the TSIG signature of key {self.config.key_name!r}; "
                "check key_secret (or key_file) and algorithm"
            )
        except dns.tsig.PeerBadTime:
            reason = "the server rejected the TSIG time: this clock and the server's differ"
        except dns.exception.Timeout:
            reason = f"no answer within {timeout:g} s; check server, port and that TCP is open"
        except dns.exception.DNSException as err:
            reason = safe_text(f"{type(err).__name__}: {err}", 300)
        except OSError as err:
            reason = safe_text(f"cannot connect: {err.strerror or err}", 300)
        raise self._fail(action, record, reason)

    async def _server_address(self) -> str:
        if self._address is not None:
            return self._address
        try:
            self._address = str(ipaddress.ip_address(self.config.server))
        except ValueError:
            loop = asyncio.get_running_loop()
            infos = await loop.getaddrinfo(
                self.config.server, self.config.port, type=socket.SOCK_STREAM
            )
            self._address = str(infos[0][4][0])
        return self._address


def _rcode_reason(rcode: dns.rcode.Rcode, zone: dns.name.Name | None) -> str:
    import dns.rcode

    text = dns.rcode.to_text(rcode)
    zone_text = zone.to_text() if zone is not None else "?"
    hints = {
        "REFUSED": "check the key and the zone's update-policy (or allow-update)",
        "NOTAUTH": f"check the key and the zone's update-policy, and that the server "
        f"is primary for {zone_text}",
        "NOTZONE": f"the name is outside zone {zone_text}; fix the 'zone' setting",
        "SERVFAIL": "the server failed to apply it; see the server's log",
    }
    hint = hints.get(text)
    return f"the server answered {text}" + (f"; {hint}" if hint else "")


def _txt_rdata(value: str) -> dns.rdata.Rdata:
    """One TXT RR holding *value*, split into strings of at most 255 bytes (RFC 1035 §3.3.14)."""
    import dns.rdataclass
    import dns.rdatatype
    import dns.rdtypes.ANY.TXT

    data = value.encode()
    chunks = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
    return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks)


def _absolute(name: str) -> dns.name.Name:
    import dns.name

    return dns.name.from_text(name)


def _canonical_algorithm(algorithm: str) -> str:
    name = algorithm.strip().lower().rstrip(".")
    if not name.startswith("hmac-"):
        name = "hmac-" + name
    if name not in ALGORITHMS:
        raise _invalid(
            "algorithm",
            f"is not a supported TSIG algorithm: {safe_text(algorithm, 60)!r}; "
            f"use one of {', '.join(ALGORITHMS)}",
        )
    return name


def _int_setting(values: Mapping[str, str], setting: str) -> int | None:
    raw = values.get(setting)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise _invalid(setting, f"must be a whole number, not {safe_text(raw, 40)!r}") from None


def _float_setting(values: Mapping[str, str], setting: str) -> float | None:
    raw = values.get(setting)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        raise _invalid(setting, f"must be a number, not {safe_text(raw, 40)!r}") from None


def _env_settings(environ: Mapping[str, str]) -> dict[str, str]:
    return {
        setting: environ[ENV_PREFIX + setting.upper()]
        for setting in SETTINGS
        if environ.get(ENV_PREFIX + setting.upper(), "").strip()
    }


def _read_key_file(path_text: str, key_name: str | None) -> tuple[str, str, str]:
    """``(name, algorithm, secret)`` of the key named *key_name*, or of the only key."""
    path = Path(path_text).expanduser()
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise _invalid(
            "key_file",
            f"cannot be read: {safe_text(path, 200)}: {reason}; give the file tsig-keygen wrote",
        ) from None
    keys: dict[str, tuple[str, str]] = {}
    for match in _KEY_CLAUSE.finditer(text):
        algorithm_match = _KEY_ALGORITHM.search(match[2])
        secret_match = _KEY_SECRET.search(match[2])
        if algorithm_match and secret_match:
            keys[match[1]] = (algorithm_match[1], secret_match[1])
    if not keys:
        raise _invalid(
            "key_file",
            f'has no key clause (key "name" {{ algorithm ...; secret "..."; }};) in '
            f"{safe_text(path, 200)}; give the file tsig-keygen wrote",
        )
    if key_name is None:
        if len(keys) > 1:
            raise _invalid(
                "key_name",
                f"is needed: key_file has {len(keys)} keys ({', '.join(keys)}); name one",
            )
        key_name = next(iter(keys))
    wanted = key_name.lower().rstrip(".")
    for name, (algorithm, secret) in keys.items():
        if name.lower().rstrip(".") == wanted:
            try:
                canonical = _canonical_algorithm(algorithm)
            except ConfigError:
                raise _invalid(
                    "key_file",
                    f"uses algorithm {safe_text(algorithm, 40)!r}; "
                    f"use one of {', '.join(ALGORITHMS)}",
                ) from None
            return name, canonical, secret
    raise _invalid(
        "key_name",
        f"{safe_text(key_name, 100)!r} is not in key_file (it has {', '.join(keys)})",
    )
