"""Located edits of nginx config text, and applying them safely.

An edit adds (or takes away) one ``include`` of a file certherd owns, as the first
directive of a matched ``server { }`` block: a line of its own right after the line of
the block's ``{`` (indented like the block's next line, marked ``# certherd: ...``), or,
when the ``{`` shares its line with other directives, `` include "...";`` right after the
``{``. :func:`remove_include` takes away exactly what :func:`add_include` added, so a file
certherd added to and then removed from has its original bytes again.

:func:`apply_changes` is the one way certherd changes a running nginx: nginx's own test
(``nginx -c ROOT/nginx.conf -t``) first (a config that already fails it is refused and
nothing changes), a copy of every file about to change under ``ROOT/certherd/backup/``,
atomic writes (temp + fsync + rename, the file's mode and owner kept; a symlinked site
file is written where it points), the test again, and ``nginx -s reload`` (graceful: the
master process stays, old workers finish their requests). When the test or the reload
fails, every file gets its previous bytes back and the error is nginx's own message.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from certherd.errors import ConfigError, InstallError, safe_text
from certherd.install.files import backup as _backup
from certherd.install.files import real_target as _real_target
from certherd.install.files import restore as _restore
from certherd.install.files import write as _write
from certherd.install.nginx.parse import ServerBlock, pid_file
from certherd.programs import program_environment, run_program

__all__ = ["NginxControl", "add_include", "apply_changes", "quoted", "remove_include"]

log = logging.getLogger(__name__)

MARK = "# certherd:"
RELOAD_WAIT = 10.0
"""How long a reload may take until the new config answers (seconds)."""


def quoted(path: Path) -> str:
    """``path`` as one double-quoted nginx argument; ConfigError for one nginx could
    misread (quotes, backslashes, ``$``, ``;``, braces, control characters)."""
    text = str(path)
    if any(char in text for char in "\"\\$;{}'") or any(ord(char) < 32 for char in text):
        raise ConfigError(f"the path {text!r} cannot be written into an nginx config: move it")
    return f'"{text}"'


def add_include(text: str, block: ServerBlock, target: Path, why: str) -> str:
    """``text`` with ``include "target";`` as the first directive of ``block``."""
    directive = f"include {quoted(target)};"
    start = block.open_offset + 1
    newline = text.find("\n", start)
    rest = text[start : newline if newline >= 0 else len(text)]
    if newline < 0 or (rest.strip() and not rest.strip().startswith("#")):
        return f"{text[:start]} {directive}{text[start:]}"
    indent = _indent(text, newline + 1, block)
    ending = "\r\n" if text[newline - 1 : newline] == "\r" else "\n"  # the file's own
    line = f"{indent}{directive} {MARK} {why}{ending}"
    return text[: newline + 1] + line + text[newline + 1 :]


def _indent(text: str, at: int, block: ServerBlock) -> str:
    """The indentation of the block's first non-blank line after ``at`` (else the
    ``server`` line's plus four spaces)."""
    for match in re.finditer(r"([ \t]*)(\S)", text[at : block.close_offset + 1]):
        if at + match.start(2) < block.close_offset:
            return match.group(1)
        break
    line_start = text.rfind("\n", 0, block.open_offset) + 1
    server_indent = re.match(r"[ \t]*", text[line_start:]).group(0)  # type: ignore[union-attr]
    return server_indent + "    "


def remove_include(text: str, target: Path) -> str:
    """``text`` without the includes of ``target`` that :func:`add_include` added."""
    path = re.escape(quoted(target))
    text = re.sub(rf"(?m)^[ \t]*include {path}; {re.escape(MARK)}[^\r\n]*\r?\n", "", text)
    return text.replace(f" include {quoted(target)};", "")


def has_include(block_text: str, target: Path) -> bool:
    return f"include {quoted(target)};" in block_text


