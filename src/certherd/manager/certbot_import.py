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
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certherd.challenges.spec import SolverSpec
from certherd.crypto.ari import certificate_id
from certherd.crypto.certs import describe_certificate, load_pem_chain
from certherd.crypto.encoding import b64url_decode
from certherd.crypto.files import atomic_write
from certherd.crypto.keys import PrivateKey, load_private_key, private_key_to_pem
from certherd.errors import CertherdError, ConfigError, CryptoError, NotFoundError, safe_text
from certherd.manager.accounts import AccountRecord, CaOptions, load_account, save_account
from certherd.manager.lineage import HookSettings, LineageSettings, LineageState
from certherd.manager.policy import needs_renewal
from certherd.storage.base import Storage
from certherd.storage.layout import FILES, archive_file, check_name, renewal_settings

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

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"  # Certbot's default server
# ACME v1 endpoints, which Certbot itself moves to v2 when it renews (they are gone).
ACME_V1 = {
    "https://acme-v01.api.letsencrypt.org/directory": LETS_ENCRYPT,
    "https://acme-staging.api.letsencrypt.org/directory": (
        "https://acme-staging-v02.api.letsencrypt.org/directory"
    ),
}
MANUAL_HOOK_TIMEOUT = "600"  # Certbot gives manual hooks no time limit; DNS ones often sleep
# Certbot's own DNS plugins whose dns-lexicon provider has another name.
LEXICON_NAMES = {"google": "googleclouddns", "linode": "linode4"}
# dns-lexicon providers behind Certbot's own DNS plugins: known even without lexicon.
LEXICON_KNOWN = frozenset(
    {"cloudflare", "digitalocean", "dnsimple", "dnsmadeeasy", "gehirn", "googleclouddns"}
    | {"linode4", "luadns", "nsone", "ovh", "route53", "sakuracloud"}
)
Status = Literal["imported", "would-import", "skipped", "failed"]

# -- ConfigObj, the subset Certbot writes -----------------------------------------------

_SECTION = re.compile(r"^(\[+)\s*(.*?)\s*(\]+)\s*(?:#.*)?$")
_KEY = re.compile(r"""^("[^"]*"|'[^']*'|[^=]+?)\s*=\s*(.*)$""")
_ITEM = re.compile(r"""\s*(?:"([^"]*)"|'([^']*)'|([^,#"'][^,#]*?)?)\s*(,|#.*$|$)""")


def parse_conf(text: str, where: str = "config") -> dict[str, Any]:
    """Parse ConfigObj INI: ``key = value``, ``key = a, b,`` (a list), quoted and
    triple-quoted values, ``#`` comments, ``[section]`` and ``[[subsection]]``.

    Values are ``str``, ``list[str]`` (a comma makes a list) or nested ``dict``. A line
    that fits none of these raises ConfigError naming ``where`` and the line number.
    """
    root: dict[str, Any] = {}
    stack = [root]
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        number, line = index + 1, lines[index].strip()
        index += 1
        if not line or line.startswith("#"):
            continue
        section = _SECTION.match(line)
        if section:
            depth = len(section.group(1))
            if depth != len(section.group(3)) or depth > len(stack):
                raise ConfigError(f"{where} line {number}: bad section header {line[:80]!r}")
            del stack[depth:]
            child: dict[str, Any] = {}
            stack[-1][_unquote(section.group(2))] = child
            stack.append(child)
            continue
        pair = _KEY.match(line)
        if not pair:
            raise ConfigError(f"{where} line {number}: expected KEY = VALUE, got {line[:80]!r}")
        rest = pair.group(2)
        if rest[:3] in ('"""', "'''"):
            quote, body = rest[:3], rest[3:]
            while quote not in body and index < len(lines):
                body += "\n" + lines[index]
                index += 1
            value, _, tail = body.partition(quote)
            if quote not in body or tail.strip()[:1] not in ("", "#"):
                raise ConfigError(f"{where} line {number}: unterminated {quote} value")
            stack[-1][_unquote(pair.group(1))] = value
            continue
        stack[-1][_unquote(pair.group(1))] = _values(rest, f"{where} line {number}")
    return root


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _values(text: str, where: str) -> str | list[str]:
    """One value, or a list when a comma appears (``a,`` is a list of one, ``,`` empty)."""
    items: list[str] = []
    position, listed = 0, False
    while True:
        match = _ITEM.match(text, position)
        if match is None:
            raise ConfigError(f"{where}: cannot read the value {text[:80]!r} (unbalanced quotes?)")
        double, single, bare, end = match.groups()
        quoted = double if double is not None else single
        if quoted is not None or bare:
            items.append(quoted if quoted is not None else bare)
        if end != ",":
            break
        listed, position = True, match.end()
        if text[position:].strip()[:1] in ("", "#"):
            break
    if listed:
        return items
    return items[0] if items else ""


