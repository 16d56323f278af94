"""Reading Certbot's renewal settings: its ConfigObj format, JWK keys and their certherd mapping.

The renewal file (``renewal/<lineage>.conf``) is the subset of ConfigObj INI that
Certbot writes; ``[renewalparams]`` becomes certherd settings here: the authenticator
a list of solver specs (standalone -> http, webroot -> webroot, manual -> hook through
an adapter script, ``dns-<x>`` -> the dns-lexicon provider of that name), the hooks,
and the key type. Certbot's account keys are JWKs (``private_key.json``).
"""

from __future__ import annotations

import functools
import os
import re
import shlex
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certherd.challenges.spec import SolverSpec
from certherd.crypto.encoding import b64url_decode
from certherd.crypto.keys import PrivateKey, load_private_key, private_key_to_pem
from certherd.errors import ConfigError, CryptoError, safe_text
from certherd.key_types import EC_CURVES, RSA_SIZES
from certherd.settings import HookSettings

__all__ = [
    "ACME_V1",
    "LETS_ENCRYPT",
    "SERVERS",
    "hook_settings",
    "key_from_jwk",
    "key_type",
    "parse_conf",
    "read_file",
    "setting_flag",
    "setting_text",
    "solver_specs",
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

# -- ConfigObj, the subset Certbot writes -----------------------------------------------

_SECTION = re.compile(r"^(\[+)\s*(.*?)\s*(\]+)\s*(?:#.*)?$")
_KEY = re.compile(r"""^("[^"]*"|'[^']*'|[^=]+?)\s*=\s*(.*)$""")
_ITEM = re.compile(r"""\s*(?:"([^"]*)"|'([^']*)'|([^,#"'][^,#]*?)?)\s*(,|#.*$|$)""")


SERVERS = {"nginx": ("/etc/nginx", "nginx"), "apache": ("/etc/apache2", "apache2ctl")}
"""Certbot's web-server plugins and their default server root and control program."""


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


def setting_text(section: dict[str, Any], key: str) -> str | None:
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


def setting_flag(section: dict[str, Any], key: str) -> bool:
    """A Certbot renewal-file switch: true for ``true``, ``yes``, ``on`` or ``1``."""
    return (setting_text(section, key) or "").lower() in ("true", "yes", "on", "1")


# -- Keys -------------------------------------------------------------------------------


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


def read_file(path: Path) -> bytes:
    """The bytes of ``path``; ConfigError (one line, with a hint on EACCES) if unreadable."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing") from None
    except OSError as exc:
        hint = " (run as root, or as the owner of the Certbot directory)" if exc.errno == 13 else ""
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}{hint}") from None


# -- Settings mapping -------------------------------------------------------------------


def solver_specs(
    params: dict[str, Any],
    names: tuple[str, ...],
    lineage: str,
    certbot_dir: Path,
    hook_dir: Path | None,
    warnings: list[str],
) -> tuple[tuple[SolverSpec, ...], dict[Path, str]]:
    """The solver specs for Certbot's authenticator, and adapter scripts to write (path: text)."""
    authenticator = setting_text(params, "authenticator") or ""
    plugin = authenticator.rpartition(":")[2]  # old spelling: certbot-dns-x:dns-x
    if plugin == "standalone":
        port = setting_text(params, "http01_port") or "80"
        address = setting_text(params, "http01_address") or ""
        if not port.isdigit():
            raise ConfigError(f"http01_port {port!r} is not a port number")
        host = f"[{address}]" if ":" in address else address
        return (SolverSpec("http", {"listen": f"{host}:{port}" if host else port}),), {}
    if plugin == "webroot":
        return _webroot(params, names), {}
    if plugin in SERVERS:  # http-01 through the running server, as Certbot's plugin did
        root, ctl = SERVERS[plugin]
        options = {
            "server_root": setting_text(params, f"{plugin}_server_root") or root,
            "ctl": setting_text(params, f"{plugin}_ctl") or ctl,
        }
        return (SolverSpec(plugin, options),), {}
    if plugin == "manual":
        return _manual(params, names, lineage, hook_dir, warnings)
    if plugin.startswith("dns-"):
        return (_dns(params, plugin.removeprefix("dns-"), warnings),), {}
    what = f"authenticator {authenticator!r}" if authenticator else "no authenticator"
    raise ConfigError(
        f"{what} in [renewalparams]: certherd has no equivalent; issue it again with "
        "a solver ({solvers})",
        settings=("solvers",),
    )


def _webroot(params: dict[str, Any], names: tuple[str, ...]) -> tuple[SolverSpec, ...]:
    mapping = params.get("webroot_map")
    mapping = (
        {k.lower(): setting_text(mapping, k) for k in mapping} if isinstance(mapping, dict) else {}
    )
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
    auth = setting_text(params, "manual_auth_hook")
    if not auth:
        raise ConfigError(
            "manual authenticator without manual_auth_hook: it cannot renew unattended "
            "(nor can Certbot); issue it again with a solver ({solvers})",
            settings=("solvers",),
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
        "of certherd's own environment they get only PATH, HOME, LANG and TZ"
    )
    return tuple(specs), {
        script: _manual_script(auth, setting_text(params, "manual_cleanup_hook"), names)
    }


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
    credentials = setting_text(params, prefix + "credentials")
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
                "with another provider ({dns.provider})",
                settings=("dns.provider",),
            )
        if known is None:
            warnings.append("install dns-lexicon before renewing: pip install 'certherd[lexicon]'")
        options = {"provider": f"lexicon:{provider}"}
        warnings.append(
            f"DNS credentials are not copied{where}: set LEXICON_{provider.upper()}_<OPTION> "
            f"(e.g. LEXICON_{provider.upper()}_AUTH_TOKEN) in the environment of `certherd renew`"
        )
    seconds = setting_text(params, prefix + "propagation_seconds") or ""
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
        ini = parse_conf(read_file(Path(credentials)).decode(), credentials)
    except (ConfigError, UnicodeDecodeError) as exc:
        warnings.append(
            f"{safe_text(exc, 200)}: set CERTHERD_RFC2136_SERVER and CERTHERD_RFC2136_KEY_NAME"
        )
        return {}
    wanted = {"server": "server", "port": "port", "name": "key_name", "algorithm": "algorithm"}
    found = {ours: setting_text(ini, f"dns_rfc2136_{theirs}") for theirs, ours in wanted.items()}
    return {k: v.lower() if k == "algorithm" else v for k, v in found.items() if v}


