"""Typed configuration independent of the CLI: CA presets and the config-dir default."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certherd.challenges.spec import SolverSpec
from certherd.errors import ConfigError

__all__ = [
    "CA_PRESETS",
    "CONFIG_FILE",
    "CaPreset",
    "CertificateConfig",
    "ConfigFile",
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
    """``--server URL`` wins; else ``--ca NAME``; else Let's Encrypt."""
    if server and ca:
        raise ConfigError("give either --server or --ca, not both")
    if server:
        return server
    name = (ca or DEFAULT_CA).lower()
    preset = CA_PRESETS.get(name)
    if preset is None:
        raise ConfigError(
            f"unknown CA {ca!r}: choose one of {', '.join(CA_PRESETS)} or --server URL"
        )
    return preset.directory_url


def default_config_dir() -> Path:
    """``$CERTHERD_DIR``, else /etc/certherd for root, else the user's config dir."""
    explicit = os.environ.get("CERTHERD_DIR")
    if explicit:
        return Path(explicit)
    if os.geteuid() == 0:
        return Path("/etc/certherd")
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "certherd"


# -- certherd.toml ----------------------------------------------------------------------

CONFIG_FILE = "certherd.toml"
_CERT_KEYS = {
    "name",
    "domains",
    "solver",
    "solver_options",
    "solvers",
    "key_type",
    "profile",
    "preferred_chain",
    "reuse_key",
    "pre_hooks",
    "post_hooks",
    "deploy_hooks",
    "failure_hooks",
    "ca",
    "server",
    "ca_bundle",
    "email",
    "account",
}
_DEFAULT_KEYS = {
    "ca",
    "server",
    "ca_bundle",
    "email",
    "agree_tos",
    "key_type",
    "account",
    "solver",
    "solver_options",
    "deploy_hooks",
    "failure_hooks",
    "eab_kid",
    "eab_hmac_key_file",
}
_KEY_TYPES = ("ec256", "ec384", "rsa2048", "rsa3072", "rsa4096")


@dataclass(frozen=True)
class CertificateConfig:
    """One ``[[certificate]]`` of certherd.toml, with the defaults applied."""

    lineage: str
    domains: tuple[str, ...]
    directory_url: str
    solvers: tuple[SolverSpec, ...]
    key_type: str = "ec256"
    profile: str | None = None
    preferred_chain: str | None = None
    reuse_key: bool = False
    ca_bundle: str | None = None
    email: str | None = None
    account: str = "default"
    pre_hooks: tuple[str, ...] = ()
    post_hooks: tuple[str, ...] = ()
    deploy_hooks: tuple[str, ...] = ()
    failure_hooks: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConfigFile:
    """certherd.toml: defaults for the CA and account, and the certificates wanted."""

    path: Path
    certificates: tuple[CertificateConfig, ...]
    agree_tos: bool = False
    eab_kid: str | None = None
    eab_hmac_key_file: str | None = None


class _Where:
    """Error messages that name the file, the line and the fix.

    Lines are found in the text itself (tomllib keeps no positions): a key is looked up
    only inside its own table, the ``block``-th ``[[certificate]]`` or ``[defaults]``.
    """

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        self._headers: dict[str, list[int]] = {}
        self._keys: dict[int, dict[str, int]] = {}

    def header(self, name: str, occurrence: int = 0) -> int | None:
        """The line of the ``occurrence``-th ``[name]`` or ``[[name]]`` header."""
        found = self._headers.get(name)
        if found is None:  # one scan per table name, not per lookup: files of 10,000 blocks
            pattern = re.compile(rf"^\s*\[\[?\s*[\"']?{re.escape(name)}[\"']?\s*[\].]")
            found = [n for n, line in enumerate(self.lines, 1) if pattern.match(line)]
            self._headers[name] = found
        return found[occurrence] if occurrence < len(found) else None

    def key(self, key: str, table: str | None = None, occurrence: int = 0) -> int | None:
        """The line setting ``key`` in a table (None: before the first table), else the
        table's header line."""
        start = self.header(table, occurrence) if table else 0
        if start is None:
            return None
        keys = self._keys.get(start)
        if keys is None:  # one scan per table, then every lookup in it is a dict get
            keys = {}
            for number in range(start + 1, len(self.lines) + 1):
                line = self.lines[number - 1]
                if _TABLE_HEADER.match(line):
                    break
                found = _KEY.match(line)
                if found:
                    keys.setdefault(found["key"], number)
            self._keys[start] = keys
        return keys.get(key) or start or None

    def error(self, message: str, line: int | None) -> ConfigError:
        where = f"{self.path}:{line}" if line else str(self.path)
        return ConfigError(f"{where}: {message}")


