"""Typed configuration independent of the CLI: CA presets, the config-dir default, and
certherd.toml, checked on load against one schema (:class:`ConfigDocument`, msgspec)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from certherd.challenges.options import solver_spec
from certherd.challenges.spec import SecretRef, SolverSpec
from certherd.config._cas import CaList, CaTable, ca_list
from certherd.config._installer import InstallerTable, installer_settings, installer_solver
from certherd.config._where import Where, read_text, syntax_error
from certherd.config_dir import CONFIG_FILE, default_config_dir
from certherd.errors import ConfigError
from certherd.key_types import DEFAULT_KEY_TYPE, KeyTypeName
from certherd.schema import SchemaError, convert, dotted
from certherd.settings import (
    NOTIFY_TIMEOUT,
    NOTIFY_TIMEOUTS,
    EabSettings,
    HookSettings,
    LineageSettings,
    NotifyTarget,
)

__all__ = [
    "CA_PRESETS",
    "CONFIG_FILE",
    "CaPreset",
    "CaTable",
    "CertificateTable",
    "ConfigDocument",
    "ConfigFile",
    "DefaultsTable",
    "default_config_dir",
    "load_config_file",
    "resolve_directory_url",
]


@dataclass(frozen=True)
class CaPreset:
    """A well-known ACME CA: its directory and whether it needs External Account Binding."""

    name: str
    directory_url: str
    requires_eab: bool = False
    note: str = ""


CA_PRESETS: dict[str, CaPreset] = {
    preset.name: preset
    for preset in (
        CaPreset("letsencrypt", "https://acme-v02.api.letsencrypt.org/directory"),
        CaPreset("letsencrypt-staging", "https://acme-staging-v02.api.letsencrypt.org/directory"),
        CaPreset("zerossl", "https://acme.zerossl.com/v2/DV90", requires_eab=True),
        CaPreset("google", "https://dv.acme-v02.api.pki.goog/directory", requires_eab=True),
        CaPreset(
            "google-staging", "https://dv.acme-v02.test-api.pki.goog/directory", requires_eab=True
        ),
        CaPreset("sslcom", "https://acme.ssl.com/sslcom-dv-ecc", requires_eab=True),
        CaPreset("actalis", "https://acme-api.actalis.com/acme/directory", requires_eab=True),
    )
}
DEFAULT_CA = "letsencrypt"


def resolve_directory_url(server: str | None, ca: str | None) -> str:
    """``server`` (a directory URL) wins; else the preset ``ca``; else Let's Encrypt."""
    if server and ca:
        raise ConfigError(
            "give either {server} or {ca}, not both: remove one", settings=("server", "ca")
        )
    if server:
        return server
    name = (ca or DEFAULT_CA).lower()
    preset = CA_PRESETS.get(name)
    if preset is None:
        raise ConfigError(
            f"unknown CA {ca!r}: set "
            "{ca}"
            f" to one of {', '.join(CA_PRESETS)}, or give another CA's directory URL as "
            "{server}",
            settings=("ca", "server"),
        )
    return preset.directory_url


# -- certherd.toml ----------------------------------------------------------------------


Strings = str | list[str]
Options = dict[str, Any]
SecretText = str | dict[str, str]
"""A secret: its value (read again from this file by every run), or a reference,
``{ env = "NAME" }`` or ``{ file = "/path" }``."""


