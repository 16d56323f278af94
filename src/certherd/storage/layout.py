"""Where everything lives in storage: the one module that builds keys.

::

    accounts/<ca>/<account>/key.pem       account key (private)
    accounts/<ca>/<account>/account.json  account URL, contact, directory URL
    archive/<lineage>/cert<N>.pem         every version ever issued (chain, fullchain,
                                          privkey<N>.pem too; privkey private)
    archive/<lineage>/pending-privkey.pem the key of an order not yet stored (private)
    live/<lineage>/cert.pem ...           the published version (symlinks on a filesystem)
    live/<lineage>.json                   the published version elsewhere ({"version": N})
    renewal/<lineage>.json                how the lineage is obtained (names, solver, ...)
    state/<lineage>.json                  what we know of it (expiry, ARI window, failures)
    notify/<lineage>.json                 when each notification was last sent (dedup)
    challenges/http-01/<token>.json       a key authorization any node of a fleet serves
    challenges/tls-alpn-01/<name>/<token>.json   the same, found by the SNI name
    challenges/listeners/<challenge>/<id>.json   a node's listener answering them (heartbeat)
    index.json                            a summary of all lineages for fast renew checks

Names put into keys are validated here, so a key can never leave its folder.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit

from certherd.errors import ConfigError

__all__ = [
    "CHALLENGES_FOLDER",
    "DEPLOY_MARKERS",
    "FILES",
    "INDEX",
    "SETTINGS_FOLDER",
    "STATE_FOLDER",
    "account_json",
    "account_key",
    "account_key_next",
    "account_lock",
    "archive_file",
    "archive_folder",
    "archive_version",
    "ca_id",
    "challenge_folder",
    "challenge_listener",
    "challenge_record",
    "check_name",
    "deploy_marker",
    "lineage_for",
    "lineage_of_settings",
    "lineage_of_state",
    "live_record",
    "notify_record",
    "pending_key",
    "renewal_settings",
    "state_file",
]

FILES = ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem")
INDEX = "index.json"
SETTINGS_FOLDER = "renewal"
STATE_FOLDER = "state"
_VERSIONED = re.compile(r"^(cert|chain|fullchain|privkey)(\d+)\.pem$")
_NAME_MAX = 128
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,512}$")
_LABEL = r"[a-z0-9_][a-z0-9_-]{0,62}"
_HOST = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
CHALLENGES_FOLDER = "challenges"
DEPLOY_MARKERS = "deploying"
"""A fleet node's markers of deploys owed to its own host (:func:`deploy_marker`)."""
SHARED_CHALLENGES = ("http-01", "tls-alpn-01")


def check_name(name: str, what: str = "lineage name") -> str:
    """Return ``name`` if it is safe as one path segment, else ConfigError."""
    if not _NAME.match(name) or ".." in name:
        raise ConfigError(
            f"{what} {name!r} is not usable: use letters, digits, '.', '_' and '-' "
            "(starting with a letter, digit or '_', no '..', at most 128 characters)"
        )
    return name


def lineage_for(first_name: str) -> str:
    """The default lineage name for a certificate: its first name, normalised.

    A wildcard's ``*`` becomes ``_`` (``*.example.com`` -> ``_.example.com``, as lego
    names its files), so the wildcard and the apex are two lineages: ``_`` is in no
    host name, so no other name maps there (Certbot drops ``*.`` and then has to number
    the second lineage ``example.com-0001``). An IPv6 address's ``:`` become ``_``.
    InvalidNameError if ``first_name`` is not a valid name.
    """
    from certherd.names import normalize_name

    name = normalize_name(first_name).value.replace(":", "_")
    if name.startswith("*."):
        name = "_" + name[1:]
    if len(name) > _NAME_MAX:  # a valid DNS name may be 253 long: keep it distinct
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[: _NAME_MAX - 9]}-{digest}"
    return check_name(name)


def ca_id(directory_url: str) -> str:
    """A stable folder name for a CA: its host (and port) plus a short hash of the URL."""
    parts = urlsplit(directory_url)
    host = (parts.hostname or "ca").lower()
    if parts.port:
        host += f"_{parts.port}"
    digest = hashlib.sha256(directory_url.encode()).hexdigest()[:8]
    return check_name(f"{host}-{digest}", "CA id")


def account_key(ca: str, account: str) -> str:
    """The key of an account's private key (PEM) at the CA ``ca``."""
    return f"accounts/{check_name(ca, 'CA id')}/{check_name(account, 'account name')}/key.pem"


def account_key_next(ca: str, account: str) -> str:
    """Where a rollover's new key waits until the CA has agreed to it."""
    return f"accounts/{check_name(ca, 'CA id')}/{check_name(account, 'account name')}/key-next.pem"


