"""The ``lexicon`` DNS provider: the many DNS APIs of dns-lexicon behind one provider.

Needs the optional extra (``pip install 'certherd[lexicon]'``); lexicon is imported only
when a provider is built. Settings:

- ``provider``: lexicon's name for the DNS host (``cloudflare``, ``ovh``, ``localzone``...);
- ``zone``: the zone to edit (default: found by SOA lookups through ``resolver`` or the
  system resolver);
- ``resolver``: ``ADDRESS[:PORT]`` of the resolver for that lookup;
- ``concurrency``: how many calls may run at once (default 1: many lexicon providers
  rewrite a whole record set, so parallel adds could lose each other's values);
- ``timeout``: seconds one call (authenticate, act, clean up) may take (default 120). Most
  lexicon providers call their API through ``requests`` with no timeout at all, so a DNS
  host that accepts the connection and never answers would hold the lineage forever; past
  the limit the call fails (its worker thread is left to end on its own);
- anything else is an option of that lexicon provider (``auth_token``, ``filename``...).

Options come from the settings, else ``CERTHERD_LEXICON_<OPTION>``, else lexicon's own
``LEXICON_<PROVIDER>_<OPTION>``; never from the command line.

Lexicon's ``Client`` is not used: it guesses the zone with tldextract, which fetches the
public suffix list over the network on first use and gets private or test zones wrong
(``x.certherd.test`` comes out as zone ``test.``). The provider class is built directly
from a :class:`lexicon.config.ConfigResolver` of plain dictionaries, so lexicon reads no
environment variables and no files of its own. Lexicon's API is synchronous; each call
runs in a worker thread.
"""

from __future__ import annotations

import argparse
import asyncio
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from certherd.addresses import split_host_port
from certherd.dns.base import ProviderInfo, TxtRecord
from certherd.errors import ConfigError, DnsProviderError, SolverError, safe_text
from certherd.schema import SchemaError, looks_secret

if TYPE_CHECKING:
    import dns.message
    from lexicon.interfaces import Provider as LexiconApi

__all__ = ["INSTALL_HINT", "LexiconConfig", "LexiconProvider"]

INSTALL_HINT = "dns-lexicon is not installed: pip install 'certherd[lexicon]'"
ENV_PREFIX = "CERTHERD_LEXICON_"
RESERVED = ("provider", "zone", "resolver", "concurrency", "timeout")
DEFAULT_TIMEOUT = 120.0
ZONE_QUERY_TIMEOUT = 3.0  # seconds for each resolver's answer while the zone is looked for

INFO = ProviderInfo(
    name="lexicon",
    description="Any DNS host dns-lexicon supports (pip install 'certherd[lexicon]')",
    settings={
        "provider": "lexicon's name for the DNS host, e.g. cloudflare",
        "zone": "the zone to edit (default: found through DNS)",
        "resolver": "ADDRESS[:PORT] of the resolver used to find the zone",
        "concurrency": "how many lexicon calls may run at once (default 1)",
        "timeout": "seconds one lexicon call may take (default 120)",
        "<option>": "an option of the lexicon provider, e.g. auth_token",
    },
)


@dataclass(frozen=True)
class LexiconConfig:
    """A lexicon provider name, its options, and where the zone is."""

    provider: str
    options: Mapping[str, str] = field(default_factory=dict)
    zone: str | None = None
    resolver: tuple[str, int] | None = None
    concurrency: int = 1
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if not self.provider.replace("_", "").isalnum():
            raise ConfigError(f"lexicon: {self.provider!r} is not a provider name")
        if self.concurrency < 1:
            raise ConfigError("lexicon: concurrency must be at least 1")
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ConfigError(f"lexicon: timeout must be a positive number, got {self.timeout}")

    def __repr__(self) -> str:  # options hold credentials: never print their values
        return (
            f"LexiconConfig(provider={self.provider!r}, options={sorted(self.options)}, "
            f"zone={self.zone!r}, resolver={self.resolver!r})"
        )


