"""The settings of one certificate: the one model every producer yields.

certherd.toml (:mod:`certherd.config`), the flags of ``certherd issue`` and the Certbot
import (:mod:`certherd.migrate`) each produce a :class:`LineageSettings`; the manager
stores it as ``renewal/<name>.json`` and ``renew`` repeats exactly what it says. It holds
everything about the certificate: its names and key, how the names are proved, the
hooks, and which CA and account obtain it (contact, terms of service, External Account
Binding), so a renewal can create the account the settings describe.

Secrets are *references* (:class:`~certherd.challenges.spec.SecretRef`): the EAB HMAC
key, like a solver's TSIG key, is stored as ``{"file": PATH}``, ``{"env": NAME}`` or
``{"config": certherd.toml}``, never as its value, unless it was given as a value (then
the settings file, mode 0600 in a 0700 folder, is the one place it can be read from
later). Every shown form (``repr()``, :meth:`LineageSettings.shown`) redacts it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from certherd.challenges.spec import SecretRef, SolverSpec, secret_ref
from certherd.errors import ConfigError, NotFoundError
from certherd.key_types import DEFAULT_KEY_TYPE
from certherd.schema import REDACTED
from certherd.storage.base import Lease, Storage
from certherd.storage.layout import renewal_settings
from certherd.storage.leases import held_lease

if TYPE_CHECKING:
    from certherd.acme.jws import ExternalAccountBinding

__all__ = [
    "CaSettings",
    "EabSettings",
    "HookSettings",
    "InstallerSettings",
    "LineageSettings",
    "NotifyTarget",
]

SCHEMA = 1
NOTIFY_TIMEOUT = 20.0
"""Seconds one message waits for its notify targets unless ``notify_timeout`` says."""
NOTIFY_TIMEOUTS = (1.0, 600.0)
"""The range ``notify_timeout`` may take."""
_PLAIN = ("str", "str | None", "bool")
"""The types of the settings stored as they are (JSON text, null or a boolean)."""


@dataclass(frozen=True)
class HookSettings:
    """User commands run around issuance: pre (before), post (after), deploy (on
    success), failure (when obtaining a certificate failed: for telling someone)."""

    pre: tuple[str, ...] = ()
    post: tuple[str, ...] = ()
    deploy: tuple[str, ...] = ()
    failure: tuple[str, ...] = ()


@dataclass(frozen=True)
class InstallerSettings:
    """The web server a lineage is installed into (docs/installers.md): ``kind``
    (``nginx``, ``apache``, ``haproxy``) and its options as text (nginx: ``server_root``,
    ``ctl``, ``https_port``, ``redirect``; haproxy: ``config``, ``crt_dir``, ``socket``,
    ``ctl``, ``https_port``); :func:`certherd.install.base.installer_for` checks them."""

    kind: str
    options: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "options": dict(self.options)}

    @classmethod
    def from_json(cls, data: Any) -> InstallerSettings:
        options = data.get("options") or {}
        return cls(str(data["kind"]), tuple(sorted((str(k), str(v)) for k, v in options.items())))


@dataclass(frozen=True, eq=False, repr=False)
class EabSettings:
    """External Account Binding (RFC 8555 §7.3.4): "the CA ... provides the ACME client
    with a MAC key and a key identifier"; here the key id, and where the MAC key comes
    from (``hmac_key``). ``value`` holds the key only when it was given as a value (or
    once resolved); it is never part of ``repr()`` nor of equality, only its source is.
    """

    kid: str
    hmac_key: SecretRef
    value: str = ""

    def to_json(self, *, reveal: bool = False) -> dict[str, Any]:
        """As stored (``reveal=True``: only for the lineage's 0600 settings file), or as
        shown (the default: a key given as a value is :data:`~certherd.schema.REDACTED`)."""
        if self.hmac_key.source == "value":
            key: dict[str, str] = {"value": self.value if reveal else REDACTED}
        else:
            key = {self.hmac_key.source: self.hmac_key.where}
        return {"kid": self.kid, "hmac_key": key}

    @classmethod
    def from_json(cls, data: Any) -> EabSettings:
        key = data["hmac_key"]
        if not isinstance(key, dict):
            raise ValueError("eab.hmac_key must be a reference like {'file': PATH}")
        ref = secret_ref("eab.hmac_key", key)
        return cls(str(data["kid"]), ref, str(key["value"]) if ref.source == "value" else "")

    def binding(
        self, environ: Mapping[str, str], configured: EabSettings | None = None
    ) -> ExternalAccountBinding:
        """The binding, its key read from where it comes from (``configured``: the same
        settings as certherd.toml gives them now, for a key written in the file).
        Raises :class:`ConfigError` naming the setting and its source, never the key."""
        from certherd.acme.jws import ExternalAccountBinding

        given = configured.value if configured is not None else None
        text = self.hmac_key.read(environ, given or self.value or None, "eab_hmac_key")
        return ExternalAccountBinding.from_b64url(self.kid, text)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EabSettings):
            return NotImplemented
        return self.to_json(reveal=True) == other.to_json(reveal=True)

    def __hash__(self) -> int:
        return hash(
            (self.kid, self.hmac_key, self.value if self.hmac_key.source == "value" else "")
        )

    def __repr__(self) -> str:
        return f"EabSettings(kid={self.kid!r}, hmac_key={self.to_json()['hmac_key']!r})"


@dataclass(frozen=True, eq=False, repr=False)
class NotifyTarget:
    """Where notifications go (:mod:`certherd.manager.notify`): an apprise URL
    (``mailto://user:password@host``, ``json://host/path``, ``slack://...``). A URL can
    carry a password or a token, so it is a secret: stored by reference (``url``: a
    file, a variable, certherd.toml), ``value`` only when given as a value (or once
    read), never shown."""

    url: SecretRef
    value: str = ""

    def to_json(self, *, reveal: bool = False) -> dict[str, str]:
        """As stored (``reveal=True``), or as shown (a value :data:`REDACTED`)."""
        if self.url.source == "value":
            return {"value": self.value if reveal else REDACTED}
        return {self.url.source: self.url.where}

    @classmethod
    def from_json(cls, data: Any) -> NotifyTarget:
        if not isinstance(data, dict):
            raise ValueError("notify entries must be references like {'file': PATH}")
        ref = secret_ref("notify", data)
        return cls(ref, str(data["value"]) if ref.source == "value" else "")

    def read(self, environ: Mapping[str, str], configured: NotifyTarget | None = None) -> str:
        """The URL, read from where it comes from (``configured``: the same target as
        certherd.toml gives it now). ConfigError naming the source, never the URL."""
        given = configured.value if configured is not None else None
        return self.url.read(environ, given or self.value or None, "notify URL")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NotifyTarget):
            return NotImplemented
        return (self.url, self.value if self.url.source == "value" else "") == (
            other.url,
            other.value if other.url.source == "value" else "",
        )

    def __hash__(self) -> int:
        return hash((self.url, self.value if self.url.source == "value" else ""))

    def __repr__(self) -> str:
        return f"NotifyTarget({self.to_json()!r})"


@dataclass(frozen=True)
class CaSettings:
    """One CA of a certificate and the account there: ``directory_url`` (its ACME
    directory), ``account`` (the account's name in storage; accounts are kept per CA,
    so each CA of a list has its own), ``ca_bundle`` (roots trusted for its HTTPS),
    ``allow_http`` (a plain-HTTP directory, for tests), and what a new account there is
    created with: ``email``, ``agree_tos`` and ``eab`` (its own External Account
    Binding: an EAB key belongs to one CA)."""

    directory_url: str
    account: str = "default"
    ca_bundle: str | None = None
    allow_http: bool = False
    email: str | None = None
    agree_tos: bool = False
    eab: EabSettings | None = None

    def as_fields(self) -> dict[str, Any]:
        """As keyword arguments of :class:`LineageSettings` (the first CA's fields)."""
        return {item.name: getattr(self, item.name) for item in fields(self)}

    def to_json(self, *, reveal: bool = False) -> dict[str, Any]:
        data = self.as_fields()
        data["eab"] = None if self.eab is None else self.eab.to_json(reveal=reveal)
        return data

    @classmethod
    def from_json(cls, data: Any) -> CaSettings:
        if not isinstance(data, dict):
            raise ValueError("every entry of fallback_cas must be an object")
        plain: dict[str, Any] = {
            item.name: bool(data[item.name]) if item.type == "bool" else str(data[item.name])
            for item in fields(cls)
            if item.type in _PLAIN and data.get(item.name) is not None
        }
        eab = data.get("eab")
        return cls(eab=None if eab is None else EabSettings.from_json(eab), **plain)


@dataclass(frozen=True)
class LineageSettings:
    """Everything about one certificate (a lineage), so ``renew`` can repeat it: what
    to obtain, how to prove the names, what to run, and which CA and account obtain it.

    The CA and account: ``directory_url`` (the CA's ACME directory), ``account`` (the
    name of the account at that CA in storage), ``ca_bundle`` (roots trusted for the
    CA's HTTPS), ``allow_http`` (a plain-HTTP directory, for tests), and what a new
    account is created with: ``email`` (its contact), ``agree_tos`` (the CA's terms of
    service accepted) and ``eab`` (External Account Binding, its key by reference).
    """

    name: str
    names: tuple[str, ...]
    directory_url: str
    solvers: tuple[SolverSpec, ...]
    account: str = "default"
    ca_bundle: str | None = None
    key_type: str = DEFAULT_KEY_TYPE
    reuse_key: bool = False
    profile: str | None = None
    preferred_chain: str | None = None
    hooks: HookSettings = HookSettings()
    allow_http: bool = False
    email: str | None = None
    agree_tos: bool = False
    eab: EabSettings | None = None
    notify: tuple[NotifyTarget, ...] = ()
    notify_expiry_days: int = 7
    notify_timeout: float = NOTIFY_TIMEOUT
    installer: InstallerSettings | None = None
    fallback_cas: tuple[CaSettings, ...] = ()

    @property
    def cas(self) -> tuple[CaSettings, ...]:
        """Every CA of the certificate, in the order they are tried: the first one
        (this object's own CA fields), then :attr:`fallback_cas`."""
        first = CaSettings(**{item.name: getattr(self, item.name) for item in fields(CaSettings)})
        return (first, *self.fallback_cas)

    def with_cas(self, cas: Sequence[CaSettings]) -> LineageSettings:
        """These settings with ``cas`` (at least one) as the ordered list of CAs."""
        if not cas:
            raise ValueError("a certificate needs at least one CA")
        return replace(self, **cas[0].as_fields(), fallback_cas=tuple(cas[1:]))

    def _document(self, *, reveal: bool) -> dict[str, Any]:
        data = asdict(self)
        data["solvers"] = [s.to_json(reveal=reveal) for s in self.solvers]
        data["names"] = list(self.names)
        data["hooks"] = {k: list(v) for k, v in asdict(self.hooks).items()}
        data["eab"] = None if self.eab is None else self.eab.to_json(reveal=reveal)
        data["notify"] = [target.to_json(reveal=reveal) for target in self.notify]
        data["installer"] = None if self.installer is None else self.installer.to_json()
        data["fallback_cas"] = [ca.to_json(reveal=reveal) for ca in self.fallback_cas]
        return data

    def to_json(self) -> bytes:
        """As stored in ``renewal/<name>.json``: secrets as references (or, given as
        values, as values: this file is written 0600 in a 0700 folder)."""
        data = self._document(reveal=True)
        data["schema"] = SCHEMA
        return json.dumps(data, indent=2, sort_keys=True).encode() + b"\n"

    def shown(self) -> dict[str, Any]:
        """As printed (``show --json``): every secret given as a value is redacted."""
        return self._document(reveal=False)

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> LineageSettings:
        """Read settings as stored; a setting the file does not have (written before
        it existed: the CA and account details came later than the rest) gets its
        default."""
        try:
            data = json.loads(raw)
            plain: dict[str, Any] = {  # text and flags: read as their type says
                item.name: bool(data[item.name]) if item.type == "bool" else str(data[item.name])
                for item in fields(cls)
                if item.type in _PLAIN and data.get(item.name) is not None
            }
            hooks = data.get("hooks") or {}
            eab = data.get("eab")
            installer = data.get("installer")
            return cls(
                names=tuple(str(n) for n in data["names"]),
                solvers=tuple(SolverSpec.from_json(s) for s in data.get("solvers", ())),
                hooks=HookSettings(**{k: tuple(map(str, v)) for k, v in hooks.items()}),
                eab=None if eab is None else EabSettings.from_json(eab),
                notify=tuple(NotifyTarget.from_json(t) for t in data.get("notify") or ()),
                notify_expiry_days=int(data.get("notify_expiry_days", 7)),
                notify_timeout=float(data.get("notify_timeout", NOTIFY_TIMEOUT)),
                installer=None if installer is None else InstallerSettings.from_json(installer),
                fallback_cas=tuple(CaSettings.from_json(c) for c in data.get("fallback_cas", ())),
                **plain,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            name = where.rsplit("/", 1)[-1].removesuffix(".json")
            raise ConfigError(
                f"{where} is damaged ({type(exc).__name__}: {exc}): restore it from a backup "
                f"or fix it by hand, or run `certherd delete {name}` and issue it again"
            ) from None

    @classmethod
    async def load(cls, storage: Storage, name: str) -> LineageSettings:
        key = renewal_settings(name)
        try:
            raw = await storage.read(key)
        except NotFoundError:
            raise NotFoundError(f"no lineage named {name!r}: see `certherd list`") from None
        return cls.from_json(raw, key)

    async def save(self, storage: Storage, *, fence: Lease | None = None) -> None:
        """Write the settings, carrying ``fence`` or else the lease this task holds on
        the lineage (:func:`~certherd.storage.leases.held_lease`), if any."""
        fence = fence or held_lease(self.name)
        await storage.write(renewal_settings(self.name), self.to_json(), fence=fence)

    def config_files(self) -> set[str]:
        """The config files (certherd.toml) that secrets of these settings are read from."""
        refs = [ref for spec in self.solvers for ref in spec.secrets.values()]
        refs += [ca.eab.hmac_key for ca in self.cas if ca.eab is not None]
        refs += [target.url for target in self.notify]
        return {ref.where for ref in refs if ref.source == "config" and ref.where}