class DefaultsTable(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[defaults]``: what every certificate gets unless it says otherwise."""

    ca: CaList | None = None
    server: str | None = None
    ca_bundle: str | None = None
    email: str | None = None
    agree_tos: bool = False
    key_type: KeyTypeName | None = None
    account: str | None = None
    solver: str | None = None
    solver_options: Options | None = None
    deploy_hooks: Strings | None = None
    failure_hooks: Strings | None = None
    eab_kid: str | None = None
    eab_hmac_key_file: str | None = None
    eab_hmac_key: SecretText | None = None
    notify: list[SecretText] | None = None
    notify_expiry_days: int | None = None
    notify_timeout: float | None = None


class CertificateTable(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One ``[[certificate]]``; a setting left out (None) comes from ``[defaults]``."""

    domains: Strings
    name: str | None = None
    solver: str | None = None
    solver_options: Options | None = None
    solvers: list[Options] | None = None
    key_type: KeyTypeName | None = None
    profile: str | None = None
    preferred_chain: str | None = None
    reuse_key: bool = False
    pre_hooks: Strings | None = None
    post_hooks: Strings | None = None
    deploy_hooks: Strings | None = None
    failure_hooks: Strings | None = None
    ca: CaList | None = None
    server: str | None = None
    ca_bundle: str | None = None
    email: str | None = None
    agree_tos: bool | None = None
    account: str | None = None
    eab_kid: str | None = None
    eab_hmac_key_file: str | None = None
    eab_hmac_key: SecretText | None = None
    notify: list[SecretText] | None = None
    notify_expiry_days: int | None = None
    notify_timeout: float | None = None
    installer: InstallerTable | None = None


class ConfigDocument(msgspec.Struct, forbid_unknown_fields=True):
    """The whole of certherd.toml: the one schema it is checked against on load (each
    solver's options are then checked against their kind's schema)."""

    defaults: DefaultsTable = msgspec.field(default_factory=DefaultsTable)
    certificate: list[CertificateTable] = msgspec.field(default_factory=list)


@dataclass(frozen=True)
class ConfigFile:
    """certherd.toml: the settings of every certificate it describes (the defaults
    applied: each carries its CA and account too).

    ``warnings`` are for the user (secrets in a file other users can read)."""

    path: Path
    certificates: tuple[LineageSettings, ...]
    warnings: tuple[str, ...] = ()


def _tuple(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


class _Loader:
    """Turns the checked document into :class:`~certherd.settings.LineageSettings`."""

    def __init__(self, path: Path, where: Where, document: ConfigDocument) -> None:
        self.where = where
        self.defaults = document.defaults
        self.inline = SecretRef("config", str(path))
        self._default_solvers: tuple[SolverSpec, ...] | None = None
        self.secret_paths: list[str] = []

    def fail(self, message: str, path: tuple[str | int, ...]) -> ConfigError:
        return self.where.error(message, self.where.line(path))

    def spec(
        self,
        kind: str,
        options: dict[str, Any],
        names: tuple[str, ...],
        kind_path: tuple[str | int, ...],
        options_path: tuple[str | int, ...],
    ) -> SolverSpec:
        try:
            spec = solver_spec(kind, options, names, strict=True, inline=self.inline)
        except SchemaError as err:
            located = SchemaError(kind_path, err.reason) if err.path == ("kind",) else None
            raise self.where.schema_error(located or err.below(options_path)) from None
        self.secret_paths += [
            dotted((*options_path, key))
            for key, ref in spec.secrets.items()
            if ref.source == "config"
        ]
        return spec

    def solvers(self, entry: CertificateTable, block: int) -> tuple[SolverSpec, ...]:
        at: tuple[str | int, ...] = ("certificate", block)
        if entry.solvers is not None:
            specs = []
            for index, item in enumerate(entry.solvers):
                item_at = (*at, "solvers", index)
                kind = item.get("kind")
                if not isinstance(kind, str):
                    raise self.fail(
                        'every solver needs kind = "http" (or webroot, tls-alpn, dns, hook)',
                        (*at, "solvers"),
                    )
                names = item.get("names", [])
                names = [names] if isinstance(names, str) else names
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    raise self.fail(
                        f"{dotted((*item_at, 'names'))} must be a list of names, like "
                        '["*.example.com"]',
                        (*item_at, "names"),
                    )
                own = {k: v for k, v in item.items() if k not in ("kind", "names")}
                specs.append(self.spec(kind, own, tuple(names), (*item_at, "kind"), item_at))
            return tuple(specs)
        if entry.solver is None and entry.solver_options is None:
            if self._default_solvers is None:  # checked once for every block that inherits
                self._default_solvers = self.default_solvers(block)
            return self._default_solvers
        kind, kind_at = entry.solver, (*at, "solver")
        if kind is None:
            kind, kind_at = self.defaults.solver, ("defaults", "solver")
        if kind is None:
            raise self.fail(
                'say how to prove the names: add solver = "http" (or webroot, tls-alpn, dns, hook)',
                at,
            )
        options: Options | None = entry.solver_options
        options_at = (*at, "solver_options")
        if options is None:
            options, options_at = self.defaults.solver_options, ("defaults", "solver_options")
        return (self.spec(kind, options or {}, (), kind_at, options_at),)

    def default_solvers(self, block: int) -> tuple[SolverSpec, ...]:
        if self.defaults.solver is None:
            raise self.fail(
                'say how to prove the names: add solver = "http" (or webroot, tls-alpn, dns, hook)',
                ("certificate", block),
            )
        options = self.defaults.solver_options or {}
        return (
            self.spec(
                self.defaults.solver,
                options,
                (),
                ("defaults", "solver"),
                ("defaults", "solver_options"),
            ),
        )

    def eab(self, entry: CertificateTable, block: int) -> EabSettings | None:
        """External Account Binding: a certificate's own (kid and key together) wins over
        the defaults; the key by reference, or written here (then read again from here)."""
        own = (entry.eab_kid, entry.eab_hmac_key_file, entry.eab_hmac_key) != (None,) * 3
        values: CertificateTable | DefaultsTable = entry if own else self.defaults
        at: tuple[str | int, ...] = ("certificate", block) if own else ("defaults",)
        return self.parse_eab(values, at, "[[certificate]]" if own else "[defaults]")

    def parse_eab(
        self,
        values: CertificateTable | DefaultsTable | CaTable,
        at: tuple[str | int, ...],
        table: str,
    ) -> EabSettings | None:
        """The EAB written in ``values`` (a table at ``at``, called ``table`` in errors)."""
        kid, key_file, key = values.eab_kid, values.eab_hmac_key_file, values.eab_hmac_key
        if key_file is not None and key is not None:
            raise self.fail(
                "give either eab_hmac_key_file or eab_hmac_key, not both: remove one",
                (*at, "eab_hmac_key"),
            )
        if not kid and key_file is None and key is None:
            return None
        if not kid:
            raise self.fail(
                f'set eab_kid = "..." (the key id your CA gave with the HMAC key) in {table}',
                (*at, "eab_hmac_key_file" if key_file is not None else "eab_hmac_key"),
            )
        if key_file is not None:
            if not key_file:
                raise self.fail(
                    "eab_hmac_key_file must be the path of a file", (*at, "eab_hmac_key_file")
                )
            return EabSettings(kid, SecretRef("file", key_file))
        if key is None:
            raise self.fail(
                f'set eab_hmac_key_file = "/path" (the file holding the HMAC key your CA '
                f"gave) next to eab_kid in {table}",
                (*at, "eab_kid"),
            )
        key_at = (*at, "eab_hmac_key")
        if isinstance(key, dict):
            source, where = next(iter(key.items())) if len(key) == 1 else ("", "")
            if source not in ("env", "file") or not where.strip():
                raise self.fail(
                    f"{dotted(key_at)}: a secret by reference is "
                    '{ env = "VARIABLE" } or { file = "/path/to/file" }',
                    key_at,
                )
            return EabSettings(kid, SecretRef("env" if source == "env" else "file", where.strip()))
        from certherd.acme.jws import ExternalAccountBinding

        try:  # checked now, as the CA would: a typo costs no newAccount request
            ExternalAccountBinding.from_b64url(kid, key)
        except ConfigError:
            raise self.fail(
                f"{dotted(key_at)} is not base64url: copy the key exactly as your CA shows it",
                key_at,
            ) from None
        self.secret_paths.append(dotted(key_at))
        return EabSettings(kid, self.inline, key.strip())

    def notify(self, entry: CertificateTable, block: int) -> tuple[NotifyTarget, ...]:
        """Where notifications go: a certificate's own list (``[]``: nowhere) wins over
        the defaults. A URL may hold a password or a token: written here it is stored
        as a reference to this file; ``{ env = "NAME" }`` or ``{ file = "/path" }``
        keep it out of the file."""
        own = entry.notify is not None
        urls = entry.notify if own else self.defaults.notify
        at: tuple[str | int, ...] = ("certificate", block) if own else ("defaults",)
        at = (*at, "notify")
        targets = []
        for index, url in enumerate(urls or ()):
            item_at = (*at, index)
            if isinstance(url, dict):
                source, where = next(iter(url.items())) if len(url) == 1 else ("", "")
                if source not in ("env", "file") or not where.strip():
                    raise self.fail(
                        f"{dotted(item_at)}: a URL by reference is "
                        '{ env = "VARIABLE" } or { file = "/path/to/file" }',
                        item_at,
                    )
                ref = SecretRef("env" if source == "env" else "file", where.strip())
                targets.append(NotifyTarget(ref))
                continue
            scheme, separator, rest = url.strip().partition("://")
            if not separator or not scheme.isascii() or not scheme.isalnum() or not rest:
                raise self.fail(
                    f"{dotted(item_at)} is not a notification URL: write one as apprise "
                    'reads it, like "mailto://user:password@mail.example.com" or '
                    '"json://hooks.example.com/certherd"',
                    item_at,
                )
            self.secret_paths.append(dotted(item_at))
            targets.append(NotifyTarget(self.inline, url.strip()))
        return tuple(targets)

    def expiry_days(self, entry: CertificateTable, block: int) -> int:
        """``notify_expiry_days``: tell when the certificate expires within so many days."""
        own = entry.notify_expiry_days is not None
        days = entry.notify_expiry_days if own else self.defaults.notify_expiry_days
        if days is None:
            return 7
        if not 1 <= days <= 60:
            at: tuple[str | int, ...] = ("certificate", block) if own else ("defaults",)
            raise self.fail(
                f"{dotted((*at, 'notify_expiry_days'))} must be a number of days from 1 to 60",
                (*at, "notify_expiry_days"),
            )
        return days

    def notify_timeout(self, entry: CertificateTable, block: int) -> float:
        """``notify_timeout``: seconds one message waits for its targets."""
        own = entry.notify_timeout is not None
        seconds = entry.notify_timeout if own else self.defaults.notify_timeout
        if seconds is None:
            return NOTIFY_TIMEOUT
        if not NOTIFY_TIMEOUTS[0] <= seconds <= NOTIFY_TIMEOUTS[1]:
            at: tuple[str | int, ...] = ("certificate", block) if own else ("defaults",)
            low, high = NOTIFY_TIMEOUTS
            raise self.fail(
                f"{dotted((*at, 'notify_timeout'))} must be a number of seconds from "
                f"{low:g} to {high:g}",
                (*at, "notify_timeout"),
            )
        return float(seconds)


def load_config_file(path: Path) -> ConfigFile:
    """Read and check certherd.toml against :class:`ConfigDocument` and each solver's
    schema; every error is one line naming the file, the line, the key path and the fix."""
    import tomllib

    from certherd.names import canonical_names
    from certherd.storage.layout import check_name, lineage_for

    text = read_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise syntax_error(path, text, exc) from None
    where = Where(path, text)
    try:
        document = convert(data, ConfigDocument, strict=True)
    except SchemaError as err:
        raise where.schema_error(err) from None
    loader = _Loader(path, where, document)
    defaults = document.defaults
    _check_email(loader, defaults.email, ("defaults", "email"))
    certificates: list[LineageSettings] = []
    seen: set[str] = set()
    for block, entry in enumerate(document.certificate):
        at: tuple[str | int, ...] = ("certificate", block)
        if not _tuple(entry.domains):
            raise loader.fail("domains is empty: list at least one name", (*at, "domains"))
        try:  # as the CA will judge them (certherd.names): a typo costs no order
            domains = canonical_names(_tuple(entry.domains))
        except ConfigError as exc:
            raise loader.fail(f"{dotted((*at, 'domains'))}: {exc}", (*at, "domains")) from None
        try:
            lineage = check_name(entry.name) if entry.name is not None else lineage_for(domains[0])
        except ConfigError as exc:
            named = "name" if entry.name is not None else "domains"
            raise loader.fail(str(exc), (*at, named)) from None
        if lineage in seen:
            raise loader.fail(
                f'two certificates are named {lineage!r}: give one a name = "..."', at
            )
        seen.add(lineage)
        _check_email(loader, entry.email, (*at, "email"))
        cas = ca_list(loader, entry, block)
        certificates.append(
            LineageSettings(
                name=lineage,
                names=domains,
                solvers=(solver,)
                if entry.installer is not None
                and (solver := installer_solver(entry.installer)) is not None
                and (entry.solver, entry.solvers, entry.solver_options) == (None, None, None)
                else loader.solvers(entry, block),
                installer=installer_settings(entry.installer),
                **cas[0].as_fields(),
                fallback_cas=cas[1:],
                key_type=entry.key_type or defaults.key_type or DEFAULT_KEY_TYPE,
                reuse_key=entry.reuse_key,
                profile=entry.profile,
                preferred_chain=entry.preferred_chain,
                hooks=HookSettings(
                    pre=_tuple(entry.pre_hooks),
                    post=_tuple(entry.post_hooks),
                    deploy=_tuple(_first(entry.deploy_hooks, defaults.deploy_hooks)),
                    failure=_tuple(_first(entry.failure_hooks, defaults.failure_hooks)),
                ),
                notify=loader.notify(entry, block),
                notify_expiry_days=loader.expiry_days(entry, block),
                notify_timeout=loader.notify_timeout(entry, block),
            )
        )
    return ConfigFile(
        path=path,
        certificates=tuple(certificates),
        warnings=_exposure(path, sorted(set(loader.secret_paths))),
    )


V = TypeVar("V")


def _first(own: V | None, default: V | None) -> V | None:
    return own if own is not None else default


def _exposure(path: Path, secret_paths: list[str]) -> tuple[str, ...]:
    """A warning when the file holds secrets and users other than its owner can read it."""
    if not secret_paths:
        return ()
    try:
        mode = path.stat().st_mode
    except OSError:
        return ()
    if not mode & 0o077:
        return ()
    shown = ", ".join(secret_paths[:3]) + (" ..." if len(secret_paths) > 3 else "")
    return (
        f"{path} holds secrets ({shown}) and other users can read it: chmod 600 it, or "
        'give them as { file = "/path" } or { env = "NAME" }',
    )


def _check_email(loader: _Loader, email: str | None, path: tuple[str | int, ...]) -> None:
    """An account contact the CA would refuse (after an account lookup) fails on load."""
    if not email:
        return
    from certherd.acme.client import contact_uris  # loaded only when an address is set

    try:
        contact_uris([email])
    except ConfigError:
        raise loader.fail(
            f"{dotted(path)}: {email!r} is not an e-mail address: write NAME@DOMAIN", path
        ) from None