def account_lock(ca: str, account: str) -> str:
    """The lock name that serialises key changes of one account (a short, fixed-size name)."""
    check_name(ca, "CA id")
    check_name(account, "account name")
    digest = hashlib.sha256(f"{ca}/{account}".encode()).hexdigest()[:16]
    return f"account-{digest}"


def account_json(ca: str, account: str) -> str:
    """The key of an account's registration (URL, contacts) at the CA ``ca``."""
    return f"accounts/{check_name(ca, 'CA id')}/{check_name(account, 'account name')}/account.json"


def archive_file(lineage: str, file: str, version: int) -> str:
    """``archive/<lineage>/cert3.pem`` for ``file="cert.pem"``, ``version=3``."""
    if file not in FILES or version < 1:
        raise ValueError(f"bad archive file {file!r} version {version}")
    stem = file.removesuffix(".pem")
    return f"archive/{check_name(lineage)}/{stem}{version}.pem"


def archive_folder(lineage: str) -> str:
    """The prefix of every archive key of ``lineage`` (its versions, its pending key)."""
    return f"archive/{check_name(lineage)}"


def archive_version(key: str) -> tuple[str, int] | None:
    """``("cert.pem", 3)`` for ``archive/<lineage>/cert3.pem``; None for any other key."""
    match = _VERSIONED.match(key.rsplit("/", 1)[-1])
    if match is None or not key.startswith("archive/"):
        return None
    return f"{match.group(1)}.pem", int(match.group(2))


def challenge_folder(challenge: str, server_name: str = "") -> str:
    """The folder of the shared key authorizations of ``challenge``: for tls-alpn-01,
    one folder per SNI name (``server_name``, lower case, no trailing dot)."""
    if challenge not in SHARED_CHALLENGES:
        raise ConfigError(f"no shared records for {challenge!r}: use http-01 or tls-alpn-01")
    if challenge == "http-01":
        return f"{CHALLENGES_FOLDER}/http-01"
    if not _HOST.match(server_name):
        raise ConfigError(f"{server_name[:80]!r} is not a host name usable as a key")
    return f"{CHALLENGES_FOLDER}/tls-alpn-01/{server_name}"


def challenge_listener(challenge: str, listener_id: str = "") -> str:
    """The heartbeat of one node's listener for ``challenge`` (empty id: their folder)."""
    if challenge not in SHARED_CHALLENGES:
        raise ConfigError(f"no shared listeners for {challenge!r}: use http-01 or tls-alpn-01")
    folder = f"{CHALLENGES_FOLDER}/listeners/{challenge}"
    return f"{folder}/{check_name(listener_id, 'listener id')}.json" if listener_id else folder


def challenge_record(challenge: str, token: str, server_name: str = "") -> str:
    """The key of one shared key authorization (see :func:`challenge_folder`); the token
    must be base64url (RFC 8555 §8.1), else ConfigError: CA data never leaves its folder."""
    if not _TOKEN.match(token):
        raise ConfigError(f"the challenge token {token[:80]!r} is not base64url")
    return f"{challenge_folder(challenge, server_name)}/{token}.json"


def deploy_marker(lineage: str) -> str:
    """On a fleet node's host (its config dir): the deploy hooks of a version switched in
    on this host are not known to have finished (kept until they succeed, so a node
    killed in between runs them on its next start)."""
    return f"deploying/{check_name(lineage)}.json"


def live_record(lineage: str) -> str:
    """The key of ``lineage``'s live version on a store without live files."""
    return f"live/{check_name(lineage)}.json"


def notify_record(lineage: str) -> str:
    """When each notification event of ``lineage`` was last sent (one per interval)."""
    return f"notify/{check_name(lineage)}.json"


def pending_key(lineage: str) -> str:
    """The private key of an order placed but not yet stored as a version (private)."""
    return f"archive/{check_name(lineage)}/pending-privkey.pem"


def renewal_settings(lineage: str) -> str:
    """The key of a lineage's settings (names, CA, solvers, key type)."""
    return f"{SETTINGS_FOLDER}/{check_name(lineage)}.json"


def state_file(lineage: str) -> str:
    """The key of a lineage's renewal state (open order, failures, ARI window)."""
    return f"{STATE_FOLDER}/{check_name(lineage)}.json"


def _lineage_in(key: str, folder: str) -> str | None:
    """The lineage of ``<folder>/<lineage>.json``; not checked here, so a stray file
    with a bad name is reported (ConfigError) where it is used, not silently skipped."""
    head, _, name = key.partition("/")
    if head != folder or not name.endswith(".json") or "/" in name:
        return None
    return name[:-5]


def lineage_of_settings(key: str) -> str | None:
    """The lineage whose settings are at ``key`` (``renewal/<lineage>.json``), else None."""
    return _lineage_in(key, SETTINGS_FOLDER)


def lineage_of_state(key: str) -> str | None:
    """The lineage whose state is at ``key`` (``state/<lineage>.json``), else None."""
    return _lineage_in(key, STATE_FOLDER)
