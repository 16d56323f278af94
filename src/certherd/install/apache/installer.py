"""The Apache installer: http-01 through the running Apache, a TLS vhost per lineage,
graceful restarts.

What certherd adds (``ROOT`` is the server root, ``/etc/apache2`` by default):

- ``ROOT/certherd/acme-challenge.conf``: an ``Alias`` of ``/.well-known/acme-challenge/``
  to ``ROOT/certherd/http-01/...`` (and a rewrite exemption, so a vhost that rewrites
  everything to HTTPS still answers), included as the first lines of the vhosts that
  answer the names being proved while an order is under way, removed after;
- ``NAME-certherd.conf`` beside the file of the matched vhost (in Debian's layout
  ``sites-available/``, enabled by a ``sites-enabled/`` link as ``a2ensite`` makes it):
  for each matched vhost (in each address group, the one naming a name) a copy on its
  own addresses and the HTTPS port with ``SSLEngine on`` and
  ``SSLCertificateFile`` / ``SSLCertificateKeyFile`` pointing into ``live/NAME/``, and
  the ``Listen`` for that port when nothing else opens it;
- with ``redirect``: ``ROOT/certherd/redirect-NAME.conf`` (HTTP to HTTPS but for the
  challenge path), included in the matched plain vhosts;
- ``mod_ssl`` (and ``mod_rewrite`` for the redirect) enabled with ``a2enmod`` when Apache
  does not load it; the links it made are taken away again by the last uninstall.

Every change goes through :func:`~certherd.install.apache.edit.apply_changes`: Apache's
own config test before and after, byte-for-byte restore, then a graceful restart.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from certherd.errors import ConfigError
from certherd.install import files
from certherd.install.apache.control import ApacheControl
from certherd.install.apache.edit import (
    MARK,
    add_include,
    apply_changes,
    check_before,
    has_include,
    quoted,
    remove_include,
)
from certherd.install.apache.parse import (
    ApacheConfig,
    VirtualHost,
    answering_vhosts,
    match_vhost,
    parse_includes,
    read_config,
    split_address,
)
from certherd.install.sharing import ServerRoot
from certherd.storage.layout import check_name

__all__ = ["ApacheInstaller"]

_Edit = tuple[VirtualHost, Path, str, bool]
"""An include to add: in (or, ``after``, right after) the vhost, of the file, why."""
_REDIRECTS = re.compile(r"^\s*(Redirect|RedirectMatch|RedirectPermanent|RewriteRule)\b.*https://")


@dataclass(frozen=True)
class ApacheInstaller(ServerRoot):
    """Apache at ``server_root``, controlled with ``ctl`` (Debian's apache2ctl)."""

    server_root: Path = Path("/etc/apache2")
    ctl: str = "apache2ctl"
    https_port: int = 443
    redirect: bool = False

    kind = "apache"

    @property
    def control(self) -> ApacheControl:
        return ApacheControl(self.ctl, self.server_root)

    @property
    def challenge_conf(self) -> Path:
        return self.owned / "acme-challenge.conf"

    @property
    def challenge_root(self) -> Path:
        """The webroot certherd writes http-01 answers under (``.well-known/...``)."""
        return self.owned / "http-01"

    def redirect_conf(self, lineage: str) -> Path:
        return self.owned / f"redirect-{check_name(lineage)}.conf"

    @property
    def _modules_file(self) -> Path:
        return self.owned / "modules.json"

    async def read(self, assume: Sequence[str] = ()) -> ApacheConfig:
        """The running config as Apache reads it (its own include list, modules, defines);
        ``assume``: modules certherd is about to enable, taken as loaded."""
        control = self.control
        tree = parse_includes(await control.dump("INCLUDES"))
        modules = await control.modules() | {f"{name}_module" for name in assume}
        defines, _pid = await control.run_config()
        return read_config(self.server_root, tree, modules, defines, owned=self.owned)

    async def check(self, lineage: str = "", names: Sequence[str] = ()) -> None:
        """Refuse (InstallError) when Apache's config already fails its own test, and
        (ConfigError) when one of ``names`` has no vhost to serve it over TLS."""
        await check_before(self.control)
        if names:
            self._tls_vhosts(await self.read(), lineage, names)

    # -- http-01 ---------------------------------------------------------------------------

    async def prepare_http01(self, names: Sequence[str]) -> list[VirtualHost]:
        """Include ``acme-challenge.conf`` in the vhosts Apache picks for ``names`` on
        each port it serves plain HTTP on; test and restart gracefully (only if anything
        changed). Returns the vhosts that answer."""
        async with self._locked():
            self.challenge_root.mkdir(mode=0o755, parents=True, exist_ok=True)
            # Apache's children (another user) read the answers: 0755 whatever the umask.
            os.chmod(self.challenge_root, 0o755)  # noqa: S103
            config = await self.read()
            if "alias_module" not in config.modules:
                raise ConfigError(
                    "http-01 through Apache needs mod_alias, which it does not load: a2enmod alias"
                )
            ports = sorted({port for v in config.vhosts if not v.ssl for port in v.ports() if port})
            chosen: dict[int, VirtualHost] = {}
            for name in names:
                for port in ports:
                    for vhost in answering_vhosts(config.vhosts, name, port):
                        chosen[vhost.index] = vhost
            if not chosen:
                raise ConfigError(
                    f"Apache serves no plain HTTP for {', '.join(names)} ({config.main}): "
                    "http-01 needs a <VirtualHost *:80>"
                )
            changes: dict[Path, files.Content] = {}
            wanted = self._challenge_text().encode()
            if files.current(self.challenge_conf) != wanted:
                changes[self.challenge_conf] = wanted
            changes.update(
                self._includes(
                    config, list(chosen.values()), self.challenge_conf,
                    "http-01 answers while certherd proves a name",
                )
            )  # fmt: skip
            self._mark_user()
            if changes:
                await apply_changes(self.control, self.owned, changes)
            return list(chosen.values())

    async def finish_http01(self, uses: int = 1) -> None:
        """Take the challenge include away again (once no other certherd process on
        this server root still proves names), test and restart gracefully."""
        async with self._locked():
            if self._unmark_user(uses):
                return
            config = await self.read()
            changes: dict[Path, files.Content] = dict(
                self._without_includes(config, self.challenge_conf)
            )
            if self.challenge_conf.exists():
                changes[self.challenge_conf] = None
            if changes:
                await apply_changes(self.control, self.owned, changes)

    def _challenge_text(self) -> str:
        folder = self.challenge_root / ".well-known" / "acme-challenge"
        return (
            "# certherd: answers ACME http-01 challenges while certherd proves a name;\n"
            "# included only then, removed after.\n"
            "<IfModule mod_rewrite.c>\n"
            "    # A vhost that rewrites everything (to HTTPS) lets the challenge through.\n"
            "    RewriteEngine on\n"
            '    RewriteRule "^/\\.well-known/acme-challenge/" - [END]\n'
            "</IfModule>\n"
            f'Alias /.well-known/acme-challenge/ {quoted(folder)[:-1]}/"\n'
            f"<Directory {quoted(folder)}>\n"
            "    Options None\n"
            "    AllowOverride None\n"
            "    ForceType text/plain\n"
            "    Require all granted\n"
            "</Directory>\n"
        )

    # -- TLS for a lineage -----------------------------------------------------------------

    def tls_conf(self, lineage: str, vhosts: list[VirtualHost]) -> Path:
        """``NAME-certherd.conf`` beside the (real) file of the first matched vhost."""
        folder = Path(os.path.realpath(vhosts[0].file)).parent
        return folder / f"{check_name(lineage)}-certherd.conf"

    def _existing_tls(self, config: ApacheConfig, lineage: str) -> list[Path]:
        name = f"{check_name(lineage)}-certherd.conf"
        found = {Path(os.path.realpath(path)) for path in config.texts if path.name == name}
        for folder in (self.server_root / "sites-available", self.server_root / "sites-enabled"):
            if (folder / name).exists() or (folder / name).is_symlink():
                found.add(folder / name)
        return sorted(found)

    async def install(
        self, lineage: str, names: Sequence[str], certificate: Path, key: Path
    ) -> list[VirtualHost]:
        """Serve ``certificate`` / ``key`` over TLS in a copy of each vhost whose name
        matches one of ``names``; test and restart gracefully. Returns the vhosts."""
        modules = ["ssl", "rewrite"] if self.redirect else ["ssl"]
        async with self._locked():
            # What a2enmod is about to load counts (ports.conf's <IfModule ssl_module> Listen).
            config = await self.read(assume=modules)
            vhosts = self._tls_vhosts(config, lineage, names)
            target = self.tls_conf(lineage, vhosts)
            changes: dict[Path, files.Content] = {}
            content = self._tls_text(config, lineage, vhosts, target, certificate, key)
            if files.current(target) != content.encode():
                changes[target] = content.encode()
            enabled, edits = self._enable(config, target, vhosts[0])
            changes.update(enabled)
            if self.redirect:
                redirect = self.redirect_conf(lineage)
                changes[redirect] = self._redirect_text().encode()
                edits += [(vhost, redirect, f"HTTPS for {lineage}", False) for vhost in vhosts]
            # One pass over each file: its TLS Include after a vhost and the redirect
            # include inside it may go into the same file.
            changes.update(self._insert(config, edits))
            added = await apply_changes(self.control, self.owned, changes, modules=modules)
            if added:
                self._remember_modules(added)
            return vhosts

    def _enable(
        self, config: ApacheConfig, target: Path, vhost: VirtualHost
    ) -> tuple[dict[Path, files.Content], list[_Edit]]:
        """How ``target`` gets read: a ``sites-enabled/`` link in Debian's layout, else
        nothing when an Include glob already covers it, else an Include after the vhost
        (an edit for :meth:`_insert`)."""
        if target.parent == (self.server_root / "sites-available").resolve():
            link = self.server_root / "sites-enabled" / target.name
            wanted = files.Link(f"../sites-available/{target.name}")
            return ({} if files.current(link) == wanted else {link: wanted}), []
        if config.would_include(target) or has_include(config.texts[vhost.file], target):
            return {}, []
        return {}, [(vhost, target, "TLS copy of this vhost", True)]

    def _tls_vhosts(
        self, config: ApacheConfig, lineage: str, names: Sequence[str]
    ) -> list[VirtualHost]:
        ports = sorted({port for v in config.vhosts if not v.ssl for port in v.ports() if port})
        chosen: dict[int, VirtualHost] = {}
        mine = f"{lineage}-certherd.conf"
        for name in names:
            # On the lowest plain port serving the name: in each address group, the
            # vhost Apache picks for it (<VirtualHost 192.0.2.1:80> and *:80 may both
            # name it, serving other content), each to be copied on its own address.
            found: list[VirtualHost] = []
            for port in ports:
                found = answering_vhosts(config.vhosts, name, port, fallback=False)
                if found:
                    break
            if not found:
                raise ConfigError(
                    f"no Apache <VirtualHost> has a ServerName or ServerAlias matching {name} "
                    f"({config.main}): add `ServerAlias {name}` to the vhost that serves it"
                )
            serving = match_vhost(config.vhosts, name, self.https_port, fallback=False, ssl=True)
            if serving is not None and serving.file.name != mine:
                raise ConfigError(
                    f"the <VirtualHost> at {serving.where} already serves {name} over TLS on "
                    f"port {self.https_port} with its own certificate: disable it (a2dissite) "
                    "so certherd can add its own, or choose another https port"
                )
            chosen.update((vhost.index, vhost) for vhost in found)
        return list(chosen.values())

    def _tls_text(
        self,
        config: ApacheConfig,
        lineage: str,
        vhosts: list[VirtualHost],
        target: Path,
        certificate: Path,
        key: Path,
    ) -> str:
        port = self.https_port
        parts = [
            f"# certherd: TLS for the lineage {lineage}: a copy of each vhost serving its "
            f"names, on port {port};\n# `certherd uninstall {lineage}` removes this file, "
            f"`certherd install {lineage}` copies the vhost again after you change it.\n"
        ]
        real_target = Path(os.path.realpath(target))
        if not any(
            found == port and Path(os.path.realpath(path)) != real_target
            and not Path(os.path.realpath(path)).name.endswith("-certherd.conf")
            for _address, found, path in config.listens
        ):  # fmt: skip
            # One Listen per port across certherd's files (Apache refuses a second one).
            parts.append(
                f"<IfDefine !CERTHERD_LISTEN_{port}>\n"
                f"    Define CERTHERD_LISTEN_{port}\n"
                f"    Listen {port} https\n"
                "</IfDefine>\n"
            )
        for vhost in vhosts:
            parts.append(self._copy(config, vhost, certificate, key))
        return "".join(parts)

    def _copy(self, config: ApacheConfig, vhost: VirtualHost, certificate: Path, key: Path) -> str:
        text = config.texts[vhost.file]
        node = vhost.node
        body = text[node.end : node.close_start]
        for target in (self.challenge_conf, *self.owned.glob("redirect-*.conf")):
            body = remove_include(body, target)
        body = body.replace("\r\n", "\n")
        lines = []
        for line in body.splitlines():
            if _REDIRECTS.match(line):
                lines.append(f"# certherd: left out (it redirects to HTTPS): {line.strip()}")
            else:
                lines.append(line)
        addresses: dict[str, None] = {}  # each address once (*:80 *:8080 -> *:443)
        for address in vhost.addresses:
            host, _port = split_address(address)
            addresses[f"{host}:{self.https_port}"] = None
        indent = next((ln[: len(ln) - len(ln.lstrip())] for ln in lines if ln.strip()), "    ")
        own = [
            f"{indent}{MARK} TLS with the lineage's live files",
            f"{indent}SSLEngine on",
            f"{indent}SSLCertificateFile {quoted(certificate)}",
            f"{indent}SSLCertificateKeyFile {quoted(key)}",
        ]
        return (
            f"\n# certherd: from {vhost.where}\n<VirtualHost {' '.join(addresses)}>\n"
            + "\n".join([*lines, *own])
            + "\n</VirtualHost>\n"
        )

    def _redirect_text(self) -> str:
        port = "" if self.https_port == 443 else f":{self.https_port}"
        return (
            "# certherd: HTTP to HTTPS, but for http-01 answers (the CA asks over HTTP)\n"
            "RewriteEngine on\n"
            'RewriteCond "%{REQUEST_URI}" "!^/\\.well-known/acme-challenge/"\n'
            f'RewriteRule "^" "https://%{{SERVER_NAME}}{port}%{{REQUEST_URI}}" [END,NE,R=301]\n'
        )

    async def after_renewal(
        self, lineage: str = "", certificate: Path | None = None, key: Path | None = None
    ) -> None:
        """A new version is live under ``live/`` (Apache reads the files named in its
        config, so the arguments are not needed): test, then restart gracefully."""
        async with self._locked():
            await apply_changes(self.control, self.owned, {})

    async def uninstall(self, lineage: str) -> bool:
        """Take away what :meth:`install` added for ``lineage``; False if nothing was."""
        async with self._locked():
            config = await self.read()
            existing = self._existing_tls(config, lineage)
            redirect = self.redirect_conf(lineage)
            changes = self._without_includes(config, *existing, redirect)
            changes.update(dict.fromkeys(existing))
            if redirect.exists():
                changes[redirect] = None
            if not changes:
                return False
            if not self._other_tls(config, lineage):
                for link in self._forget_modules():
                    changes[link] = None
            await apply_changes(self.control, self.owned, changes)
            return True

    def _other_tls(self, config: ApacheConfig, lineage: str) -> bool:
        mine = f"{check_name(lineage)}-certherd.conf"
        return any(
            path.name.endswith("-certherd.conf") and path.name != mine for path in config.texts
        )

    def _remember_modules(self, added: list[Path]) -> None:
        known = self._known_modules()
        known.update({str(path): os.readlink(path) for path in added if path.is_symlink()})
        files.write(self._modules_file, json.dumps(known, indent=1).encode())

    def _known_modules(self) -> dict[str, str]:
        try:
            data = json.loads(self._modules_file.read_bytes())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _forget_modules(self) -> list[Path]:
        """The module links certherd's a2enmod made that still point where they did."""
        links = [
            Path(path)
            for path, target in self._known_modules().items()
            if Path(path).is_symlink() and os.readlink(path) == target
        ]
        self._modules_file.unlink(missing_ok=True)
        return links

    # -- text changes ----------------------------------------------------------------------

    def _includes(
        self, config: ApacheConfig, vhosts: list[VirtualHost], target: Path, why: str
    ) -> dict[Path, files.Content]:
        return self._insert(config, [(vhost, target, why, False) for vhost in vhosts])

    def _insert(self, config: ApacheConfig, edits: list[_Edit]) -> dict[Path, files.Content]:
        """Each edit's include (as the vhost's first lines, or with ``after`` right after
        it; one already there is left), all of a file's in one pass from its end, so the
        offsets of the ones before stay right."""
        texts: dict[Path, str] = {}

        def offset(edit: _Edit) -> int:
            return edit[0].node.close_end if edit[3] else edit[0].node.end

        for vhost, target, why, after in sorted(edits, key=offset, reverse=True):
            text = texts.get(vhost.file, config.texts[vhost.file])
            if has_include(text[vhost.node.start : vhost.node.close_end], target):
                continue
            texts[vhost.file] = add_include(text, vhost.node, target, why, after=after)
        return {path: text.encode("utf-8", "surrogateescape") for path, text in texts.items()}

    def _without_includes(self, config: ApacheConfig, *targets: Path) -> dict[Path, files.Content]:
        """Every file without certherd's includes of ``targets`` (all of them from each
        file: one file may include several)."""
        changes: dict[Path, files.Content] = {}
        for path, text in config.texts.items():
            edited = text
            for target in targets:
                edited = remove_include(edited, target)
            if edited != text:
                changes[path] = edited.encode("utf-8", "surrogateescape")
        return changes
