"""A solver described as data, as stored in a lineage's settings and in certherd.toml.

A secret option (a TSIG key, an API token: the fields typed
:data:`certherd.schema.Secret`) is stored as a *reference* to where it comes from, never
as a copy, where the user gave one:

- ``{"env": "NAME"}``: the environment variable NAME of the process that renews;
- ``{"file": "/path"}``: the contents of a file (surrounding white space dropped);
- ``{"config": "/etc/certherd/certherd.toml"}``: the value written in certherd.toml,
  read again from it by every run;
- ``{"value": "..."}``: given on the command line only: kept in the lineage's settings
  file (mode 0600 in a 0700 folder), the one place it can be read from later.

In memory, ``options`` holds every value, secrets included once resolved
(:meth:`SolverSpec.resolve`); ``repr()``, :meth:`SolverSpec.to_json` and every printed
form show :data:`~certherd.schema.REDACTED` in place of a secret.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from certherd.errors import ConfigError
from certherd.schema import REDACTED, looks_secret

__all__ = ["SecretRef", "SolverSpec", "read_secret_file", "secret_ref"]

log = logging.getLogger(__name__)

Source = Literal["env", "file", "config", "value"]
SOURCES: tuple[Source, ...] = ("env", "file", "config", "value")
MAX_SECRET_FILE = 64 * 1024


@dataclass(frozen=True)
class SecretRef:
    """Where a secret option comes from: ``source`` and ``where`` (a variable name, a
    file path, certherd.toml's path; empty for ``value``)."""

    source: Source
    where: str = ""

    def describe(self) -> str:
        return {
            "env": f"the environment variable {self.where}",
            "file": f"the file {self.where}",
            "config": self.where or "certherd.toml",
            "value": "the lineage's settings file",
        }[self.source]

    def read(self, environ: Mapping[str, str], given: str | None, what: str) -> str:
        """The secret ``what`` from where it comes from: ``environ`` for ``env``, the
        file for ``file``; ``given`` is the value known for ``config`` (as the config
        file gives it now) and ``value`` (as stored). Raises :class:`ConfigError` naming
        ``what`` and the source, never the value."""
        if self.source == "env":
            value = environ.get(self.where)
            if not value:
                raise ConfigError(
                    f"{what} comes from {self.describe()}, which is not set: set it in "
                    "the environment of certherd"
                )
            return value
        if self.source == "file":
            return read_secret_file(self.where, what)
        if not given:
            if self.source == "config":
                raise ConfigError(
                    f"{what} comes from {self.describe()}, which no longer gives it: put "
                    "it back, or issue the lineage again"
                )
            raise ConfigError(f"{what} is missing from {self.describe()}: give it again")
        return given


@dataclass(frozen=True, eq=False, repr=False)
class SolverSpec:
    """One way to answer challenges, as data: ``kind`` (http, webroot, tls-alpn, dns,
    hook) with its options, for the names in ``names`` (empty: every name).

    ``secrets`` says, for each secret option, where it comes from; an option named there
    may be missing from ``options`` until :meth:`resolve` reads it. Two specs are equal
    when they would be stored alike (a resolved secret value does not count, a
    ``value`` secret does).
    """

    kind: str
    options: dict[str, str] = field(default_factory=dict)
    names: tuple[str, ...] = ()
    secrets: Mapping[str, SecretRef] = field(default_factory=dict)

    def _stored(self, reveal: bool) -> dict[str, Any]:
        options: dict[str, Any] = {}
        for key, value in self.options.items():
            if key not in self.secrets:
                options[key] = REDACTED if not reveal and looks_secret(key) else value
        for key, ref in self.secrets.items():
            if ref.source == "value":
                options[key] = {"value": self.options.get(key, "") if reveal else REDACTED}
            else:
                options[key] = {ref.source: ref.where}
        return {"kind": self.kind, "options": options, "names": list(self.names)}

    def to_json(self, *, reveal: bool = False) -> dict[str, Any]:
        """As stored (``reveal=True``: only for the lineage's 0600 settings file), or as
        shown (the default: secrets given as values are :data:`REDACTED`)."""
        return self._stored(reveal)

    @classmethod
    def from_json(cls, data: Any) -> SolverSpec:
        options: dict[str, str] = {}
        secrets: dict[str, SecretRef] = {}
        for key, value in dict(data.get("options", {})).items():
            if isinstance(value, dict):
                ref = secret_ref(f"solver option {key}", value)
                secrets[str(key)] = ref
                if ref.source == "value":
                    options[str(key)] = str(value["value"])
            else:
                options[str(key)] = str(value)
        return cls(
            kind=str(data["kind"]),
            options=options,
            names=tuple(str(n) for n in data.get("names", ())),
            secrets=secrets,
        )

    def resolve(
        self, environ: Mapping[str, str], configured: SolverSpec | None = None
    ) -> SolverSpec:
        """This spec with every secret read from where it comes from.

        ``configured`` is the same solver as certherd.toml gives it now (for ``config``
        references). Raises :class:`ConfigError` naming the option and its source, never
        the value.
        """
        if not self.secrets:
            return self
        options = dict(self.options)
        for key, ref in self.secrets.items():
            if ref.source == "value":
                continue
            given = configured.options.get(key) if configured is not None else None
            options[key] = ref.read(
                environ, given or self.options.get(key), f"{self.kind} solver: {key}"
            )
        return SolverSpec(self.kind, options, self.names, self.secrets)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SolverSpec):
            return NotImplemented
        return self._stored(True) == other._stored(True)

    def __hash__(self) -> int:
        stored = self._stored(True)
        return hash((self.kind, repr(sorted(stored["options"].items())), self.names))

    def __repr__(self) -> str:
        shown = self._stored(False)
        return f"SolverSpec(kind={self.kind!r}, options={shown['options']!r}, names={self.names!r})"


def secret_ref(key: str, value: Mapping[str, Any]) -> SecretRef:
    """The reference stored for secret ``key``: ``{"env": NAME}``, ``{"file": PATH}``,
    ``{"config": PATH}`` or ``{"value": ...}``; ConfigError for any other shape."""
    if len(value) != 1 or next(iter(value)) not in SOURCES:
        raise ConfigError(
            f'{key}: a secret is written {{ env = "NAME" }} or '
            f'{{ file = "/path" }}, not {sorted(value)}'
        )
    source, where = next(iter(value.items()))
    if not isinstance(where, str) or (source != "value" and not where):
        raise ConfigError(f"{key}: {source} must be a non-empty string")
    return SecretRef(SOURCES[SOURCES.index(source)], where if source != "value" else "")


def read_secret_file(path_text: str, what: str) -> str:
    """The secret in the file at ``path_text`` (its contents, surrounding white space dropped)."""
    path = Path(path_text).expanduser()
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_SECRET_FILE + 1)
            mode = os.fstat(handle.fileno()).st_mode
    except OSError as exc:
        raise ConfigError(
            f"{what} comes from the file {path}, which cannot be read: {exc.strerror or exc}"
        ) from None
    if len(raw) > MAX_SECRET_FILE:
        raise ConfigError(f"{what}: the file {path} is too large for a secret")
    try:
        text = raw.decode().strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{what}: the file {path} is not UTF-8 text") from None
    if not text:
        raise ConfigError(f"{what}: the file {path} is empty: write the secret into it")
    if stat.S_IMODE(mode) & 0o077:
        log.warning(
            "%s comes from %s, which users other than its owner may read: chmod 600 it",
            what,
            path,
        )
    return text
