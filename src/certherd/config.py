"""Typed configuration independent of the CLI: CA presets and the config-dir default."""

from __future__ import annotations

import os
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


@dataclass(frozen=True)
class ConfigFile:
    """certherd.toml: defaults for the CA and account, and the certificates wanted."""

    path: Path
    certificates: tuple[CertificateConfig, ...]
    agree_tos: bool = False
    eab_kid: str | None = None
    eab_hmac_key_file: str | None = None


class _Where:
    """Error messages that name the file, the line and the fix."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def line_of(self, needle: str, occurrence: int = 0) -> int | None:
        seen = -1
        for number, line in enumerate(self.lines, 1):
            if needle in line.split("#", 1)[0]:
                seen += 1
                if seen == occurrence:
                    return number
        return None

    def error(self, message: str, needle: str | None = None, occurrence: int = 0) -> ConfigError:
        line = self.line_of(needle, occurrence) if needle else None
        where = f"{self.path}:{line}" if line else str(self.path)
        return ConfigError(f"{where}: {message}")


def _strings(value: Any, where: _Where, key: str, block: int) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise where.error(f"{key} must be a string or a list of strings", key, block)


def _solvers(
    entry: dict[str, Any], defaults: dict[str, Any], where: _Where, block: int
) -> tuple[SolverSpec, ...]:
    if "solvers" in entry:
        raw = entry["solvers"]
        if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
            raise where.error(
                'solvers must be a list of tables like {kind = "http"}', "solvers", block
            )
        specs = []
        for item in raw:
            kind = item.get("kind")
            if not isinstance(kind, str):
                raise where.error(
                    'every solver needs kind = "http" (or webroot, tls-alpn, dns, hook)',
                    "solvers",
                    block,
                )
            names = _strings(item.get("names", []), where, "names", block)
            options = {str(k): str(v) for k, v in item.items() if k not in ("kind", "names")}
            specs.append(SolverSpec(kind, options, names))
        return tuple(specs)
    kind = entry.get("solver", defaults.get("solver"))
    if not isinstance(kind, str):
        raise where.error(
            'say how to prove the names: add solver = "http" (or webroot, tls-alpn, dns, hook)',
            "[[certificate]]",
            block,
        )
    options = entry.get("solver_options", defaults.get("solver_options", {}))
    if not isinstance(options, dict):
        raise where.error("solver_options must be a table", "solver_options", block)
    return (SolverSpec(kind, {str(k): str(v) for k, v in options.items()}),)


def load_config_file(path: Path) -> ConfigFile:
    """Read and check certherd.toml; every error names the file, the line and the fix."""
    import tomllib

    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    where = _Where(path, text)
    unknown_top = set(data) - {"defaults", "certificate"}
    if unknown_top:
        name = sorted(unknown_top)[0]
        raise where.error(f"unknown section {name!r}: use [defaults] and [[certificate]]", name)
    defaults = data.get("defaults", {})
    for key in defaults:
        if key not in _DEFAULT_KEYS:
            raise where.error(
                f"unknown setting {key!r} in [defaults]: use one of "
                f"{', '.join(sorted(_DEFAULT_KEYS))}",
                key,
            )
    entries = data.get("certificate", [])
    if not isinstance(entries, list):
        raise where.error("write certificates as [[certificate]] blocks", "certificate")
    certificates: list[CertificateConfig] = []
    seen: set[str] = set()
    for block, entry in enumerate(entries):
        for key in entry:
            if key not in _CERT_KEYS:
                raise where.error(
                    f"unknown setting {key!r} in [[certificate]]: use one of "
                    f"{', '.join(sorted(_CERT_KEYS))}",
                    key,
                    0,
                )
        if "domains" not in entry:
            raise where.error(
                'a certificate needs domains = ["example.com", ...]', "[[certificate]]", block
            )
        domains = tuple(
            d.strip().lower() for d in _strings(entry["domains"], where, "domains", block)
        )
        if not domains:
            raise where.error("domains is empty: list at least one name", "domains", block)
        from certherd.storage.layout import check_name, lineage_for

        lineage = check_name(entry["name"]) if "name" in entry else lineage_for(domains[0])
        if lineage in seen:
            raise where.error(
                f'two certificates are named {lineage!r}: give one a name = "..."',
                "[[certificate]]",
                block,
            )
        seen.add(lineage)
        key_type = entry.get("key_type", defaults.get("key_type", "ec256"))
        if key_type not in _KEY_TYPES:
            raise where.error(
                f"key_type {key_type!r}: use one of {', '.join(_KEY_TYPES)}", "key_type", 0
            )
        server = entry.get("server", defaults.get("server") if "ca" not in entry else None)
        ca = entry.get("ca", defaults.get("ca") if server is None else None)
        try:
            directory_url = resolve_directory_url(server, ca)
        except ConfigError as exc:
            raise where.error(str(exc), "ca", 0) from None
        certificates.append(
            CertificateConfig(
                lineage=lineage,
                domains=domains,
                directory_url=directory_url,
                solvers=_solvers(entry, defaults, where, block),
                key_type=str(key_type),
                profile=entry.get("profile"),
                preferred_chain=entry.get("preferred_chain"),
                reuse_key=bool(entry.get("reuse_key", False)),
                ca_bundle=entry.get("ca_bundle", defaults.get("ca_bundle")),
                email=entry.get("email", defaults.get("email")),
                account=str(entry.get("account", defaults.get("account", "default"))),
                pre_hooks=_strings(entry.get("pre_hooks", []), where, "pre_hooks", block),
                post_hooks=_strings(entry.get("post_hooks", []), where, "post_hooks", block),
                deploy_hooks=_strings(
                    entry.get("deploy_hooks", defaults.get("deploy_hooks", [])),
                    where,
                    "deploy_hooks",
                    block,
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