_TABLE_HEADER = re.compile(r"^\s*\[")
_KEY = re.compile(r"^\s*[\"']?(?P<key>[^\"'=.\s]+)[\"']?\s*[=.]")
_TOML_POSITION = re.compile(
    r"^(?P<reason>.*) \(at (?:line (?P<line>\d+), column (?P<column>\d+)|end of document)\)$"
)


def _syntax_error(path: Path, text: str, exc: Exception) -> ConfigError:
    match = _TOML_POSITION.match(str(exc))
    if match is None:
        return ConfigError(f"{path}: not valid TOML: {exc}: fix the syntax (see https://toml.io)")
    line = match["line"] or str(max(1, len(text.splitlines())))
    column = f" at column {match['column']}" if match["column"] else " at the end"
    return ConfigError(
        f"{path}:{line}: not valid TOML: {match['reason']}{column}: "
        "fix the syntax on that line (see https://toml.io)"
    )


def _strings(value: Any, key: str, line: int | None, where: _Where) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise where.error(f'{key} must be a string or a list of strings, like ["..."]', line)


def _setting(
    key: str, entry: dict[str, Any], defaults: dict[str, Any], where: _Where, block: int
) -> tuple[Any, int | None]:
    """The value of ``key`` for this certificate (its own, else the default) and its line."""
    if key in entry:
        return entry[key], where.key(key, "certificate", block)
    return defaults.get(key), where.key(key, "defaults")


def _solvers(
    entry: dict[str, Any], defaults: dict[str, Any], where: _Where, block: int
) -> tuple[SolverSpec, ...]:
    if "solvers" in entry:
        raw = entry["solvers"]
        line = where.key("solvers", "certificate", block)
        if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
            raise where.error('solvers must be a list of tables like {kind = "http"}', line)
        specs = []
        for item in raw:
            kind = item.get("kind")
            if not isinstance(kind, str):
                raise where.error(
                    'every solver needs kind = "http" (or webroot, tls-alpn, dns, hook)', line
                )
            names = _strings(item.get("names", []), "names", line, where)
            options = {str(k): str(v) for k, v in item.items() if k not in ("kind", "names")}
            specs.append(SolverSpec(kind, options, names))
        return tuple(specs)
    kind, _ = _setting("solver", entry, defaults, where, block)
    if not isinstance(kind, str):
        raise where.error(
            'say how to prove the names: add solver = "http" (or webroot, tls-alpn, dns, hook)',
            where.header("certificate", block),
        )
    options, line = _setting("solver_options", entry, defaults, where, block)
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise where.error('solver_options must be a table, like { root = "/var/www" }', line)
    return (SolverSpec(kind, {str(k): str(v) for k, v in options.items()}),)


def _directory_url(
    entry: dict[str, Any], defaults: dict[str, Any], where: _Where, block: int
) -> str:
    """``server`` wins over ``ca``; a certificate's own choice wins over the defaults."""
    for table, values, occurrence in (("certificate", entry, block), ("defaults", defaults, 0)):
        if "server" in values and "ca" in values:
            raise where.error(
                'give either server = "URL" or ca = "NAME", not both: remove one',
                where.key("server", table, occurrence),
            )
    own = "server" in entry or "ca" in entry
    values, table, occurrence = (entry, "certificate", block) if own else (defaults, "defaults", 0)
    if "server" in values:
        server = values["server"]
        if not isinstance(server, str) or not server:
            raise where.error(
                'server must be a directory URL, like "https://acme.example/directory"',
                where.key("server", table, occurrence),
            )
        return server
    name = values.get("ca", DEFAULT_CA)
    preset = CA_PRESETS.get(name.lower()) if isinstance(name, str) else None
    if preset is None:
        raise where.error(
            f"unknown CA {name!r}: use one of {', '.join(CA_PRESETS)}, "
            'or server = "URL" for another CA',
            where.key("ca", table, occurrence),
        )
    return preset.directory_url


