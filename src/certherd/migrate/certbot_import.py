"""Adopting a Certbot configuration: its lineages, renewal settings and ACME account.

Certbot keeps, under its config dir (``/etc/letsencrypt``):

- ``renewal/<lineage>.conf``: ConfigObj INI; top-level ``archive_dir``, ``cert``, ...
  then ``[renewalparams]`` (``authenticator``, ``server``, ``account``, key type, hooks)
  with a ``[[webroot_map]]`` subsection for webroot;
- ``archive/<lineage>/{cert,chain,fullchain,privkey}<N>.pem``, every version, and
  ``live/<lineage>/*.pem`` symlinks to the live one;
- ``accounts/<host>/<path>/<id>/``: ``private_key.json`` (a JWK), ``regr.json``
  (``{"uri": account URL}``) and ``meta.json``;
- ``renewal-hooks/{pre,post,deploy}/``: programs run around every renewal.

Each lineage becomes a certherd lineage with the same name and version numbers, its
settings mapped (standalone -> http, webroot -> webroot, manual -> hook through an
adapter script, ``dns-<x>`` -> the dns-lexicon provider of that name), and the account
is stored under certherd's layout so that renewing sends no newAccount. The Certbot
directory is only read. A lineage that cannot be read fails alone, with one line.
The renewal-file format, JWK keys and the settings mapping are in ``certbot_conf``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from certherd._nofollow import is_trusted_folder, untrusted_reason
from certherd.crypto.certs import describe_certificate, load_pem_chain
from certherd.crypto.files import atomic_write
from certherd.crypto.keys import PrivateKey
from certherd.errors import (
    CertherdError,
    ConfigError,
    InvalidNameError,
    NotFoundError,
)
from certherd.manager.accounts import AccountRecord, ca_options, load_account, save_account
from certherd.manager.lineage import LineageState
from certherd.migrate.certbot_conf import (
    ACME_V1,
    LETS_ENCRYPT,
    SERVERS,
    hook_settings,
    key_type,
    read_file,
    setting_flag,
    setting_text,
    solver_specs,
)
from certherd.migrate.certbot_conf import key_from_jwk as key_from_jwk
from certherd.migrate.certbot_conf import parse_conf as parse_conf
from certherd.names import canonical_names
from certherd.settings import InstallerSettings, LineageSettings
from certherd.storage.base import Storage, has_value
from certherd.storage.layout import FILES, archive_file, check_name, renewal_settings
from certherd.storage.leases import holding
from certherd.storage.lineages import archive_keys, publish

__all__ = [
    "CertbotAccount",
    "CertbotLineage",
    "ImportResult",
    "import_certbot",
    "key_from_jwk",
    "parse_conf",
    "read_account",
    "read_lineage",
]

Status = Literal["imported", "would-import", "skipped", "failed"]


# -- Accounts ---------------------------------------------------------------------------


def _json(path: Path) -> Any:
    try:
        return json.loads(read_file(path))
    except ValueError:
        raise ConfigError(f"{path} is not valid JSON") from None


@dataclass(frozen=True)
class CertbotAccount:
    """A Certbot account: its id (folder name), key, URL and contact."""

    id: str
    key: PrivateKey = field(repr=False)
    url: str
    contact: tuple[str, ...] = ()


def read_account(certbot_dir: Path, server: str, account_id: str | None) -> CertbotAccount:
    """The account ``account_id`` (or the only one) that Certbot keeps for ``server``."""
    base = certbot_dir / "accounts"
    parts = urlsplit(server)
    server_dir = base / (parts.netloc + parts.path)
    if account_id:
        found = [server_dir / account_id] if (server_dir / account_id).is_dir() else []
        found += [p for p in sorted(base.rglob(account_id)) if p.is_dir() and p not in found]
    else:
        found = sorted(p.parent for p in server_dir.glob("*/private_key.json"))
        if len(found) > 1:
            raise ConfigError(
                f"no account named in the renewal file and {len(found)} in {server_dir}"
            )
    if not found:
        raise ConfigError(
            f"Certbot account {account_id or '(any)'} for {server} not found in {base}"
        )
    folder = found[0]
    key = key_from_jwk(_json(folder / "private_key.json"))
    registration = _json(folder / "regr.json")
    url = registration.get("uri") if isinstance(registration, dict) else None
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise ConfigError(f'{folder / "regr.json"} holds no account URL ("uri")')
    body = registration.get("body") or {}
    contact = body.get("contact", ()) if isinstance(body, dict) else ()
    return CertbotAccount(folder.name, key, url, tuple(str(c) for c in contact))


# -- Reading a lineage ------------------------------------------------------------------


@dataclass(frozen=True)
class CertbotLineage:
    """One Certbot lineage, read and mapped: what an import writes."""

    settings: LineageSettings
    versions: dict[int, dict[str, bytes]] = field(repr=False)
    live_version: int
    account: CertbotAccount
    scripts: dict[Path, str] = field(default_factory=dict, repr=False)
    warnings: tuple[str, ...] = ()


def haproxy_installer(params: dict[str, Any], name: str, warnings: list[str]) -> InstallerSettings:
    """certbot-haproxy's ``haproxy-installer`` (greenhost; Certbot has no HAProxy
    installer of its own): its crt dir (default ``/etc/ssl/crt``) and config, under
    whichever plugin prefix Certbot stored them."""

    def option(suffix: str) -> str | None:
        key = next((k for k in sorted(params) if k.endswith(suffix)), None)
        return setting_text(params, key) if key else None

    crt_dir = (option("haproxy_crt_dir") or "/etc/ssl/crt").rstrip("/") or "/"
    config = option("haproxy_config") or "/etc/haproxy/haproxy.cfg"
    warnings.append(
        f"HAProxy is served from {crt_dir}/{name}.pem and renewals are hot-swapped through "
        "its runtime API (`stats socket ... level admin`; without one, a master-worker "
        "reload), where certbot-haproxy restarted it; certherd adds no bind line while "
        f"one loads {crt_dir} (docs/installers.md)"
    )
    options = {"config": config, "crt_dir": crt_dir, "ctl": "haproxy", "https_port": "443"}
    return InstallerSettings("haproxy", tuple(sorted({**options, "socket": ""}.items())))


def read_lineage(
    certbot_dir: Path,
    conf: Path,
    *,
    ca_bundle: str | None = None,
    hook_dir: Path | None = None,
    now: dt.datetime | None = None,
) -> CertbotLineage:
    """Read the lineage of renewal file ``conf``; ConfigError (one line) if it can't be."""
    name = check_name(conf.name.removesuffix(".conf"))
    data = parse_conf(read_file(conf).decode("utf-8", "replace"), str(conf))
    params = data.get("renewalparams")
    if not isinstance(params, dict):
        raise ConfigError(f"{conf} has no [renewalparams] section: Certbot cannot renew it either")
    warnings: list[str] = []
    archive = _located(data, "archive_dir", certbot_dir / "archive" / name, certbot_dir)
    versions = _archive_versions(archive, warnings)
    cert = _located(data, "cert", certbot_dir / "live" / name / "cert.pem", certbot_dir)
    live = _live_version(cert, versions)
    chain = load_pem_chain(versions[live]["cert.pem"])
    try:
        key = serialization.load_pem_private_key(versions[live]["privkey.pem"], password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(f"{archive}/privkey{live}.pem is not a usable private key") from None
    if key.public_key() != chain[0].public_key():
        raise ConfigError(f"{archive}: privkey{live}.pem does not belong to cert{live}.pem")
    info = describe_certificate(chain[0])
    found = info.dns_names + info.ip_addresses
    ordered = [n for n in [info.subject_cn, *found] if n in found]
    if not ordered:
        raise ConfigError(f"{archive}/cert{live}.pem names no DNS name or IP address")
    try:
        names = canonical_names(ordered)
    except InvalidNameError as exc:
        raise ConfigError(f"{archive}/cert{live}.pem: {exc}; no CA would renew it") from None
    if info.not_after <= (now or dt.datetime.now(dt.UTC)):
        warnings.append(f"the certificate expired on {info.not_after:%Y-%m-%d}: renew it now")
    specs, scripts = solver_specs(params, names, name, certbot_dir, hook_dir, warnings)
    installer = setting_text(params, "installer")
    installed = None
    if installer in SERVERS:
        root, ctl = SERVERS[installer]
        installed = InstallerSettings(
            installer,
            (
                ("ctl", setting_text(params, f"{installer}_ctl") or ctl),
                ("https_port", setting_text(params, "https_port") or "443"),
                ("redirect", "false"),
                ("server_root", setting_text(params, f"{installer}_server_root") or root),
            ),
        )
        warnings.append(
            (
                "nginx is reloaded after each renewal (the nginx installer); its server "
                "blocks still point at Certbot's files (lines marked '# managed by Certbot')"
                if installer == "nginx"
                else "Apache is restarted gracefully after each renewal (the apache "
                "installer); Certbot's TLS vhosts (its -le-ssl.conf files) still point at "
                "Certbot's files"
            )
            + f": remove those, then run `certherd install {name}` to serve certherd's"
        )
    elif installer and installer.rpartition(":")[2] in ("haproxy-installer", "haproxy"):
        installed = haproxy_installer(params, name, warnings)
    elif installer and installer != "null":
        warnings.append(
            f"Certbot's {installer} installer reloaded the server after renewal; certherd "
            f"does not: add a deploy hook that does (e.g. `systemctl reload {installer}`)"
        )
    if setting_flag(params, "must_staple"):
        warnings.append("must-staple is not carried over (OCSP is gone at Let's Encrypt)")
    server = setting_text(params, "server") or LETS_ENCRYPT
    account = read_account(certbot_dir, server, setting_text(params, "account"))
    server = ACME_V1.get(server, server)
    settings = LineageSettings(
        name=name,
        names=names,
        directory_url=server,
        solvers=specs,
        ca_bundle=ca_bundle,
        key_type=key_type(params, key, warnings),
        reuse_key=setting_flag(params, "reuse_key"),
        profile=setting_text(params, "required_profile")
        or setting_text(params, "preferred_profile"),
        preferred_chain=setting_text(params, "preferred_chain"),
        hooks=hook_settings(params, certbot_dir, warnings),
        email=next(
            (c.removeprefix("mailto:") for c in account.contact if c.startswith("mailto:")), None
        ),
        agree_tos=True,  # Certbot registered the account once the terms were agreed to
        installer=installed,
    )
    return CertbotLineage(settings, versions, live, account, scripts, tuple(warnings))


def _located(data: dict[str, Any], key: str, fallback: Path, certbot_dir: Path) -> Path:
    """The path the renewal file names or, for a directory copied or moved since (its
    files still name the old place), the same path inside ``certbot_dir``."""
    named = setting_text(data, key)
    candidates = list(dict.fromkeys([Path(named), fallback] if named else [fallback]))
    if named and not Path(named).is_relative_to(certbot_dir.absolute()):
        candidates.reverse()
    for candidate in candidates:
        if os.path.lexists(candidate):
            return candidate
    verb = "are" if len(candidates) > 1 else "is"
    raise ConfigError(f"{' and '.join(map(str, candidates))} {verb} missing")


_VERSIONED = re.compile(r"^(cert|chain|fullchain|privkey)(\d+)\.pem$")


def _archive_versions(archive: Path, warnings: list[str]) -> dict[int, dict[str, bytes]]:
    try:
        entries = sorted(os.listdir(archive))
    except OSError as exc:
        raise ConfigError(f"cannot list {archive}: {exc.strerror or exc}") from None
    versions: dict[int, dict[str, bytes]] = {}
    for entry in entries:
        match = _VERSIONED.match(entry)
        if match:
            files = versions.setdefault(int(match.group(2)), {})
            files[f"{match.group(1)}.pem"] = read_file(archive / entry)
    for version in sorted(versions):
        if set(versions[version]) != set(FILES):
            warnings.append(f"version {version} is incomplete in {archive}: not imported")
            del versions[version]
    return versions


def _live_version(cert: Path, versions: dict[int, dict[str, bytes]]) -> int:
    if cert.is_symlink():
        match = _VERSIONED.match(Path(os.readlink(cert)).name)
        if match and int(match.group(2)) in versions:
            return int(match.group(2))
    else:  # a copied live folder: find the version by content
        content = read_file(cert)
        for version, files in versions.items():
            if files["cert.pem"] == content:
                return version
    raise ConfigError(f"{cert} points to no complete version in the archive")


# -- Writing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportResult:
    """What happened to one Certbot lineage: imported, would-import, skipped or failed."""

    lineage: str
    status: Status
    reason: str = ""
    settings: LineageSettings | None = None
    versions: tuple[int, ...] = ()
    live_version: int | None = None
    state: LineageState | None = None
    account: str | None = None
    account_url: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def to_json(self) -> dict[str, Any]:
        settings, state = self.settings, self.state
        return {
            "lineage": self.lineage,
            "status": self.status,
            "reason": self.reason or None,
            "names": list(settings.names) if settings else [],
            "server": settings.directory_url if settings else None,
            "solvers": [s.to_json() for s in settings.solvers] if settings else [],
            "versions": list(self.versions),
            "live_version": self.live_version,
            "serial": state.serial if state else None,
            "not_after": state.not_after.isoformat() if state and state.not_after else None,
            "account": self.account,
            "account_url": self.account_url,
            "warnings": list(self.warnings),
        }


async def import_certbot(
    certbot_dir: Path,
    storage: Storage,
    *,
    ca_bundle: str | None = None,
    hook_dir: Path | None = None,
    replace: bool = False,
    dry_run: bool = False,
    now: dt.datetime | None = None,
) -> list[ImportResult]:
    """Import every lineage of ``certbot_dir`` into ``storage``; one result each.

    A lineage certherd already has is skipped unless ``replace`` (then its certherd
    versions are dropped). ``dry_run`` reads everything and writes nothing.
    ConfigError if ``certbot_dir`` has no ``renewal/`` folder, or if a user other than
    root (or this process's) could change it or a folder on its path.
    """
    renewal = certbot_dir / "renewal"
    if not renewal.is_dir():
        raise ConfigError(f"{certbot_dir} is not a Certbot configuration directory: no renewal/")
    _check_trusted(certbot_dir)
    when = now or dt.datetime.now(dt.UTC)
    results = []
    for conf in sorted(renewal.glob("*.conf")):
        name = conf.name.removesuffix(".conf")
        try:
            check_name(name)
            _check_trusted_file(conf)
            if not replace and await has_value(storage, renewal_settings(name)):
                results.append(ImportResult(name, "skipped", "certherd has it already"))
                continue
            lineage = read_lineage(
                certbot_dir, conf, ca_bundle=ca_bundle, hook_dir=hook_dir, now=when
            )
            results.append(await _import(storage, lineage, replace, dry_run, when))
        except (CertherdError, OSError, ValueError, UnicodeDecodeError) as exc:
            text = exc.text(500) if isinstance(exc, CertherdError) else f"{conf}: {exc}"
            results.append(ImportResult(name, "failed", text))
    return results


_READ_FOLDERS = ("", "renewal", "renewal-hooks", "accounts", "archive", "live")
"""The folders of a Certbot dir the import reads (``""``: the dir itself)."""


def _check_trusted(certbot_dir: Path) -> None:
    """ConfigError unless only root (or this process's user) can change what is imported.

    Its hooks will run as root and its account keys be used: a folder another user could
    change (or swap for a link) is not a source to adopt them from.
    """
    for sub in _READ_FOLDERS:
        folder = certbot_dir / sub if sub else certbot_dir
        if sub and not os.path.lexists(folder):
            continue
        try:
            reason = untrusted_reason(folder)
        except OSError as exc:
            raise ConfigError(f"cannot check {folder}: {exc.strerror or exc}") from None
        if reason is not None:
            raise ConfigError(
                f"not importing from {certbot_dir}: {reason}; its hooks would run as root: "
                "make it and the folders above it root's alone first"
            )


def _check_trusted_file(path: Path) -> None:
    """ConfigError if ``path`` is a symlink or a file another user may write."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not is_trusted_folder(info):
        raise ConfigError(
            f"{path} is a symbolic link or a file another user can change "
            f"(owner uid {info.st_uid}, mode {stat.S_IMODE(info.st_mode):04o}): not imported"
        )


async def _import(
    storage: Storage, lineage: CertbotLineage, replace: bool, dry_run: bool, now: dt.datetime
) -> ImportResult:
    settings, live = lineage.settings, lineage.live_version
    leaf = load_pem_chain(lineage.versions[live]["cert.pem"])[0]
    state = LineageState.of_certificate(settings.name, leaf, live, now)
    result = ImportResult(
        settings.name,
        "would-import" if dry_run else "imported",
        settings=settings,
        versions=tuple(sorted(lineage.versions)),
        live_version=live,
        state=state,
        account_url=lineage.account.url,
        warnings=lineage.warnings,
    )
    if dry_run:
        return result
    name = settings.name
    async with holding(storage, name) as lease:
        # Check again under the lease: another certherd may have imported it meanwhile.
        if not replace and await has_value(storage, renewal_settings(name)):
            return ImportResult(name, "skipped", "imported by another certherd meanwhile")
        account = await _store_account(storage, settings, lineage.account)
        stale = set(await archive_keys(storage, name))
        for version, files in sorted(lineage.versions.items()):
            for file in FILES:
                key = archive_file(name, file, version)
                private = file == "privkey.pem"
                await storage.write(key, files[file], private=private, fence=lease)
                stale.discard(key)
        await publish(storage, name, live, fence=lease)
        for key in sorted(stale):  # replace=True: certherd's own versions of this lineage
            await storage.delete(key, fence=lease)
        await state.save(storage)
        for path, text in lineage.scripts.items():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(path, text.encode(), mode=0o700)
        settings = dataclasses.replace(settings, account=account)
        await settings.save(storage)  # last: a lineage exists once its settings do
    return dataclasses.replace(result, settings=settings, account=account)


async def _store_account(
    storage: Storage, settings: LineageSettings, account: CertbotAccount
) -> str:
    """Store the account (or find it stored) under certherd's layout; its name there."""
    for name in ("default", f"certbot-{account.id[:16]}"):
        named = dataclasses.replace(settings, account=check_name(name, "account name"))
        options = ca_options(named)
        try:
            existing = await load_account(storage, options)
        except NotFoundError:
            record = AccountRecord(account.key, account.url, account.contact)
            await save_account(storage, options, record)
            return name
        if existing.url == account.url:
            return name  # imported before (its key may have been rolled over since)
    raise ConfigError(f"certherd already holds other accounts named like Certbot's {account.id}")