def key_type(params: dict[str, Any], key: Any, warnings: list[str]) -> str:
    """certherd's key type (``ec256``, ``rsa2048``, ...) for Certbot's key settings."""
    kind = (
        setting_text(params, "key_type") or ("rsa" if setting_text(params, "rsa_key_size") else "")
    ).lower()
    if not kind:  # older Certbot: the live key tells
        kind = "ecdsa" if isinstance(key, ec.EllipticCurvePrivateKey) else "rsa"
    if kind == "ecdsa":
        curve = (setting_text(params, "elliptic_curve") or "").lower()
        if not curve:
            curve = key.curve.name if isinstance(key, ec.EllipticCurvePrivateKey) else "secp256r1"
        curve = {"prime256v1": "secp256r1"}.get(curve, curve)  # OpenSSL's name of P-256
        found = EC_CURVES.get(curve)
        if found is not None:
            return found.value
        strongest = max(EC_CURVES.values(), key=lambda member: member.bits)
        warnings.append(f"curve {curve} is not supported: new keys will be P-{strongest.bits}")
        return strongest.value
    size_text = setting_text(params, "rsa_key_size") or ""
    size = int(size_text) if size_text.isdigit() else getattr(key, "key_size", min(RSA_SIZES))
    chosen = min((bits for bits in RSA_SIZES if bits >= size), default=max(RSA_SIZES))
    if chosen != size:
        warnings.append(f"RSA keys of {size} bits are not supported: new keys will be {chosen}")
    if kind != "rsa":
        warnings.append(f"unknown key_type {kind!r}: new keys will be RSA {chosen}")
    return RSA_SIZES[chosen].value


def hook_settings(params: dict[str, Any], certbot_dir: Path, warnings: list[str]) -> HookSettings:
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
        own = next((v for v in (setting_text(params, k) for k in keys) if v), None)
        found[kind] = [shlex.quote(str(p)) for p in programs] + ([own] if own else [])
    if kept:
        warnings.append(f"Certbot's directory hooks run from where they are: {', '.join(kept)}")
    return HookSettings(tuple(found["pre"]), tuple(found["post"]), tuple(found["deploy"]))