def _text(section: dict[str, Any], key: str) -> str | None:
    """A setting as one string (a list joined back with ", "), None if absent or empty."""
    value = section.get(key)
    if isinstance(value, list):
        value = ", ".join(value)
    if not isinstance(value, str) or value.strip() in ("", "None"):
        return None
    return value.strip()


def _list(section: dict[str, Any], key: str) -> list[str]:
    value = section.get(key)
    if isinstance(value, str):
        return [value] if value.strip() else []
    return [v for v in value if v.strip()] if isinstance(value, list) else []


def _flag(section: dict[str, Any], key: str) -> bool:
    return (_text(section, key) or "").lower() in ("true", "yes", "on", "1")


# -- Accounts ---------------------------------------------------------------------------


def key_from_jwk(jwk: Any) -> PrivateKey:
    """The private key of a JWK (RFC 7518 §6.2.2 EC, §6.3.2 RSA), as Certbot stores it."""
    try:

        def number(name: str) -> int:
            return int.from_bytes(b64url_decode(str(jwk[name])), "big")

        if jwk.get("kty") == "RSA":
            n, e, d = number("n"), number("e"), number("d")
            if "p" in jwk and "q" in jwk:
                p, q = number("p"), number("q")
            else:  # RFC 7518 §6.3.2: the prime factors are optional
                p, q = rsa.rsa_recover_prime_factors(n, e, d)
            numbers = rsa.RSAPrivateNumbers(
                p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q),
                rsa.RSAPublicNumbers(e, n),
            )  # fmt: skip
            key: Any = numbers.private_key()
        elif jwk.get("kty") == "EC":
            curves = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}
            if jwk.get("crv") not in curves:
                raise CryptoError(f"unsupported JWK curve {safe_text(jwk.get('crv'), 20)!r}")
            key = ec.derive_private_key(number("d"), curves[jwk["crv"]])
            public = key.public_key().public_numbers()
            if "x" in jwk and (public.x, public.y) != (number("x"), number("y")):
                raise CryptoError("the JWK's public point does not match its private value")
        else:
            raise CryptoError(f"unsupported JWK key type {safe_text(jwk.get('kty'), 20)!r}")
    except (KeyError, ValueError, TypeError, AttributeError):
        raise CryptoError("not a usable JWK private key") from None
    return load_private_key(private_key_to_pem(key))  # certherd's own size and curve checks


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


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing") from None
    except OSError as exc:
        hint = " (run as root, or as the owner of the Certbot directory)" if exc.errno == 13 else ""
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}{hint}") from None


def _json(path: Path) -> Any:
    try:
        return json.loads(_read(path))
    except ValueError:
        raise ConfigError(f"{path} is not valid JSON") from None