@dataclass(frozen=True)
class NginxControl:
    """How to test and reload one nginx: the control binary and its main config."""

    ctl: str
    main: Path
    timeout: float = 60.0

    async def _run(self, *args: str) -> tuple[bool, str]:
        argv = (_binary(self.ctl), "-c", str(self.main), *args)
        try:
            result = await run_program(argv, env=program_environment({}), timeout=self.timeout)
        except OSError as exc:
            raise ConfigError(
                f"cannot run {self.ctl}: {exc.strerror or exc}: install nginx, or give the "
                "control binary's path as {nginx_ctl}",
                settings=("nginx_ctl",),
            ) from None
        return result.succeeded, nginx_message(result.stderr or result.stdout)

    async def test(self) -> str | None:
        """None when nginx accepts its config, else nginx's own message (one line)."""
        ok, message = await self._run("-t")
        return None if ok else message

    async def reload(self) -> str | None:
        """``nginx -s reload`` (graceful); None once the master runs new workers (so the
        new config answers every new connection), else nginx's message."""
        master = _master_pid(pid_file(self.main))
        old = _workers(master) if master else set()
        ok, message = await self._run("-s", "reload")
        if not ok:
            return message
        if master is None:
            return None
        deadline = asyncio.get_running_loop().time() + RELOAD_WAIT
        while asyncio.get_running_loop().time() < deadline:
            current = _workers(master)
            if current - old and all(_shutting_down(pid) for pid in current & old):
                return None
            await asyncio.sleep(0.02)
        return (
            f"nginx (master {master}) did not start workers with the new config within "
            f"{RELOAD_WAIT:.0f} s: its error log says why"
        )


def _master_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def _workers(master: int) -> set[int]:
    """The processes whose parent is ``master`` (nginx's workers and cache helpers)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 1 and fields[1] == str(master):
            found.add(int(entry.name))
    return found


def _shutting_down(pid: int) -> bool:
    """Whether an old worker stopped taking connections (or is gone)."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"shutting down" in title or not title


def _binary(ctl: str) -> str:
    """``ctl`` on PATH, or in /usr/sbin (Debian's nginx, not on every user's PATH)."""
    if "/" in ctl:
        return ctl
    found = shutil.which(ctl)
    if found is None and os.access(f"/usr/sbin/{ctl}", os.X_OK):
        found = f"/usr/sbin/{ctl}"
    return found or ctl


def nginx_message(output: str) -> str:
    """The line of nginx's output that says what is wrong (its first [emerg] line)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if "[emerg]" in line or "[alert]" in line or "[crit]" in line:
            return safe_text(line, 400)
    return safe_text(lines[0] if lines else "no output", 400)


async def check_before(control: NginxControl) -> None:
    """Refuse to touch a config that already fails nginx's own test."""
    message = await control.test()
    if message is not None:
        raise InstallError(
            f"nginx's config already fails its own test, so certherd changes nothing: "
            f"{message} (fix it, then check with `{control.ctl} -t`)"
        )


async def apply_changes(
    control: NginxControl, owned: Path, changes: Mapping[Path, bytes | None]
) -> None:
    """Write ``changes`` (a path's new bytes, or None to remove a file certherd owns),
    test and reload; on failure put every file back as it was and raise InstallError."""
    await check_before(control)
    previous: dict[Path, bytes | None] = {}  # never a Link: nginx's are files
    targets = {_real_target(path): data for path, data in changes.items()}
    for path in targets:
        previous[path] = path.read_bytes() if path.exists() else None
    _backup(owned, previous)
    try:
        for path, data in targets.items():
            _write(path, data)
        message = await control.test()
        if message is None:
            message = await control.reload()
            if message is not None:
                message = f"nginx -s reload failed: {message}"
    except BaseException:
        _restore(previous)
        raise
    if message is not None:
        _restore(previous)
        if not changes:  # a reload only (after a renewal): nothing was written
            raise InstallError(message)
        raise InstallError(
            f"nginx refused certherd's change, so every file has its previous bytes again: "
            f"{message}"
        )