class LexiconProvider:
    """A :class:`DnsProvider` over one dns-lexicon provider class.

    Every call builds a fresh lexicon provider in a worker thread, authenticates, acts
    and cleans up; at most ``concurrency`` calls run at once. A lexicon failure becomes a
    :class:`DnsProviderError` with the option values masked.
    """

    info = INFO

    def __init__(self, config: LexiconConfig) -> None:
        self.config = config
        self._api_class = _provider_class(config.provider)
        known = _known_options(self._api_class)
        unknown = sorted(set(config.options) - known) if known else []
        if unknown:
            raise ConfigError(
                f"lexicon provider {config.provider}: unknown options {', '.join(unknown)}; "
                f"it takes {', '.join(sorted(known)) or 'none'}"
            )
        self._slots = asyncio.Semaphore(config.concurrency)
        self._zones: dict[str, str] = {}

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, str], environ: Mapping[str, str]
    ) -> LexiconProvider:
        """Build from settings, then ``CERTHERD_LEXICON_*``, then ``LEXICON_<PROVIDER>_*``."""
        provider = settings.get("provider") or environ.get(ENV_PREFIX + "PROVIDER")
        if not provider:
            raise ConfigError(
                f"lexicon: set 'provider' (or {ENV_PREFIX}PROVIDER) to a lexicon provider name"
            )
        options: dict[str, str] = {}
        native = f"LEXICON_{provider.upper()}_"
        for prefix in (native, ENV_PREFIX):  # later ones win
            for key, value in environ.items():
                option = key[len(prefix) :].lower()
                if key.startswith(prefix) and option and option not in RESERVED:
                    options[option] = value
        options.update({k: v for k, v in settings.items() if k not in RESERVED})

        def setting(name: str) -> str | None:
            return settings.get(name) or environ.get(ENV_PREFIX + name.upper()) or None

        concurrency = setting("concurrency") or "1"
        if not concurrency.isdigit():
            raise ConfigError(f"lexicon: concurrency must be a whole number, got {concurrency!r}")
        resolver = setting("resolver")
        timeout = _seconds(setting("timeout"))
        if timeout is None:
            raise ConfigError(
                f"lexicon: timeout must be a positive number of seconds, got {setting('timeout')!r}"
            )
        return cls(
            LexiconConfig(
                provider=provider,
                options=options,
                zone=setting("zone"),
                resolver=_address(resolver) if resolver else None,
                concurrency=int(concurrency),
                timeout=timeout,
            )
        )

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any], *, strict: bool) -> frozenset[str]:
        """Check settings without building anything; return the names of the secret ones.

        Lexicon's option names depend on its provider: when lexicon can list them, an
        unknown one is an error; credentials (``auth_*``, tokens, passwords, and options
        lexicon describes so) are secrets.
        """
        for key, value in settings.items():
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise SchemaError((key,), 'must be a string in quotes, like "..."')
            if (
                strict
                and key in RESERVED
                and key not in ("concurrency", "timeout")
                and not isinstance(value, str)
            ):
                raise SchemaError((key,), 'must be a string in quotes, like "..."')
        concurrency = str(settings.get("concurrency", "1"))
        if not concurrency.isdigit() or int(concurrency) < 1:
            raise SchemaError(("concurrency",), "must be a whole number, at least 1")
        if "timeout" in settings and _seconds(str(settings["timeout"])) is None:
            raise SchemaError(("timeout",), "must be a positive number of seconds")
        if settings.get("resolver"):
            try:
                _address(str(settings["resolver"]))
            except ConfigError as err:
                raise SchemaError(("resolver",), str(err)) from None
        provider = str(settings.get("provider") or "")
        options = {k for k in settings if k not in RESERVED}
        if not provider:  # it may come from CERTHERD_LEXICON_PROVIDER: checked when built
            return frozenset(k for k in options if looks_secret(k))
        try:
            api_class = _provider_class(provider)
        except ConfigError as err:
            raise SchemaError(("provider",), str(err)) from None
        described = _described_options(api_class)
        unknown = sorted(options - set(described)) if described else []
        if unknown:
            raise SchemaError(
                (unknown[0],),
                f"unknown setting of lexicon provider {provider}: use one of "
                f"{', '.join(sorted(described)) or 'none'}",
            )
        return frozenset(
            k for k in options if looks_secret(k) or looks_secret(described.get(k, ""))
        )

    async def add_txt(self, record: TxtRecord) -> None:
        zone = await self._zone_of(record.name)

        def create(api: LexiconApi) -> None:
            name = record.name.rstrip(".")
            if not api.create_record("TXT", name, record.value) and not _matching_ids(
                api, name, record.value
            ):
                raise DnsProviderError(f"lexicon refused to create the value at {name}")

        await self._call("add", record, zone, create)

    async def remove_txt(self, record: TxtRecord) -> None:
        zone = await self._zone_of(record.name)

        def delete(api: LexiconApi) -> None:
            name = record.name.rstrip(".")
            ids = _matching_ids(api, name, record.value)
            if ids is None:  # the provider gives no ids: let it filter by content
                api.delete_record(None, "TXT", name, record.value)
                return
            for identifier in ids:
                api.delete_record(identifier, "TXT", name, record.value)

        await self._call("remove", record, zone, delete)

    async def _call(
        self, verb: str, record: TxtRecord, zone: str, action: Callable[[LexiconApi], None]
    ) -> None:
        async with self._slots:
            try:
                async with asyncio.timeout(self.config.timeout):
                    await asyncio.to_thread(self._in_thread, zone, record.ttl, action)
            except TimeoutError:
                raise DnsProviderError(
                    f"lexicon {self.config.provider}: cannot {verb} TXT {record.name} in zone "
                    f"{zone}: no answer within {self.config.timeout:g} s (the DNS host's API "
                    "hangs; raise the provider's 'timeout' setting if it is only slow)"
                ) from None
            except DnsProviderError as err:
                raise DnsProviderError(
                    self._mask(f"lexicon {self.config.provider}: {err}")
                ) from None
            except Exception as err:
                text = self._mask(safe_text(f"{type(err).__name__}: {err}", 300))
                raise DnsProviderError(
                    f"lexicon {self.config.provider}: cannot {verb} TXT {record.name} "
                    f"in zone {zone}: {text}"
                ) from None

    def _in_thread(self, zone: str, ttl: int, action: Callable[[LexiconApi], None]) -> None:
        from lexicon.config import ConfigResolver

        name = self.config.provider
        resolver = ConfigResolver().with_dict(  # type: ignore[no-untyped-call]
            {"provider_name": name, "domain": zone, "ttl": ttl, name: dict(self.config.options)}
        )
        api = self._api_class(resolver)
        api.authenticate()
        try:
            action(api)
        finally:
            api.cleanup()

    async def _zone_of(self, name: str) -> str:
        """The zone to edit for ``name`` (no trailing dot), as configured or found."""
        if self.config.zone:
            zone = self.config.zone.strip().rstrip(".").lower()
            if not f".{name.rstrip('.').lower()}".endswith(f".{zone}"):
                # e.g. a CNAME-delegated target in another zone: never write it into this one
                raise DnsProviderError(
                    f"lexicon {self.config.provider}: {safe_text(name, 200)} is outside the "
                    f"zone {zone}; unset 'zone' to have it found through DNS"
                )
            return zone
        cached = self._zones.get(name)
        if cached is not None:
            return cached
        from certherd.dns.zone import UdpTcpTransport, ask_in_turn, find_zone, system_resolvers

        async def ask(query: dns.message.Message) -> dns.message.Message:
            servers = (self.config.resolver,) if self.config.resolver else system_resolvers()
            return await ask_in_turn(query, servers, UdpTcpTransport(), ZONE_QUERY_TIMEOUT)

        try:
            found = await find_zone(name.rstrip(".").lower() + ".", ask)
        except SolverError as err:
            found, reason = None, safe_text(err, 200)
        else:
            reason = "no SOA at any of its parent names"
        if found is None:
            raise DnsProviderError(
                f"lexicon {self.config.provider}: cannot find the zone of {name} "
                f"({reason}); set the 'zone' setting"
            )
        self._zones[name] = found.to_text(omit_final_dot=True)
        return self._zones[name]

    def _mask(self, text: str) -> str:
        for value in self.config.options.values():
            if len(value) >= 4:
                text = text.replace(value, "***")
        return text