@dataclass(frozen=True)
class CertbotLineage:
    """One Certbot lineage, read and mapped: what an import writes."""

    settings: LineageSettings
    versions: dict[int, dict[str, bytes]] = field(repr=False)
    live_version: int
    account: CertbotAccount
    scripts: dict[Path, str] = field(default_factory=dict, repr=False)
    warnings: tuple[str, ...] = ()


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
    data = parse_conf(_read(conf).decode("utf-8", "replace"), str(conf))
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
    names = tuple(dict.fromkeys(n.lower() for n in [info.subject_cn, *found] if n in found))
    if not names:
        raise ConfigError(f"{archive}/cert{live}.pem names no DNS name or IP address")
    if info.not_after <= (now or dt.datetime.now(dt.UTC)):
        warnings.append(f"the certificate expired on {info.not_after:%Y-%m-%d}: renew it now")
    specs, scripts = _solvers(params, names, name, certbot_dir, hook_dir, warnings)
    installer = _text(params, "installer")
    if installer and installer != "null":
        warnings.append(
            f"Certbot's {installer} installer reloaded the server after renewal; certherd "
            f"does not: add a deploy hook that does (e.g. `systemctl reload {installer}`)"
        )
    if _flag(params, "must_staple"):
        warnings.append("must-staple is not carried over (OCSP is gone at Let's Encrypt)")
    server = _text(params, "server") or LETS_ENCRYPT
    account = read_account(certbot_dir, server, _text(params, "account"))
    server = ACME_V1.get(server, server)
    settings = LineageSettings(
        name=name,
        names=names,
        directory_url=server,
        solvers=specs,
        ca_bundle=ca_bundle,
        key_type=_key_type(params, key, warnings),
        reuse_key=_flag(params, "reuse_key"),
        profile=_text(params, "required_profile") or _text(params, "preferred_profile"),
        preferred_chain=_text(params, "preferred_chain"),
        hooks=_hooks(params, certbot_dir, warnings),
    )
    return CertbotLineage(settings, versions, live, account, scripts, tuple(warnings))


def _located(data: dict[str, Any], key: str, fallback: Path, certbot_dir: Path) -> Path:
    """The path the renewal file names or, for a directory copied or moved since (its
    files still name the old place), the same path inside ``certbot_dir``."""
    named = _text(data, key)
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
            files[f"{match.group(1)}.pem"] = _read(archive / entry)
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
        content = _read(cert)
        for version, files in versions.items():
            if files["cert.pem"] == content:
                return version
    raise ConfigError(f"{cert} points to no complete version in the archive")


def _solvers(
    params: dict[str, Any],
    names: tuple[str, ...],
    lineage: str,
    certbot_dir: Path,
    hook_dir: Path | None,
    warnings: list[str],
) -> tuple[tuple[SolverSpec, ...], dict[Path, str]]:
    authenticator = _text(params, "authenticator") or ""
    plugin = authenticator.rpartition(":")[2]  # old spelling: certbot-dns-x:dns-x
    if plugin == "standalone":
        port = _text(params, "http01_port") or "80"
        address = _text(params, "http01_address") or ""
        if not port.isdigit():
            raise ConfigError(f"http01_port {port!r} is not a port number")
        host = f"[{address}]" if ":" in address else address
        return (SolverSpec("http", {"listen": f"{host}:{port}" if host else port}),), {}
    if plugin == "webroot":
        return _webroot(params, names), {}
    if plugin in ("nginx", "apache"):
        warnings.append(
            f"authenticator {plugin} has no certherd equivalent: mapped to the built-in "
            "http-01 server on port 80, which needs that port free; choose a solver "
            "(e.g. webroot) and issue again if that is wrong"
        )
        return (SolverSpec("http", {"listen": "80"}),), {}
    if plugin == "manual":
        return _manual(params, names, lineage, hook_dir, warnings)
    if plugin.startswith("dns-"):
        return (_dns(params, plugin.removeprefix("dns-"), warnings),), {}
    what = f"authenticator {authenticator!r}" if authenticator else "no authenticator"
    raise ConfigError(
        f"{what} in [renewalparams]: certherd has no equivalent; issue it again with "
        "`certherd issue` and --http, --webroot, --dns or --solver-hook"
    )


def _webroot(params: dict[str, Any], names: tuple[str, ...]) -> tuple[SolverSpec, ...]:
    mapping = params.get("webroot_map")
    mapping = {k.lower(): _text(mapping, k) for k in mapping} if isinstance(mapping, dict) else {}
    by_path: dict[str, list[str]] = {}
    missing = []
    for name in names:
        path = mapping.get(name)
        if path:
            by_path.setdefault(path, []).append(name)
        else:
            missing.append(name)
    default = _list(params, "webroot_path")
    if missing and not default:
        raise ConfigError(
            f"webroot: no folder for {', '.join(missing)} (webroot_map, webroot_path)"
        )
    if len(by_path) == 1 and not missing:
        return (SolverSpec("webroot", {"path": next(iter(by_path))}),)
    specs = [SolverSpec("webroot", {"path": path}, tuple(ns)) for path, ns in by_path.items()]
    if missing:
        specs.append(SolverSpec("webroot", {"path": default[0].strip()}))
    return tuple(specs)


