"""The HAProxy installer: a lineage's certificate served from a ``crt`` directory,
renewals hot-swapped through the runtime API, no reload.

What certherd writes:

- ``CRT_DIR/NAME.pem``: the lineage's full chain and private key in one file (mode
  0600; HAProxy reads it as root), what ``bind ... ssl crt CRT_DIR/`` loads;
- the first time, when no ``bind`` of the config loads ``CRT_DIR`` yet (an empty crt
  directory fails HAProxy's own test, so a fresh config cannot have that line before the
  first certificate exists): one line ``bind ADDR:HTTPS_PORT ssl crt CRT_DIR/`` in the
  one HTTP frontend that binds plain HTTP, after its last ``bind`` and marked
  ``# certherd: ...``; taken away again with the last certificate;
- or, when the TLS bind on the HTTPS port loads a crt-list, two lines at its end (a
  comment and the PEM's path: :mod:`.crtlist`), added and taken out at run time too;
- ``CONFIG_DIR/certherd/backup/``: a copy of the config before each change of it.

Every change: HAProxy's own test before (a config failing it is refused, nothing
changes), the files written atomically (temp + fsync + rename: the temporary file is a
dot file, which HAProxy's directory loading skips), the test again (every file back to
its previous bytes when it fails, with HAProxy's own message), then the running HAProxy
is told: through the runtime socket (``set ssl cert`` + ``commit ssl cert``; a new file
also ``new ssl cert`` and ``add ssl crt-list``), or, without a socket and for a new
``bind`` line, a graceful master-worker reload (:mod:`.control`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from certherd._nofollow import untrusted_reason
from certherd.crypto.files import atomic_write
from certherd.errors import ConfigError, InstallError
from certherd.install import files
from certherd.install.haproxy import crtlist
from certherd.install.haproxy.config import (
    Bind,
    HaproxyConfig,
    Section,
    address_hosts,
    address_port,
    comment_start,
    read_config,
)
from certherd.install.haproxy.control import HaproxyControl, RuntimeApi
from certherd.storage.layout import check_name

__all__ = ["HaproxyInstaller"]

log = logging.getLogger(__name__)

MARK = "# certherd:"
JOINED = "added to the next line (certherd uninstall takes it away)"
LOCK_WAIT = 120.0
"""How long to wait for another certherd process changing the same HAProxy (seconds)."""
_SAFE_PATH = re.compile(r"[A-Za-z0-9._/+@=,-]+")


@dataclass(frozen=True)
class HaproxyInstaller:
    """HAProxy with ``config``, serving certificates from ``crt_dir``; ``socket``: its
    runtime API (empty: the config's ``stats socket ... level admin``, else none)."""

    config: Path = Path("/etc/haproxy/haproxy.cfg")
    crt_dir: Path = Path("/etc/haproxy/certs")
    socket: Path | None = None
    ctl: str = "haproxy"
    https_port: int = 443
    frontend: str = ""  # where certherd's bind line goes; empty: the one HTTP frontend

    kind = "haproxy"

    def pem(self, lineage: str) -> Path:
        return self.crt_dir / f"{check_name(lineage)}.pem"

    # -- what the config says --------------------------------------------------------------

    def _read(self) -> HaproxyConfig:
        return read_config(self.config)

    def _control(self, config: HaproxyConfig) -> HaproxyControl:
        pidfile = Path(config.pidfile or "/run/haproxy.pid")
        return HaproxyControl(self.ctl, self.config, pidfile, config.master_worker)

    def _runtime(self, config: HaproxyConfig) -> RuntimeApi | None:
        """The runtime API to use: the socket given (ConfigError when it is not one),
        else the config's first ``level admin`` UNIX socket that exists, else None."""
        if self.socket is not None:
            api = RuntimeApi(self.socket)
            problem = api.problem()
            if problem is not None:
                raise ConfigError(
                    f"{problem}: give the path of HAProxy's `stats socket` ({{haproxy_socket}})",
                    settings=("haproxy_socket",),
                )
            return api
        for path, admin in config.stats_sockets():
            api = RuntimeApi(Path(path))
            if not admin or not (api.path.exists() or api.path.is_symlink()):
                continue  # not HAProxy's admin socket, or HAProxy has not made it
            problem = api.problem()
            if problem is not None:  # there, but not safe to send a key to: say so
                raise ConfigError(f"{problem} ({{haproxy_socket}})", settings=("haproxy_socket",))
            return api
        return None

    def _crt_dir_text(self) -> str:
        text = os.path.normpath(str(self.crt_dir))
        if not self.crt_dir.is_absolute() or not _SAFE_PATH.fullmatch(text):
            raise ConfigError(
                f"the HAProxy crt dir {text!r} must be an absolute path of letters, digits "
                "and ._/+@=,- ({haproxy_crt_dir})",
                settings=("haproxy_crt_dir",),
            )
        return text

    def _check_crt_dir(self) -> str:
        text = self._crt_dir_text()
        if not self.crt_dir.is_dir():
            what = "is not a directory" if self.crt_dir.exists() else "does not exist"
            raise ConfigError(
                f"the HAProxy crt dir {text} {what}: create it (mkdir -m 700 {text}) or "
                "give the directory HAProxy loads certificates from ({haproxy_crt_dir})",
                settings=("haproxy_crt_dir",),
            )
        reason = untrusted_reason(self.crt_dir)
        if reason is not None:
            raise ConfigError(
                f"certherd will not write private keys into {text}: {reason} ({{haproxy_crt_dir}})",
                settings=("haproxy_crt_dir",),
            )
        return text

    def _loaders(self, config: HaproxyConfig) -> list[str]:
        """Where a ``bind`` of the config loads certificates from ``crt_dir``."""
        wanted = self._crt_dir_text()
        return [
            bind.where
            for bind in config.binds()
            if bind.ssl and any(config.crt_path(crt) == wanted for crt in bind.crts)
        ]

    def _frontend(self, config: HaproxyConfig) -> Section:
        """The frontend to get certherd's ``bind`` line: the one named (``frontend``),
        else the one HTTP frontend binding plain HTTP."""
        if self.frontend:
            for section in config.sections:
                if section.keyword in ("frontend", "listen") and section.name == self.frontend:
                    return section
            raise ConfigError(
                f"{self.config} has no frontend {self.frontend!r} ({{haproxy_frontend}})",
                settings=("haproxy_frontend",),
            )
        plain = {
            bind.section.name: bind.section
            for bind in config.binds()
            if not bind.ssl and bind.section.mode == "http" and address_hosts(bind.addresses)
        }
        if len(plain) != 1:
            found = f"the frontends {', '.join(sorted(plain))}" if plain else "no frontend"
            raise ConfigError(
                f"no bind line of {self.config} loads certificates from {self._crt_dir_text()}"
                f" and {found} in mode http binds plain HTTP: name the frontend that serves "
                "the names ({haproxy_frontend}) and certherd adds its bind line there",
                settings=("haproxy_frontend",),
            )
        return next(iter(plain.values()))

    def _bind_line(self, config: HaproxyConfig, section: Section) -> tuple[int, str]:
        """Where certherd's ``bind`` line goes (after the section's last bind) and it."""
        binds = [bind for bind in config.binds() if bind.section is section]
        plain = [address_hosts(bind.addresses) for bind in binds if not bind.ssl]
        hosts = sorted(set().union(*plain))
        hosts = hosts or [""]  # no plain HTTP bind there: every address
        last = binds[-1].line if binds else section.head
        newline = "\r\n" if "\r\n" in config.text else "\n"  # the file's own
        addresses = ",".join(f"{host}:{self.https_port}" for host in hosts)
        indent = last.indent if binds else (section.lines[0].indent if section.lines else "    ")
        text = (
            f"{indent}bind {addresses} ssl crt {self._crt_dir_text()}/ "
            f"{MARK} TLS from certherd's certificates{newline}"
        )
        if not config.text[last.start : last.end].endswith("\n"):  # the file's last line
            text = newline + text.removesuffix(newline)
        return last.end, text

    def _tls_binds(self, config: HaproxyConfig) -> list[Bind]:
        """The ``bind ... ssl`` lines listening on the HTTPS port."""
        return [
            bind
            for bind in config.binds()
            if bind.ssl
            and any(address_port(address) == str(self.https_port) for address in bind.addresses)
        ]

    def _crt_list(self, config: HaproxyConfig) -> str | None:
        """The crt-list certherd adds its PEMs to, as the config writes it: when no bind
        loads ``crt_dir``, and the TLS binds on the HTTPS port load one crt-list (the
        same, by an absolute path of plain characters: HAProxy opens a relative one from
        its own working folder, and applies no ``crt-base`` to it)."""
        if self._loaders(config):
            return None
        found = self._tls_binds(config)
        lists = {written for bind in found for written in bind.crt_lists}
        if not found or len(lists) != 1 or any(len(bind.crt_lists) != 1 for bind in found):
            return None
        written = lists.pop()
        # Named on the runtime API's command line: a path of plain characters only.
        return written if written.startswith("/") and _SAFE_PATH.fullmatch(written) else None

    def _check_served(self, config: HaproxyConfig, names: Sequence[str]) -> None:
        """Refuse a name a certificate loaded before certherd's already serves on a bind
        certherd's is (or would be) served from: HAProxy would go on serving that one."""
        loaders = self._loaders(config)
        binds = [b for b in config.binds() if b in self._tls_binds(config) or b.where in loaders]
        crtlist.check_served(binds, config.crt_base, self._crt_dir_text(), names)

    def _tls_bind(self, config: HaproxyConfig) -> Bind | None:
        """The ``bind ... ssl`` already listening on the HTTPS port (certherd's own line
        there would clash with it), or None; ConfigError when several do."""
        found = self._tls_binds(config)
        if len(found) > 1:
            where = "; ".join(bind.where for bind in found)
            raise ConfigError(
                f"several bind lines serve TLS on port {self.https_port} ({where}): add "
                f"`crt {self._crt_dir_text()}/` to the one that serves the names"
            )
        return found[0] if found else None

    def _placement(self, config: HaproxyConfig) -> str:
        """The config's text with certherd's way to load ``crt_dir``: `` crt DIR/``
        added to the TLS bind on the HTTPS port (marked by a comment line above it), else
        a bind line of its own in the HTTP frontend."""
        newline = "\r\n" if "\r\n" in config.text else "\n"  # the file's own
        text = config.text
        bind = self._tls_bind(config)
        if bind is None:
            at, line = self._bind_line(config, self._frontend(config))
            return text[:at] + line + text[at:]
        line = text[bind.line.start : bind.line.end]
        body = line.rstrip("\r\n")
        cut = comment_start(body)
        content = body[:cut].rstrip(" \t")
        joined = f"{content}{self._joined()}{body[len(content) :]}{line[len(body) :]}"
        note = f"{bind.line.indent}{MARK} {self._joined().strip()!r} {JOINED}{newline}"
        return text[: bind.line.start] + note + joined + text[bind.line.end :]

    def _joined(self) -> str:
        return f" crt {self._crt_dir_text()}/"

    # -- the protocol ----------------------------------------------------------------------

    async def check(self, lineage: str = "", names: Sequence[str] = ()) -> None:
        """Refuse (InstallError) a HAProxy whose config already fails its own test, and
        (ConfigError) a crt dir, socket or config certherd cannot serve a certificate
        through, before anything is ordered or changed."""
        config = self._read()
        control = self._control(config)
        await _check_before(control)
        self._check_crt_dir()
        runtime = self._runtime(config)
        if runtime is None:
            problem = control.reload_problem()
            if problem is not None:
                raise ConfigError(
                    f"HAProxy has no runtime socket (`stats socket PATH level admin` in "
                    f"global, or {{haproxy_socket}}) and {problem}",
                    settings=("haproxy_socket",),
                )
        else:
            level = await runtime.level()
            if level != "admin":
                raise ConfigError(
                    f"HAProxy's runtime socket {runtime.path} allows `{level}`, not admin: "
                    "add `level admin` to its stats socket line ({haproxy_socket})",
                    settings=("haproxy_socket",),
                )
        if names:
            self._check_served(config, names)
        if not self._loaders(config) and not self._edited(config) and not self._crt_list(config):
            self._placement(config)
            problem = control.reload_problem()
            if problem is not None:
                raise ConfigError(
                    f"certherd adds a bind line for {self._crt_dir_text()}, which needs a "
                    f"reload, and {problem}"
                )

    async def prepare_http01(self, names: Sequence[str]) -> object:
        raise ConfigError(
            "HAProxy does not answer http-01 for certherd: prove the names with a solver "
            "of their own ({solvers}; http-01 behind a HAProxy use_backend for "
            "/.well-known/acme-challenge/ works)",
            settings=("solvers",),
        )

    async def finish_http01(self) -> None:
        return None

    async def install(
        self, lineage: str, names: Sequence[str], certificate: Path, key: Path
    ) -> object:
        """Serve ``certificate`` (full chain) and ``key`` from ``CRT_DIR/LINEAGE.pem``."""
        async with self._locked():
            pem = self.pem(lineage)
            if pem.exists() and not _holds_key(pem, key):
                raise ConfigError(
                    f"{pem} exists and does not hold the private key of {lineage}, so it is "
                    "not certherd's: move it away, or give the lineage another name"
                )
            return await self._put(lineage, certificate, key, names)

    async def after_renewal(
        self, lineage: str = "", certificate: Path | None = None, key: Path | None = None
    ) -> None:
        """A new version is live: the combined PEM again, hot-swapped (no reload)."""
        if not lineage or certificate is None or key is None:
            raise ConfigError("the HAProxy installer needs the lineage's live files")
        async with self._locked():
            await self._put(lineage, certificate, key)

    async def uninstall(self, lineage: str) -> bool:
        """Take ``CRT_DIR/LINEAGE.pem`` away (and certherd's bind line with the last
        certificate); False when it was not there."""
        async with self._locked():
            pem = self.pem(lineage)
            if not pem.exists():
                return False
            config = self._read()
            control = self._control(config)
            changes: dict[Path, bytes | None] = {pem: None}
            others = [p for p in self.crt_dir.iterdir() if p != pem and not p.name.startswith(".")]
            edited = self._edited(config)
            if edited is not None and not others:
                changes[self.config] = edited.encode("utf-8", "surrogateescape")
            runtime = None if self.config in changes else self._runtime(config)
            name = f"{self._crt_dir_text()}/{pem.name}"
            lists = crtlist.lists_holding(config.binds(), name)
            for written, text in lists.items():
                changes[Path(written)] = text.encode("utf-8", "surrogateescape")

            async def tell() -> None:
                if runtime is not None and name in await runtime.certificates():
                    try:
                        await runtime.remove(name, list(lists) or [self._crt_dir_text()])
                    except InstallError as exc:
                        # HAProxy will not take out a bind's default certificate (the
                        # first file it loaded) at run time: a graceful reload will.
                        if "default certificate" not in str(exc) or control.reload_problem():
                            raise
                        await control.reload()
                elif runtime is None:
                    await control.reload()

            await self._apply(control, changes, tell)
            return True

    # -- changes ---------------------------------------------------------------------------

    async def _put(
        self, lineage: str, certificate: Path, key: Path, names: Sequence[str] = ()
    ) -> bool:
        config = self._read()
        if names:
            self._check_served(config, names)
        control = self._control(config)
        crt_dir = self._check_crt_dir()
        pem_path = self.pem(lineage)
        try:
            pem = certificate.read_text().strip() + "\n" + key.read_text().strip() + "\n"
        except OSError as exc:
            raise ConfigError(f"cannot read the live files of {lineage}: {exc}") from None
        changes: dict[Path, bytes | None] = {pem_path: pem.encode()}
        reload = False
        name = f"{crt_dir}/{pem_path.name}"
        listing = self._crt_list(config)  # where HAProxy lists the PEM: a crt-list or crt_dir
        if listing is not None:
            text = crtlist.read_text(Path(listing)) or ""
            if not crtlist.has_line(text, name):
                added = crtlist.add_line(text, name, lineage)
                changes[Path(listing)] = added.encode("utf-8", "surrogateescape")
        elif not self._loaders(config):
            edited = self._placement(config)
            changes[self.config] = edited.encode("utf-8", "surrogateescape")
            reload = True
        runtime = None if reload else self._runtime(config)

        async def tell() -> None:
            if runtime is None:
                await control.reload()
            else:
                new = name not in await runtime.certificates()
                await runtime.swap(name, pem, new=new, crt_list=listing or crt_dir)

        await self._apply(control, changes, tell)
        return reload

    async def _apply(
        self, control: HaproxyControl, changes: Mapping[Path, bytes | None], tell: object
    ) -> None:
        """Test, back up, write, test again, tell HAProxy; every file's previous bytes
        again when the test or HAProxy refuses."""
        await _check_before(control)
        targets = {files.real_target(path): data for path, data in changes.items()}
        previous = {path: path.read_bytes() if path.exists() else None for path in targets}
        # The config only: a PEM is made again from live/ any time, and copies of it
        # would spread private keys (restoring uses ``previous``, in memory).
        configs = {path: data for path, data in previous.items() if path.suffix != ".pem"}
        if configs:
            files.backup(self.config.parent / "certherd", configs)
        try:
            for path, data in targets.items():
                _write(path, data)
            message = await control.test()
            if message is not None:
                raise InstallError(
                    f"HAProxy refused certherd's change, so every file has its previous "
                    f"bytes again: {message}"
                )
            assert callable(tell)
            await tell()
        except BaseException:
            for path, data in previous.items():
                try:
                    _write(path, data)
                except OSError as exc:  # keep restoring the others
                    log.error("could not restore %s: %s", path, exc)
            raise

    def _edited(self, config: HaproxyConfig) -> str | None:
        """The config's text without certherd's bind line (None when it has none)."""
        line = rf"[ \t]*bind [^\r\n]* ssl crt {re.escape(self._crt_dir_text())}/ "
        line += rf"{re.escape(MARK)}[^\r\n]*"
        edited = re.sub(rf"(?m)^{line}\r?\n", "", config.text)
        if edited == config.text:  # added as the file's last line, after a newline
            edited = re.sub(rf"\r?\n{line}\Z", "", config.text)
        # `` crt DIR/`` joined to a bind of the user's, with the note above it
        note = rf"(?m)^[ \t]*{re.escape(MARK)} {re.escape(repr(self._joined().strip()))} "
        note += rf"{re.escape(JOINED)}\r?\n([^\r\n]*)"
        edited = re.sub(note, lambda m: m.group(1).replace(self._joined(), "", 1), edited)
        return edited if edited != config.text else None

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        self._check_crt_dir()
        descriptor = os.open(self.crt_dir / ".certherd.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + LOCK_WAIT
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if loop.time() > deadline:
                        raise ConfigError(
                            f"another certherd process has been changing HAProxy for over "
                            f"{LOCK_WAIT:.0f} s ({self.crt_dir / '.certherd.lock'})"
                        ) from None
                    await asyncio.sleep(0.05)
            yield
        finally:
            os.close(descriptor)


def _write(path: Path, data: bytes | None) -> None:
    """A config through :func:`certherd.install.files.write` (mode and owner kept); a
    PEM (it holds a private key) always 0600, whatever it was."""
    if data is not None and path.suffix == ".pem":
        atomic_write(path, data, 0o600)
    else:
        files.write(path, data)


def _holds_key(pem: Path, key: Path) -> bool:
    """Whether the PEM file ``pem`` holds the private key of the file ``key``."""
    try:
        return key.read_bytes().strip() in pem.read_bytes()
    except OSError:
        return False


async def _check_before(control: HaproxyControl) -> None:
    """Refuse to touch a config that already fails HAProxy's own test."""
    message = await control.test()
    if message is not None:
        raise InstallError(
            f"HAProxy's config already fails its own test, so certherd changes nothing: "
            f"{message} (fix it, then check with `{control.ctl} -c -f {control.config}`)"
        )