def _matching_ids(api: LexiconApi, name: str, value: str) -> list[str] | None:
    """Ids of the TXT records at ``name`` holding exactly ``value``; None if no ids."""
    ids: list[str] = []
    for entry in api.list_records("TXT", name, None):
        content = str(entry.get("content", ""))
        if content.strip('"') != value:
            continue
        identifier = entry.get("id")
        if identifier is None:
            return None
        ids.append(str(identifier))
    return ids


def _provider_class(name: str) -> type[LexiconApi]:
    """Lexicon's provider class for ``name``; ConfigError if lexicon or it is missing."""
    try:
        from lexicon._private.discovery import find_providers, load_provider_module
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    available = find_providers()
    if name not in available:
        raise ConfigError(f"lexicon has no provider {name!r}; see `lexicon --help` for the list")
    if not available[name]:
        raise ConfigError(
            f"lexicon provider {name} needs more packages: pip install 'dns-lexicon[{name}]'"
        )
    provider_class: type[LexiconApi] = load_provider_module(name).Provider
    return provider_class


def _known_options(api_class: type[LexiconApi]) -> set[str]:
    """The option names (argparse dests) the provider declares; empty if it cannot say."""
    return set(_described_options(api_class))


def _described_options(api_class: type[LexiconApi]) -> dict[str, str]:
    """Option name -> its help text, as the provider declares them; empty if it cannot say."""
    parser = argparse.ArgumentParser(add_help=False)
    try:
        api_class.configure_parser(parser)
    except Exception:
        return {}
    return {action.dest: str(action.help or "") for action in parser._actions}


def _address(text: str) -> tuple[str, int]:
    """``ADDRESS``, ``ADDRESS:PORT`` or ``[V6]:PORT`` to (address, port), port 53 by default."""
    return split_host_port(text, what="lexicon: resolver", default_port=53)


def _seconds(text: str | None) -> float | None:
    """``text`` as a positive, finite number of seconds (None: the default), else None."""
    if text is None or text == "":
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None