def _manual(
    params: dict[str, Any],
    names: tuple[str, ...],
    lineage: str,
    hook_dir: Path | None,
    warnings: list[str],
) -> tuple[tuple[SolverSpec, ...], dict[Path, str]]:
    auth = _text(params, "manual_auth_hook")
    if not auth:
        raise ConfigError(
            "manual authenticator without manual_auth_hook: it cannot renew unattended "
            "(nor can Certbot); issue it again with a solver (`certherd issue --dns ...`)"
        )
    if hook_dir is None:
        raise ConfigError("manual hooks need a local folder for their adapter script")
    preferred = [c.strip() for c in _list(params, "pref_challs")]
    challenge = next((c for c in preferred if c in ("http-01", "dns-01")), "http-01")
    script = hook_dir / f"certbot-manual-{lineage}.sh"
    options = {"command": str(script), "timeout": MANUAL_HOOK_TIMEOUT}
    specs = [SolverSpec("hook", {"challenge": challenge, **options})]
    wildcards = tuple(n for n in names if n.startswith("*."))
    if challenge == "http-01" and wildcards:  # RFC 8555 §7.1.3: wildcards need dns-01
        specs.insert(0, SolverSpec("hook", {"challenge": "dns-01", **options}, wildcards))
    warnings.append(
        f"Certbot's manual hooks run through {script}, which sets the CERTBOT_* variables; "
        "of certherd's own environment they get only PATH, HOME and LANG"
    )
    return tuple(specs), {script: _manual_script(auth, _text(params, "manual_cleanup_hook"), names)}


def _manual_script(auth: str, cleanup: str | None, names: tuple[str, ...]) -> str:
    """A HookSolver program that runs Certbot manual hooks with the variables they read."""
    return f"""#!/bin/sh
# Written by `certherd import-certbot`: certherd's hook solver runs `$0 present|cleanup`
# with CERTHERD_* variables; Certbot's manual hooks read CERTBOT_* ones.
auth={shlex.quote(auth)}
cleanup={shlex.quote(cleanup or "")}
CERTBOT_DOMAIN=${{CERTHERD_IDENTIFIER#\\*.}}
CERTBOT_VALIDATION=$CERTHERD_KEY_AUTHORIZATION
[ "$CERTHERD_CHALLENGE_TYPE" = dns-01 ] && CERTBOT_VALIDATION=$CERTHERD_DNS_VALUE
CERTBOT_TOKEN=$CERTHERD_TOKEN
CERTBOT_ALL_DOMAINS={shlex.quote(",".join(names))}
CERTBOT_REMAINING_CHALLENGES=0
export CERTBOT_DOMAIN CERTBOT_VALIDATION CERTBOT_TOKEN CERTBOT_ALL_DOMAINS
export CERTBOT_REMAINING_CHALLENGES
saved="$0.$(printf %s "$CERTBOT_DOMAIN-$CERTHERD_CHALLENGE_TYPE" | tr -c 'A-Za-z0-9.-' _).out"
case "$1" in
present)
    output=$(/bin/sh -c "$auth") || exit $?
    (umask 077; printf %s "$output" > "$saved") ;;
cleanup)
    CERTBOT_AUTH_OUTPUT=$(cat "$saved" 2>/dev/null)
    export CERTBOT_AUTH_OUTPUT
    rm -f "$saved"
    [ -z "$cleanup" ] || exec /bin/sh -c "$cleanup" ;;
esac
"""


