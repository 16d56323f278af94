"""The nginx installer: http-01 through the running nginx, TLS for a lineage, reloads.

Everything certherd adds lives in ``ROOT/certherd/`` (``ROOT`` is the server root,
``/etc/nginx`` by default), and the user's files only ever gain (and lose again) one
``include`` line per matched ``server { }`` block:

- ``acme-challenge.conf``: ``location ^~ /.well-known/acme-challenge/`` served from
  ``ROOT/certherd/http-01/``; included in the blocks that answer the names being proved
  (nginx's own choice per port: :func:`~certherd.install.nginx.parse.match_server`)
  while an order is under way, removed after;
- ``tls-NAME.conf``: ``listen PORT ssl`` (on the addresses the block listens on for
  plain HTTP), ``ssl_certificate`` / ``ssl_certificate_key`` pointing into
  ``live/NAME/`` and, with ``redirect``, HTTP to HTTPS (the challenge path excepted),
  included in the block whose ``server_name`` matches each name of the lineage;
- ``backup/``: a copy of every file before each change (the last twenty changes).

Every change goes through :func:`~certherd.install.nginx.edit.apply_changes`: nginx's own
test before (a failing config is refused) and after (a failing change is undone byte for
byte), then a graceful reload.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from certherd.errors import ConfigError
from certherd.install.nginx.edit import (
    NginxControl,
    add_include,
    apply_changes,
    check_before,
    quoted,
    remove_include,
)
from certherd.install.nginx.parse import (
    NginxConfig,
    ServerBlock,
    answering_servers,
    match_server,
    read_config,
)
from certherd.install.sharing import ServerRoot
from certherd.storage.layout import check_name

__all__ = ["NginxInstaller"]


@dataclass(frozen=True)
class NginxInstaller(ServerRoot):
    """nginx at ``server_root`` (its ``nginx.conf``), controlled with ``ctl``."""

    server_root: Path = Path("/etc/nginx")
    ctl: str = "nginx"
    https_port: int = 443
    redirect: bool = False

    kind = "nginx"

    @property
    def control(self) -> NginxControl:
        return NginxControl(self.ctl, self.server_root / "nginx.conf")

    @property
    def challenge_conf(self) -> Path:
        return self.owned / "acme-challenge.conf"

    @property
    def challenge_root(self) -> Path:
        """The webroot certherd writes http-01 answers under (``.well-known/...``)."""
        return self.owned / "http-01"

    def tls_conf(self, lineage: str, number: int = 0) -> Path:
        suffix = f"+{number}" if number else ""
        return self.owned / f"tls-{check_name(lineage)}{suffix}.conf"

    async def check(self, lineage: str = "", names: Sequence[str] = ()) -> None:
        """Refuse (InstallError) when nginx's config already fails its own test, and
        (ConfigError) when one of ``names`` has no server block to serve it over TLS."""
        await check_before(self.control)
        if names:
            self._tls_blocks(read_config(self.server_root, owned=self.owned), lineage, names)

    # -- http-01 ---------------------------------------------------------------------------

    async def prepare_http01(self, names: Sequence[str]) -> list[ServerBlock]:
        """Include ``acme-challenge.conf`` in the blocks nginx picks for ``names`` on
        each port it serves plain HTTP on; test and reload (only if anything changed).
        Returns the blocks that answer (for a self-check)."""
        async with self._locked():
            self.challenge_root.mkdir(mode=0o755, parents=True, exist_ok=True)
            # nginx's workers (another user) read the answers: 0755 whatever the umask.
            os.chmod(self.challenge_root, 0o755)  # noqa: S103
            config = read_config(self.server_root, owned=self.owned)
            ports = sorted({port for block in config.servers for port in block.plain_ports()})
            blocks: dict[int, ServerBlock] = {}
            for name in names:
                for port in ports:
                    for block in answering_servers(config.servers, name, port, fallback=True):
                        blocks[block.index] = block
            if not blocks:
                raise ConfigError(
                    f"nginx serves no plain HTTP for {', '.join(names)} ({config.main}): "
                    "http-01 needs a server block listening on port 80"
                )
            wanted = self._challenge_location().encode()
            changes: dict[Path, bytes | None] = {}
            current = self.challenge_conf.read_bytes() if self.challenge_conf.exists() else None
            if current != wanted:
                changes[self.challenge_conf] = wanted
            changes.update(
                self._with_includes(
                    config,
                    list(blocks.values()),
                    self.challenge_conf,
                    "http-01 answers while certherd proves a name",
                )
            )
            self._mark_user()
            if changes:
                await apply_changes(self.control, self.owned, changes)
            return list(blocks.values())

    async def finish_http01(self, uses: int = 1) -> None:
        """Take the challenge include away again (once no other certherd process on
        this server root still proves names), test and reload. ``uses``: how many
        :meth:`prepare_http01` calls this ends."""
        async with self._locked():
            if self._unmark_user(uses):
                return  # another certherd process still proves names here
            config = read_config(self.server_root, owned=self.owned)
            changes: dict[Path, bytes | None] = dict(
                self._without_includes(config, self.challenge_conf)
            )
            if self.challenge_conf.exists():
                changes[self.challenge_conf] = None
            if changes:
                await apply_changes(self.control, self.owned, changes)

    def _challenge_location(self) -> str:
        return (
            "# certherd: answers ACME http-01 challenges while certherd proves a name;\n"
            "# included only then, removed after.\n"
            "location ^~ /.well-known/acme-challenge/ {\n"
            f"    root {quoted(self.challenge_root)};\n"
            "    default_type text/plain;\n"
            "    try_files $uri =404;\n"
            "}\n"
            "# A block that redirects or returns at server level (return 301 https://...)\n"
            "# would answer before any location: this is its first directive, so stop there.\n"
            'if ($uri ~ "^/\\.well-known/acme-challenge/") { break; }\n'
        )

    # -- TLS for a lineage -----------------------------------------------------------------

    async def install(
        self, lineage: str, names: Sequence[str], certificate: Path, key: Path
    ) -> list[ServerBlock]:
        """Serve ``certificate`` / ``key`` over TLS in the blocks whose server_name
        matches each of ``names``; test and reload. Returns the blocks."""
        async with self._locked():
            config = read_config(self.server_root, owned=self.owned)
            blocks = self._tls_blocks(config, lineage, names)
            changes: dict[Path, bytes | None] = {}
            files: dict[str, Path] = {}
            targets: list[tuple[ServerBlock, Path]] = []
            for block in blocks:
                content = self._tls_content(lineage, block, certificate, key)
                if content not in files:
                    files[content] = path = self.tls_conf(lineage, len(files))
                    if not path.exists() or path.read_bytes() != content.encode():
                        changes[path] = content.encode()
                targets.append((block, files[content]))
            changes.update(self._edits(config, targets, f"TLS for {lineage}"))
            await apply_changes(self.control, self.owned, changes)
            return blocks

    def _tls_blocks(
        self, config: NginxConfig, lineage: str, names: Sequence[str]
    ) -> list[ServerBlock]:
        ports = sorted({port for block in config.servers for port in block.plain_ports()})
        chosen: dict[int, ServerBlock] = {}
        for name in names:
            # On the lowest plain port serving the name, the block nginx picks for it on
            # each address (listen 192.0.2.1:80 and listen 80 may both name it).
            found: list[ServerBlock] = []
            for port in ports:
                found = answering_servers(config.servers, name, port, fallback=False)
                if found:
                    break
            if not found:
                raise ConfigError(
                    f"no nginx server block has a server_name matching {name} "
                    f"({config.main}): add `server_name {name};` to the block that serves it"
                )
            serving = match_server(config.servers, name, self.https_port, fallback=False, ssl=True)
            if serving is not None and serving not in found:
                raise ConfigError(
                    f"the server block at {serving.where} already serves {name} over TLS on "
                    f"port {self.https_port} with its own certificate: remove its TLS lines "
                    f"(listen ... ssl, ssl_certificate) so certherd can add its own to "
                    f"{found[0].where}, or choose another https port"
                )
            chosen.update((block.index, block) for block in found)
        for block in chosen.values():
            text = config.texts[block.file][block.open_offset : block.close_offset]
            others = set(re.findall(r"/tls-([^\"/+]+?)(?:\+\d+)?\.conf\"", text)) - {lineage}
            if others:
                raise ConfigError(
                    f"the server block at {block.where} already serves the lineage "
                    f"{sorted(others)[0]} over TLS: one block serves one certificate; give "
                    "these names their own server block"
                )
            if "ssl_certificate" in block.directives and f"tls-{lineage}" not in text:
                raise ConfigError(
                    f"the server block at {block.where} has its own ssl_certificate: "
                    "remove its TLS lines (or give it its own block) so certherd can add its own"
                )
        return list(chosen.values())

    def _tls_content(self, lineage: str, block: ServerBlock, certificate: Path, key: Path) -> str:
        lines = [
            f"# certherd: TLS for the lineage {lineage}; `certherd uninstall {lineage}` removes it"
        ]
        if not any(listen.ssl and listen.port == self.https_port for listen in block.listens):
            addresses = sorted({listen.address for listen in block.listens if not listen.ssl})
            for address in addresses or [""]:
                where = f"{address}:{self.https_port}" if address else str(self.https_port)
                lines.append(f"listen {where} ssl;")
        lines.append(f"ssl_certificate {quoted(certificate)};")
        lines.append(f"ssl_certificate_key {quoted(key)};")
        if self.redirect:
            port = "" if self.https_port == 443 else f":{self.https_port}"
            lines += [
                "# HTTP to HTTPS, but for http-01 answers (the CA asks over HTTP)",
                "set $certherd_https $scheme;",
                'if ($uri ~ "^/\\.well-known/acme-challenge/") { set $certherd_https https; }',
                f"if ($certherd_https = http) {{ return 301 https://$host{port}$request_uri; }}",
            ]
        return "\n".join(lines) + "\n"

    async def after_renewal(
        self, lineage: str = "", certificate: Path | None = None, key: Path | None = None
    ) -> None:
        """A new version is live under ``live/`` (nginx reads the files named in its
        config, so the arguments are not needed): test, then reload gracefully."""
        async with self._locked():
            await apply_changes(self.control, self.owned, {})

    async def uninstall(self, lineage: str) -> bool:
        """Take away what :meth:`install` added for ``lineage``; False if nothing was."""
        async with self._locked():
            config = read_config(self.server_root, owned=self.owned)
            changes = self._without_tls(config, lineage)
            if not changes:
                return False
            await apply_changes(self.control, self.owned, changes)
            return True

    # -- text changes ----------------------------------------------------------------------

    def _tls_files(self, lineage: str) -> list[Path]:
        return sorted(self.owned.glob(f"tls-{check_name(lineage)}.conf")) + sorted(
            self.owned.glob(f"tls-{lineage}+*.conf")
        )

    def _without_tls(self, config: NginxConfig, lineage: str) -> dict[Path, bytes | None]:
        """Every include of the lineage's TLS files taken out (all of them from each file:
        two blocks of one file may include two of them), and the files removed."""
        targets = self._tls_files(lineage)
        changes: dict[Path, bytes | None] = {}
        for path, text in config.texts.items():
            edited = text
            for target in targets:
                edited = remove_include(edited, target)
            if edited != text:
                changes[path] = edited.encode("utf-8", "surrogateescape")
        changes.update(dict.fromkeys(targets))
        return changes

    def _with_includes(
        self, config: NginxConfig, blocks: list[ServerBlock], target: Path, why: str
    ) -> dict[Path, bytes | None]:
        return self._edits(config, [(block, target) for block in blocks], why)

    def _edits(
        self, config: NginxConfig, targets: list[tuple[ServerBlock, Path]], why: str
    ) -> dict[Path, bytes | None]:
        texts: dict[Path, str] = {}
        # Last block first, so the offsets of the ones before stay right.
        for block, target in sorted(targets, key=lambda item: -item[0].open_offset):
            text = texts.get(block.file, config.texts[block.file])
            inside = text[block.open_offset : block.close_offset]
            if f"include {quoted(target)};" in inside:
                continue
            texts[block.file] = add_include(text, block, target, why)
        return {path: text.encode("utf-8", "surrogateescape") for path, text in texts.items()}

    def _without_includes(self, config: NginxConfig, target: Path) -> dict[Path, bytes | None]:
        changes: dict[Path, bytes | None] = {}
        for path, text in config.texts.items():
            edited = remove_include(text, target)
            if edited != text:
                changes[path] = edited.encode("utf-8", "surrogateescape")
        return changes