def load_config_file(path: Path) -> ConfigFile:
    """Read and check certherd.toml; every error names the file, the line and the fix."""
    import tomllib

    from certherd.storage.layout import check_name, lineage_for

    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(path, text, exc) from None
    where = _Where(path, text)
    unknown_top = set(data) - {"defaults", "certificate"}
    if unknown_top:
        name = sorted(unknown_top)[0]
        raise where.error(
            f"unknown section {name!r}: use [defaults] and [[certificate]]",
            where.header(name) or where.key(name),
        )
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise where.error(
            "defaults must be a table: write a [defaults] section", where.key("defaults")
        )
    for key in defaults:
        if key not in _DEFAULT_KEYS:
            raise where.error(
                f"unknown setting {key!r} in [defaults]: use one of "
                f"{', '.join(sorted(_DEFAULT_KEYS))}",
                where.key(key, "defaults"),
            )
    entries = data.get("certificate", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise where.error(
            "write certificates as [[certificate]] blocks (two brackets)",
            where.header("certificate") or where.key("certificate"),
        )
    certificates: list[CertificateConfig] = []
    seen: set[str] = set()
    for block, entry in enumerate(entries):

        def line(key: str, block: int = block) -> int | None:
            return where.key(key, "certificate", block)

        for key in entry:
            if key not in _CERT_KEYS:
                raise where.error(
                    f"unknown setting {key!r} in [[certificate]]: use one of "
                    f"{', '.join(sorted(_CERT_KEYS))}",
                    line(key),
                )
        if "domains" not in entry:
            raise where.error(
                'a certificate needs domains = ["example.com", ...]',
                where.header("certificate", block),
            )
        domains = tuple(
            d.strip().lower() for d in _strings(entry["domains"], "domains", line("domains"), where)
        )
        if not domains:
            raise where.error("domains is empty: list at least one name", line("domains"))
        named = "name" in entry
        try:
            lineage = check_name(str(entry["name"])) if named else lineage_for(domains[0])
        except ConfigError as exc:
            raise where.error(str(exc), line("name" if named else "domains")) from None
        if lineage in seen:
            raise where.error(
                f'two certificates are named {lineage!r}: give one a name = "..."',
                where.header("certificate", block),
            )
        seen.add(lineage)
        key_type, key_type_line = _setting("key_type", entry, defaults, where, block)
        key_type = "ec256" if key_type is None else key_type
        if key_type not in _KEY_TYPES:
            raise where.error(
                f"key_type {key_type!r}: use one of {', '.join(_KEY_TYPES)}", key_type_line
            )
        deploy_hooks, deploy_line = _setting("deploy_hooks", entry, defaults, where, block)
        failure_hooks, failure_line = _setting("failure_hooks", entry, defaults, where, block)
        certificates.append(
            CertificateConfig(
                lineage=lineage,
                domains=domains,
                directory_url=_directory_url(entry, defaults, where, block),
                solvers=_solvers(entry, defaults, where, block),
                key_type=str(key_type),
                profile=entry.get("profile"),
                preferred_chain=entry.get("preferred_chain"),
                reuse_key=bool(entry.get("reuse_key", False)),
                ca_bundle=entry.get("ca_bundle", defaults.get("ca_bundle")),
                email=entry.get("email", defaults.get("email")),
                account=str(entry.get("account", defaults.get("account", "default"))),
                pre_hooks=_strings(
                    entry.get("pre_hooks", []), "pre_hooks", line("pre_hooks"), where
                ),
                post_hooks=_strings(
                    entry.get("post_hooks", []), "post_hooks", line("post_hooks"), where
                ),
                deploy_hooks=_strings(
                    [] if deploy_hooks is None else deploy_hooks,
                    "deploy_hooks",
                    deploy_line,
                    where,
                ),
                failure_hooks=_strings(
                    [] if failure_hooks is None else failure_hooks,
                    "failure_hooks",
                    failure_line,
                    where,
                ),
            )
        )
    return ConfigFile(
        path=path,
        certificates=tuple(certificates),
        agree_tos=bool(defaults.get("agree_tos", False)),
        eab_kid=defaults.get("eab_kid"),
        eab_hmac_key_file=defaults.get("eab_hmac_key_file"),
    )
