"""DNS providers found by name: the built-in ones, then plugins, then dns-lexicon.

A name is resolved in this order:

1. a built-in provider: ``rfc2136``, ``exec``, ``lexicon`` (see `BUILTIN_PROVIDERS`);
2. ``lexicon:<provider>``: dns-lexicon's provider of that name (``lexicon:cloudflare``);
3. a plugin: a Python entry point in the group ``certherd.dns_providers`` whose name is the
   provider name and whose object is the provider class (``mypkg.dns:MyProvider``); a plugin
   cannot replace a built-in;
4. any other name is tried as a dns-lexicon provider, as if written ``lexicon:<name>``.

Each provider module is imported only when that provider is asked for (or listed), so using
``exec`` does not import dnspython, and a plugin's import errors concern only that plugin.

The constructor convention, for built-ins and plugins alike: the provider class has

- ``info``: a :class:`~certherd.dns.base.ProviderInfo` (its settings are also the suffixes of
  its ``CERTHERD_<NAME>_<SETTING>`` environment variables);
- ``options``: the schema of its settings, a :class:`msgspec.Struct` with
  ``forbid_unknown_fields`` whose secret fields are typed :data:`certherd.schema.Secret`
  (or, for settings known only at run time, a ``check_settings(settings, strict)``
  classmethod returning the names of the secret ones); checked when certherd.toml is
  loaded and when flags are read, before any CA is contacted. A plugin without either
  gets its settings as strings, and those named like secrets are treated as secrets;
- ``from_settings(settings, environ)``, a classmethod: *settings* are the user's settings for
  this provider (strings, as read from the config file), *environ* a mapping of environment
  variables to read the remaining settings from (never ``os.environ`` implicitly: the caller
  passes what it means). It MUST raise :class:`~certherd.errors.ConfigError` (one line naming
  the setting and the fix) for a missing or bad setting, and MUST NOT do network I/O.

For ``lexicon:<provider>`` the registry passes ``provider=<provider>`` in the settings.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

import msgspec

from certherd.dns.base import DnsProvider, ProviderInfo
from certherd.errors import ConfigError, safe_text
from certherd.schema import SchemaError, convert, looks_secret, secret_fields

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = [
    "BUILTIN_PROVIDERS",
    "ENTRY_POINT_GROUP",
    "ProviderFactory",
    "available_providers",
    "check_settings",
    "create_provider",
]

ENTRY_POINT_GROUP = "certherd.dns_providers"
"""The entry point group plugins register their provider classes in."""

BUILTIN_PROVIDERS: Mapping[str, str] = {
    "rfc2136": "certherd.dns.rfc2136:Rfc2136Provider",
    "exec": "certherd.dns.exec:ExecProvider",
    "lexicon": "certherd.dns.lexicon:LexiconProvider",
}
"""Built-in provider name -> ``module:Class``, imported on first use."""

_LEXICON = "lexicon"


class ProviderFactory(Protocol):
    """What the registry needs of a provider class (see the module docstring)."""

    info: ProviderInfo

    def from_settings(
        self, settings: Mapping[str, str], environ: Mapping[str, str]
    ) -> DnsProvider: ...


def create_provider(
    name: str, settings: Mapping[str, str], environ: Mapping[str, str]
) -> DnsProvider:
    """Build the provider called *name* from its *settings* and *environ*.

    Raises :class:`ConfigError` for an unknown name (listing the choices), a plugin that
    cannot be loaded, or a missing or bad setting.
    """
    name = name.strip()
    if name in BUILTIN_PROVIDERS:
        return _build(name, _import(name, BUILTIN_PROVIDERS[name]), settings, environ)
    if name.startswith(_LEXICON + ":"):
        return _build_lexicon(name.partition(":")[2].strip(), settings, environ)
    plugin = _plugins().get(name)
    if plugin is not None:
        return _build(name, _load_plugin(plugin), settings, environ)
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"unknown DNS provider {safe_text(name, 60)!r}; {_choices()}")
    try:
        return _build_lexicon(name, settings, environ)
    except ConfigError as err:
        raise ConfigError(
            f"DNS provider {name!r} is neither built in nor a plugin, and as "
            f"lexicon:{name}: {err}; {_choices()}"
        ) from None


def check_settings(name: str, settings: Mapping[str, Any], *, strict: bool) -> frozenset[str]:
    """Check *settings* against the schema of provider *name*; return which are secret.

    Raises :class:`~certherd.schema.SchemaError`: ``("provider",)`` for a provider that
    does not exist or cannot be loaded, else the path of the setting at fault.
    """
    name = name.strip()
    try:
        factory, extra = _factory(name)
    except ConfigError as err:
        raise SchemaError(("provider",), str(err)) from None
    check = getattr(factory, "check_settings", None)
    if callable(check):
        return cast(frozenset[str], check({**settings, **extra}, strict=strict))
    schema = getattr(factory, "options", None)
    if isinstance(schema, type) and issubclass(schema, msgspec.Struct):
        convert(dict(settings), schema, strict=strict, what=f"the {name} DNS provider")
        return secret_fields(schema)
    for key, value in settings.items():  # a plugin without a schema: strings only
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise SchemaError((key,), 'must be a string in quotes, like "..."')
    return frozenset(key for key in settings if looks_secret(key))


def _factory(name: str) -> tuple[ProviderFactory, dict[str, str]]:
    """The provider class for *name*, and settings the name implies (lexicon's provider)."""
    if name in BUILTIN_PROVIDERS:
        return _import(name, BUILTIN_PROVIDERS[name]), {}
    if name.startswith(_LEXICON + ":"):
        provider = name.partition(":")[2].strip()
        if not provider:
            raise ConfigError("DNS provider 'lexicon:' needs lexicon's provider name")
        return _import(_LEXICON, BUILTIN_PROVIDERS[_LEXICON]), {"provider": provider}
    plugin = _plugins().get(name)
    if plugin is not None:
        return _load_plugin(plugin), {}
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"unknown DNS provider {safe_text(name, 60)!r}; {_choices()}")
    return _GuessedLexicon(name), {"provider": name}