def _dns(params: dict[str, Any], plugin: str, warnings: list[str]) -> SolverSpec:
    prefix = f"dns_{plugin.replace('-', '_')}_"
    credentials = _text(params, prefix + "credentials")
    where = f" (Certbot kept them in {credentials})" if credentials else ""
    if plugin == "rfc2136":
        options = {"provider": "rfc2136", **_rfc2136(credentials, warnings)}
        warnings.append(
            f"the TSIG secret is not copied{where}: set CERTHERD_RFC2136_KEY_SECRET in the "
            "environment of `certherd renew`"
        )
    else:
        provider = LEXICON_NAMES.get(plugin, plugin)
        known = _lexicon_providers()
        if provider not in (known or LEXICON_KNOWN):
            why = "dns-lexicon has" if known is not None else "dns-lexicon is not installed, so"
            raise ConfigError(
                f"authenticator dns-{plugin}: {why} no provider {provider!r}; issue it again "
                "with `certherd issue --dns PROVIDER`"
            )
        if known is None:
            warnings.append("install dns-lexicon before renewing: pip install 'certherd[lexicon]'")
        options = {"provider": f"lexicon:{provider}"}
        warnings.append(
            f"DNS credentials are not copied{where}: set LEXICON_{provider.upper()}_<OPTION> "
            f"(e.g. LEXICON_{provider.upper()}_AUTH_TOKEN) in the environment of `certherd renew`"
        )
    seconds = _text(params, prefix + "propagation_seconds") or ""
    if seconds.isdigit() and int(seconds) > 120:  # certherd checks actively; 120 s by default
        options["propagation_timeout"] = seconds
    return SolverSpec("dns", options)


@functools.cache
def _lexicon_providers() -> frozenset[str] | None:
    try:
        from lexicon._private.discovery import find_providers
    except ImportError:
        return None
    return frozenset(find_providers())


def _rfc2136(credentials: str | None, warnings: list[str]) -> dict[str, str]:
    """Server, port, key name and algorithm from Certbot's rfc2136 credentials file."""
    try:
        if not credentials:
            raise ConfigError("dns_rfc2136_credentials is not set")
        ini = parse_conf(_read(Path(credentials)).decode(), credentials)
    except (ConfigError, UnicodeDecodeError) as exc:
        warnings.append(
            f"{safe_text(exc, 200)}: set CERTHERD_RFC2136_SERVER and CERTHERD_RFC2136_KEY_NAME"
        )
        return {}
    wanted = {"server": "server", "port": "port", "name": "key_name", "algorithm": "algorithm"}
    found = {ours: _text(ini, f"dns_rfc2136_{theirs}") for theirs, ours in wanted.items()}
    return {k: v.lower() if k == "algorithm" else v for k, v in found.items() if v}


def _key_type(params: dict[str, Any], key: Any, warnings: list[str]) -> str:
    kind = (_text(params, "key_type") or ("rsa" if _text(params, "rsa_key_size") else "")).lower()
    if not kind:  # older Certbot: the live key tells
        kind = "ecdsa" if isinstance(key, ec.EllipticCurvePrivateKey) else "rsa"
    if kind == "ecdsa":
        curve = (_text(params, "elliptic_curve") or "").lower()
        if not curve:
            curve = key.curve.name if isinstance(key, ec.EllipticCurvePrivateKey) else "secp256r1"
        if curve in ("secp256r1", "prime256v1"):
            return "ec256"
        if curve != "secp384r1":
            warnings.append(f"curve {curve} is not supported: new keys will be P-384")
        return "ec384"
    size_text = _text(params, "rsa_key_size") or ""
    size = int(size_text) if size_text.isdigit() else getattr(key, "key_size", 2048)
    chosen = min((s for s in (2048, 3072, 4096) if s >= size), default=4096)
    if chosen != size:
        warnings.append(f"RSA keys of {size} bits are not supported: new keys will be {chosen}")
    if kind != "rsa":
        warnings.append(f"unknown key_type {kind!r}: new keys will be RSA {chosen}")
    return f"rsa{chosen}"


