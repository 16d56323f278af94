"""The options of each solver kind, as typed schemas, and :func:`solver_spec` that checks
options (from certherd.toml or from command-line flags) and makes a :class:`SolverSpec`.

Kinds and their options (see :mod:`certherd.challenges.factory` for what they do):

- ``http``      ``listen = "[ADDR:]PORT"`` (default 80);
- ``webroot``   ``path = "DIR"``;
- ``tls-alpn``  ``listen = "[ADDR:]PORT"`` (default 443);
- ``dns``       ``provider``, ``propagation_timeout``, ``propagation_interval``,
  ``resolver``, plus the settings of that DNS provider (each provider's own schema);
- ``hook``      ``challenge``, ``command``, ``timeout``;
- ``nginx``     ``server_root`` (default /etc/nginx), ``ctl`` (default nginx): http-01
  through the running nginx (built by :mod:`certherd.app`: the installer sits above);
- ``apache``    ``server_root`` (default /etc/apache2), ``ctl`` (default apache2ctl):
  http-01 through the running Apache (built by :mod:`certherd.app`, likewise);
- ``fleet``     ``challenge`` (``http-01``, the default, or ``tls-alpn-01``): the key
  authorization goes into the shared storage and every node run with ``--http-serve`` /
  ``--tls-alpn-serve`` answers it (:mod:`certherd.challenges.shared`, built by
  :mod:`certherd.app`, which holds the storage).

Light on purpose: loading certherd.toml imports this module, not the solvers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from certherd.addresses import split_host_port
from certherd.challenges.spec import SecretRef, SolverSpec
from certherd.errors import ConfigError, refuse_text
from certherd.schema import SchemaError, convert, looks_secret, secret_fields

__all__ = [
    "KINDS",
    "SCHEMAS",
    "ApacheOptions",
    "DnsSolverOptions",
    "FleetOptions",
    "HookOptions",
    "HttpOptions",
    "NginxOptions",
    "TlsAlpnOptions",
    "WebrootOptions",
    "parse_listen_address",
    "parse_resolver",
    "solver_from_table",
    "solver_spec",
]

Seconds = Annotated[float, msgspec.Meta(gt=0)]
SecondsOrZero = Annotated[float, msgspec.Meta(ge=0)]
SECRET_PLACEHOLDER = "secret-given-by-reference"  # noqa: S105 (a stand-in, no secret)


def parse_listen_address(text: str, default_host: str = "") -> tuple[str, int]:
    """``PORT``, ``ADDR:PORT`` or ``[V6]:PORT`` to (host, port); '' host means all."""
    return split_host_port(text, what="listen address", default_host=default_host)


def parse_resolver(text: str) -> tuple[str, int]:
    """``ADDR``, ``ADDR:PORT`` or ``[V6]:PORT`` to (address, port); port 53 by default."""
    return split_host_port(text, what="resolver", default_port=53)


def _check(parse: Any, text: str) -> None:
    """Run a parser in ``__post_init__``: msgspec reports a ValueError with its path."""
    try:
        parse(text)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


class HttpOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``http``: certherd's own http-01 server."""

    listen: str | int = "80"

    def __post_init__(self) -> None:
        _check(parse_listen_address, str(self.listen))


class TlsAlpnOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``tls-alpn``: certherd's own tls-alpn-01 server."""

    listen: str | int = "443"

    def __post_init__(self) -> None:
        _check(parse_listen_address, str(self.listen))


class WebrootOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``webroot``: files under the web server's document root."""

    path: str

    def __post_init__(self) -> None:
        if not self.path.strip():
            raise ValueError('webroot path is empty: give the folder, like "/var/www/html"')


class HookOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``hook``: a program answers the challenge (``COMMAND present|cleanup``)."""

    command: str
    challenge: str = "http-01"
    timeout: Seconds = 120.0

    def __post_init__(self) -> None:
        if not self.command.strip():
            raise ValueError("hook command is empty: give the path of a program")
        if not self.challenge.strip() or "\0" in self.challenge:
            raise ValueError("hook challenge type is empty: write http-01, dns-01, ...")


class DnsSolverOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``dns``: the solver's own options; the rest are the provider's settings."""

    provider: str
    propagation_timeout: SecondsOrZero | None = None
    propagation_interval: Seconds | None = None
    resolver: str | None = None

    def __post_init__(self) -> None:
        if not self.provider.strip():
            raise ValueError("the DNS provider is empty: rfc2136, exec, or a lexicon provider")
        if self.resolver is not None:
            _check(parse_resolver, self.resolver)


class NginxOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``nginx``: http-01 answered through the running nginx (docs/installers.md)."""

    server_root: str = "/etc/nginx"
    ctl: str = "nginx"

    def __post_init__(self) -> None:
        if not self.server_root.strip() or not self.ctl.strip():
            raise ValueError("nginx server_root and ctl must not be empty")


class FleetOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``fleet``: the key authorization in the shared storage, answered by any node."""

    challenge: str = "http-01"

    def __post_init__(self) -> None:
        if self.challenge not in ("http-01", "tls-alpn-01"):
            raise ValueError(
                f"the fleet solver answers http-01 or tls-alpn-01, not {self.challenge[:40]!r}"
            )


class ApacheOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``apache``: http-01 answered through the running Apache (docs/installers.md)."""

    server_root: str = "/etc/apache2"
    ctl: str = "apache2ctl"

    def __post_init__(self) -> None:
        if not self.server_root.strip() or not self.ctl.strip():
            raise ValueError("apache server_root and ctl must not be empty")


SCHEMAS: Mapping[str, type[msgspec.Struct]] = {
    "http": HttpOptions,
    "webroot": WebrootOptions,
    "tls-alpn": TlsAlpnOptions,
    "dns": DnsSolverOptions,
    "hook": HookOptions,
    "nginx": NginxOptions,
    "apache": ApacheOptions,
    "fleet": FleetOptions,
}
KINDS = tuple(SCHEMAS)
DNS_OWN = frozenset(DnsSolverOptions.__struct_fields__)


def solver_spec(
    kind: str,
    options: Mapping[str, Any],
    names: tuple[str, ...] = (),
    *,
    strict: bool = True,
    inline: SecretRef | None = None,
) -> SolverSpec:
    """Check ``options`` against the schema of ``kind`` (and of its DNS provider) and
    return the spec.

    ``strict``: TOML values must have their exact types; with ``strict=False`` (flags)
    text like ``"30"`` may stand for a number. A secret may be given as a reference
    (``{"env": NAME}`` or ``{"file": PATH}``); one given as a value is recorded as
    coming from ``inline`` (certherd.toml, or ``SecretRef("value")`` for a flag).
    Raises :class:`SchemaError` with the key path inside ``options`` (``("kind",)`` for
    an unknown kind).
    """
    schema = SCHEMAS.get(kind)
    if schema is None:
        raise SchemaError(("kind",), f"unknown solver {kind!r}: use one of {', '.join(KINDS)}")
    references: dict[str, SecretRef] = {}
    values: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, Mapping):
            references[key] = _reference(key, value)
            values[key] = SECRET_PLACEHOLDER
        else:
            values[key] = value
    secrets: frozenset[str]
    if kind == "dns":
        own = {k: v for k, v in values.items() if k in DNS_OWN}
        checked = convert(own, DnsSolverOptions, strict=strict, what="the dns solver")
        settings = {k: v for k, v in values.items() if k not in DNS_OWN}
        from certherd.dns.registry import check_settings

        secrets = check_settings(checked.provider, settings, strict=strict)
    else:
        convert(values, schema, strict=strict, what=f"the {kind} solver")
        secrets = secret_fields(schema)
    for key in references:
        if key not in secrets:
            raise SchemaError(
                (key,),
                f"is not a secret setting: write its value (only {_names(secrets)} may be "
                "given as { env = ... } or { file = ... })",
            )
    sources = dict(references)
    if inline is not None:
        for key in values:
            if key in secrets and key not in references:
                sources[key] = inline
    text = {k: _text(v) for k, v in values.items() if k not in references}
    return SolverSpec(kind, text, names, sources)


def solver_from_table(table: SolverSpec | Mapping[str, Any]) -> SolverSpec:
    """A solver a program gives as a table, as in certherd.toml's ``solvers``
    (``{"kind": "http", "listen": "80"}``, ``names`` for some names only), checked
    against its kind's schema; a secret given as a value is kept as one. A
    :class:`SolverSpec` is returned as it is. ConfigError names what is wrong."""
    if isinstance(table, SolverSpec):
        return table
    options = dict(table)
    kind = options.pop("kind", None)
    names = options.pop("names", ())
    refuse_text(names, "a solver's names")
    if not isinstance(kind, str):
        raise ConfigError('every solver needs kind = "http" (or webroot, tls-alpn, dns, hook)')
    try:
        return solver_spec(kind, options, tuple(names), strict=False, inline=SecretRef("value"))
    except SchemaError as err:
        raise ConfigError(f"solver {kind!r}: {err}") from None


def _reference(key: str, value: Mapping[str, Any]) -> SecretRef:
    if len(value) == 1:
        source, where = next(iter(value.items()))
        if source in ("env", "file") and isinstance(where, str) and where.strip():
            if source == "env" and not where.replace("_", "").isalnum():
                raise SchemaError(
                    (key, "env"), "must be the name of an environment variable, like TSIG_KEY"
                )
            return SecretRef("env" if source == "env" else "file", where.strip())
    raise SchemaError(
        (key,),
        'a secret by reference is { env = "VARIABLE" } or { file = "/path/to/file" }',
    )


def _names(secrets: frozenset[str]) -> str:
    return ", ".join(sorted(secrets)) or "secret settings"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def secret_option_names(spec: SolverSpec) -> frozenset[str]:
    """The options of ``spec`` that are secret: referenced, or named like a secret."""
    return frozenset(spec.secrets) | frozenset(k for k in spec.options if looks_secret(k))
