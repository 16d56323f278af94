"""The CLI's words for the library's settings: which flag (or certherd.toml key) sets each.

The library names settings as a Python program sets them (``eab_kid``, ``ca_bundle``,
``webroot.path``; see :class:`certherd.errors.CertherdError`); what the CLI prints
names what its user sets instead, chosen by where the command takes its settings from:

- commands that take them from flags (``issue``, ``account ...``, ``demo``,
  ``import-certbot``...): the flag, ``--eab-kid``;
- ``apply``, which takes them from certherd.toml only: the key there,
  ``eab_kid in certherd.toml``; a setting certherd.toml does not have (``--force``)
  stays a flag;
- ``renew`` and ``run`` with a certherd.toml: they work on every lineage, from that file
  or from the flags of the ``issue`` that made it: for a lineage the file lists, its
  key; for another, the flag; for no lineage in particular, both:
  ``--eab-kid (or eab_kid in certherd.toml)``. Without a certherd.toml, the flag.

One table (:data:`SETTINGS`), plus :data:`PER_COMMAND` where a command's remedy is
another command's flag. Kept light: imported only when an error is printed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from certherd.config_dir import CONFIG_FILE
from certherd.errors import CertherdError, SettingsText, safe_text

__all__ = ["PER_COMMAND", "SETTINGS", "Setting", "naming", "words"]


@dataclass(frozen=True)
class Setting:
    """How a CLI user sets one library setting: a flag, and its certherd.toml key (None
    when the file has no such key)."""

    flag: str
    key: str | None = None


SOLVER_FLAGS = "--http, --webroot, --tls-alpn, --dns or --solver-hook"

SETTINGS: Mapping[str, Setting] = {
    # the CA and the account
    "directory_url": Setting("--server", "server"),
    "server": Setting("--server", "server"),
    "ca": Setting("--ca", "ca"),
    "ca_bundle": Setting("--ca-bundle", "ca_bundle"),
    "email": Setting("--email", "email"),
    "agree_tos": Setting("--agree-tos", "agree_tos"),
    "eab_kid": Setting("--eab-kid", "eab_kid"),
    "eab_hmac_key": Setting("--eab-hmac-key-file", "eab_hmac_key_file"),
    # the certificate
    "identifiers": Setting("-d NAME", "domains"),
    "names": Setting("-d NAME", "domains"),
    "name": Setting("--name", "name"),
    "profile": Setting("--profile", "profile"),
    "force": Setting("--force"),
    # the solvers (options as ``kind.option``)
    "solvers": Setting(SOLVER_FLAGS, "solver"),
    "http.listen": Setting("--http [ADDR:]PORT", "the http solver's listen"),
    "webroot.path": Setting("--webroot DIR", "the webroot solver's path"),
    "dns.provider": Setting("--dns PROVIDER", "the dns solver's provider"),
    "hook.command": Setting("--solver-hook TYPE=PROGRAM", "the hook solver's command"),
    "fleet.challenge": Setting("--fleet-solver CHALLENGE", "the fleet solver's challenge"),
    "http_serve": Setting("--http-serve [ADDR:]PORT"),
    "tls_alpn_serve": Setting("--tls-alpn-serve [ADDR:]PORT"),
    "installer": Setting("--nginx, --apache or --haproxy", "installer"),
    "nginx_ctl": Setting("--nginx-ctl", "the nginx installer's ctl"),
    "apache_ctl": Setting("--apache-ctl", "the apache installer's ctl"),
    "haproxy_config": Setting("--haproxy-config", "the haproxy installer's config"),
    "haproxy_socket": Setting("--haproxy-socket", "the haproxy installer's socket"),
    "haproxy_crt_dir": Setting("--haproxy-crt-dir", "the haproxy installer's crt_dir"),
    "haproxy_frontend": Setting("--haproxy-frontend", "the haproxy installer's frontend"),
    # the daemon
    "metrics": Setting("--metrics"),
    "metrics_auth": Setting("--metrics-auth"),
    "storage_key_file": Setting("--storage-key-file"),
    "storage": Setting("--storage"),
    "storage_timeout": Setting("--storage-timeout"),
    # installing the schedule
    "user": Setting("--user"),
}
"""Every setting a library message names, with the flag and certherd.toml key that set it."""

PER_COMMAND: Mapping[str, Mapping[str, str]] = {
    # A Certbot lineage that cannot be imported as it is gets issued again.
    "import-certbot": {
        "solvers": f"`certherd issue` with {SOLVER_FLAGS}",
        "dns.provider": "`certherd issue --dns PROVIDER`",
    },
}
"""Where a command's words for a setting differ from :data:`SETTINGS`'s flag."""

FROM_FILE = frozenset({"apply"})
"""The commands that take a certificate's settings from certherd.toml only."""
FROM_EITHER = frozenset({"renew", "run"})
"""The commands that work on every lineage: made from certherd.toml or by ``issue``."""


def naming(command: str, *, from_file: bool | None) -> Callable[[str], str]:
    """The words for each setting in ``command``: ``from_file`` True (certherd.toml),
    False (flags) or None (either: both are named)."""
    own = PER_COMMAND.get(command, {})

    def name(setting: str) -> str:
        if setting in own:
            return own[setting]
        known = SETTINGS.get(setting)
        if known is None:
            return setting
        if known.key is None or from_file is False:
            return known.flag
        if from_file:
            return f"{known.key} in certherd.toml"
        return f"{known.flag} (or {known.key} in certherd.toml)"

    return name


def words(
    text: str | BaseException,
    command: str,
    config_dir: Path,
    limit: int = 2000,
    *,
    lineage: str | None = None,
) -> str:
    """``text`` (an error, or an outcome's error or reason) with its settings named as
    ``command``'s user sets them; anything that names none, as it reads. ``lineage``:
    the lineage it is about, if any (``renew`` and ``run`` then name the certherd.toml key
    for a lineage the file lists, the flag for one ``issue`` made)."""
    if isinstance(text, CertherdError):
        if not text.settings:
            return safe_text(text, limit)
        text = text.text(limit)
    elif isinstance(text, BaseException):
        return safe_text(text, limit)
    if not isinstance(text, SettingsText) or not text.settings:
        return text
    if command in FROM_FILE:
        from_file: bool | None = True
    elif command in FROM_EITHER and (config_dir / CONFIG_FILE).exists():
        listed = _listed(config_dir / CONFIG_FILE) if lineage is not None else None
        from_file = None if listed is None else lineage in listed
    else:
        from_file = False
    return text.naming(naming(command, from_file=from_file))


def _listed(path: Path) -> frozenset[str] | None:
    """The lineages certherd.toml at ``path`` lists; None if it cannot be read (then
    both the flag and the key are named). Read again when the file changes (``run``)."""
    try:
        seen = path.stat()
    except OSError:
        return None
    return _listed_version(path, seen.st_mtime_ns, seen.st_size)


@functools.lru_cache(maxsize=4)
def _listed_version(path: Path, mtime_ns: int, size: int) -> frozenset[str] | None:
    from certherd.config import load_config_file

    try:
        return frozenset(settings.name for settings in load_config_file(path).certificates)
    except CertherdError:
        return None