def _hooks(params: dict[str, Any], certbot_dir: Path, warnings: list[str]) -> HookSettings:
    """Certbot's directory hooks (run first, as Certbot does) then the lineage's own."""
    found: dict[str, list[str]] = {}
    kept: list[str] = []
    kinds = {"pre": ["pre_hook"], "post": ["post_hook"], "deploy": ["renew_hook", "deploy_hook"]}
    for kind, keys in kinds.items():
        folder = certbot_dir / "renewal-hooks" / kind
        programs = [
            p
            for p in (sorted(folder.iterdir()) if folder.is_dir() else [])
            if p.is_file() and os.access(p, os.X_OK) and not p.name.endswith("~")
        ]
        kept += [str(p) for p in programs]
        own = next((v for v in (_text(params, k) for k in keys) if v), None)
        found[kind] = [shlex.quote(str(p)) for p in programs] + ([own] if own else [])
    if kept:
        warnings.append(f"Certbot's directory hooks run from where they are: {', '.join(kept)}")
    return HookSettings(tuple(found["pre"]), tuple(found["post"]), tuple(found["deploy"]))


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
    ConfigError if ``certbot_dir`` has no ``renewal/`` folder.
    """
    renewal = certbot_dir / "renewal"
    if not renewal.is_dir():
        raise ConfigError(f"{certbot_dir} is not a Certbot configuration directory: no renewal/")
    when = now or dt.datetime.now(dt.UTC)
    results = []
    for conf in sorted(renewal.glob("*.conf")):
        name = conf.name.removesuffix(".conf")
        try:
            check_name(name)
            if not replace and await storage.exists(renewal_settings(name)):
                results.append(ImportResult(name, "skipped", "certherd has it already"))
                continue
            lineage = read_lineage(
                certbot_dir, conf, ca_bundle=ca_bundle, hook_dir=hook_dir, now=when
            )
            results.append(await _import(storage, lineage, replace, dry_run, when))
        except (CertherdError, OSError, ValueError, UnicodeDecodeError) as exc:
            text = safe_text(exc, 500) if isinstance(exc, CertherdError) else f"{conf}: {exc}"
            results.append(ImportResult(name, "failed", text))
    return results


async def _import(
    storage: Storage, lineage: CertbotLineage, replace: bool, dry_run: bool, now: dt.datetime
) -> ImportResult:
    settings, live = lineage.settings, lineage.live_version
    state = _state(settings.name, load_pem_chain(lineage.versions[live]["cert.pem"]), live, now)
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
    async with storage.lock(name):
        # Check again under the lock: another certherd may have imported it meanwhile.
        if not replace and await storage.exists(renewal_settings(name)):
            return ImportResult(name, "skipped", "imported by another certherd meanwhile")
        account = await _store_account(storage, settings.directory_url, lineage.account)
        stale = set(await storage.list(f"archive/{name}"))
        for version, files in sorted(lineage.versions.items()):
            for file in FILES:
                key = archive_file(name, file, version)
                await storage.write(key, files[file], private=file == "privkey.pem")
                stale.discard(key)
        await storage.publish(name, live, FILES)
        for key in sorted(stale):  # --replace: certherd's own versions of this lineage
            await storage.delete(key)
        await state.save(storage)
        for path, text in lineage.scripts.items():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(path, text.encode(), mode=0o700)
        settings = dataclasses.replace(settings, account=account)
        await settings.save(storage)  # last: a lineage exists once its settings do
    return dataclasses.replace(result, settings=settings, account=account)


async def _store_account(storage: Storage, server: str, account: CertbotAccount) -> str:
    """Store the account (or find it stored) under certherd's layout; its name there."""
    for name in ("default", f"certbot-{account.id[:16]}"):
        options = CaOptions(server, account=check_name(name, "account name"))
        try:
            existing = await load_account(storage, options)
        except NotFoundError:
            record = AccountRecord(account.key, account.url, account.contact)
            await save_account(storage, options, record)
            return name
        if existing.url == account.url:
            return name  # imported before (its key may have been rolled over since)
    raise ConfigError(f"certherd already holds other accounts named like Certbot's {account.id}")


def _state(
    name: str, chain: list[x509.Certificate], version: int, now: dt.datetime
) -> LineageState:
    info = describe_certificate(chain[0])
    try:
        cert_id: str | None = certificate_id(chain[0])
    except CertherdError:
        cert_id = None
    decision = needs_renewal(not_before=info.not_before, not_after=info.not_after, now=now)
    return LineageState(
        name=name,
        version=version,
        serial=info.serial_hex,
        names=info.dns_names + info.ip_addresses,
        issuer=info.issuer_cn,
        not_before=info.not_before,
        not_after=info.not_after,
        certificate_id=cert_id,
        next_check=decision.next_check,
    )