class _GuessedLexicon:
    """A name that is neither built in nor a plugin, checked as ``lexicon:<name>``."""

    info = ProviderInfo(name="lexicon", description="", settings={})

    def __init__(self, name: str) -> None:
        self.name = name

    def check_settings(self, settings: Mapping[str, Any], *, strict: bool) -> frozenset[str]:
        factory = _import(_LEXICON, BUILTIN_PROVIDERS[_LEXICON])
        try:
            return cast(frozenset[str], factory.check_settings(settings, strict=strict))  # type: ignore[attr-defined]
        except SchemaError as err:
            if err.path != ("provider",):
                raise
            raise SchemaError(
                ("provider",),
                f"DNS provider {self.name!r} is neither built in nor a plugin, and as "
                f"lexicon:{self.name}: {err.reason}; {_choices()}",
            ) from None

    def from_settings(self, settings: Mapping[str, str], environ: Mapping[str, str]) -> Any:
        raise NotImplementedError  # only checked, never built: create_provider builds


def available_providers() -> list[ProviderInfo]:
    """Every provider that can be named: built-ins first, then plugins by name.

    A provider whose module or plugin cannot be imported is listed with a description
    saying why. dns-lexicon's own providers are reached as ``lexicon:<provider>``.
    """
    found: list[ProviderInfo] = []
    for name, target in BUILTIN_PROVIDERS.items():
        found.append(_info(name, functools.partial(_import, name, target)))
    for name, entry_point in sorted(_plugins().items()):
        found.append(_info(name, functools.partial(_load_plugin, entry_point)))
    return found


def _build(
    name: str,
    factory: ProviderFactory,
    settings: Mapping[str, str],
    environ: Mapping[str, str],
) -> DnsProvider:
    provider = factory.from_settings(settings, environ)
    if not isinstance(provider, DnsProvider):
        raise ConfigError(
            f"DNS provider {name!r}: from_settings returned {type(provider).__name__}, "
            "which lacks info, add_txt or remove_txt; fix or remove the plugin"
        )
    return provider


def _build_lexicon(
    provider: str, settings: Mapping[str, str], environ: Mapping[str, str]
) -> DnsProvider:
    if not provider:
        raise ConfigError("DNS provider 'lexicon:' needs lexicon's provider name: lexicon:<name>")
    given = settings.get("provider")
    if given and given != provider:
        raise ConfigError(
            f"DNS provider 'lexicon:{provider}' but setting provider={given!r}: keep one"
        )
    factory = _import(_LEXICON, BUILTIN_PROVIDERS[_LEXICON])
    return _build(f"lexicon:{provider}", factory, {**settings, "provider": provider}, environ)


def _import(name: str, target: str) -> ProviderFactory:
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(
            f"DNS provider {name!r} cannot be imported ({err}); install what it needs"
        ) from None
    return _as_factory(name, target, getattr(module, attribute, None))


def _plugins() -> dict[str, EntryPoint]:
    """Plugin name -> entry point; names of built-ins are left out (built-ins win)."""
    from importlib.metadata import entry_points  # only when a name is not built in

    return {
        entry_point.name: entry_point
        for entry_point in entry_points(group=ENTRY_POINT_GROUP)
        if entry_point.name not in BUILTIN_PROVIDERS
    }


def _load_plugin(entry_point: EntryPoint) -> ProviderFactory:
    where = f"{entry_point.value} from {ENTRY_POINT_GROUP}"
    try:
        loaded = entry_point.load()
    except Exception as err:  # a plugin's import may fail in any way; name it, one line
        reason = safe_text(f"{type(err).__name__}: {err}", 300)
        raise ConfigError(
            f"DNS provider plugin {entry_point.name!r} ({where}) failed to load: {reason}"
        ) from None
    return _as_factory(entry_point.name, where, loaded)


def _as_factory(name: str, where: str, candidate: object) -> ProviderFactory:
    if not isinstance(getattr(candidate, "info", None), ProviderInfo) or not callable(
        getattr(candidate, "from_settings", None)
    ):
        raise ConfigError(
            f"DNS provider {name!r} ({where}) is not a provider class: it needs an `info` "
            "ProviderInfo and a `from_settings(settings, environ)` classmethod"
        )
    return cast(ProviderFactory, candidate)


def _info(name: str, load: Callable[[], ProviderFactory]) -> ProviderInfo:
    try:
        return load().info
    except ConfigError as err:
        return ProviderInfo(name=name, description=f"unavailable: {err}", settings={})


def _choices() -> str:
    names = [*BUILTIN_PROVIDERS, *sorted(_plugins())]
    return (
        f"choose one of {', '.join(names)}, or lexicon:<provider> for a DNS host dns-lexicon "
        f"supports, or install a plugin that registers it in {ENTRY_POINT_GROUP}"
    )
