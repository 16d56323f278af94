"""Located edits of Apache config text, and applying them safely.

An edit adds (or takes away) two whole lines: a ``# certherd: ...`` comment and an
``Include "..."`` of a file certherd owns, either as the first lines of a matched
``<VirtualHost>`` (indented like its next line) or right after its ``</VirtualHost>``.
Apache allows no comment after a directive on its line, hence the line of its own.
:func:`remove_include` takes away exactly what :func:`add_include` added, so a file
certherd added to and then removed from has its original bytes again.

:func:`apply_changes` is the one way certherd changes a running Apache: its own config
test first (a config that already fails it is refused and nothing changes), the modules
asked for enabled with ``a2enmod`` (what it links into ``mods-enabled/`` is part of the
change), a copy of every file about to change under ``ROOT/certherd/backup/``, atomic
writes, the test again, then a graceful restart. When the test or the restart fails,
every file and link is put back as it was and the error is Apache's own message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from certherd.errors import ConfigError, InstallError
from certherd.install import files
from certherd.install.apache.control import ApacheControl
from certherd.install.apache.parse import Node

__all__ = ["MARK", "add_include", "apply_changes", "check_before", "quoted", "remove_include"]

MARK = "# certherd:"


def quoted(path: Path) -> str:
    """``path`` as one double-quoted Apache argument; ConfigError for one Apache could
    misread (quotes, backslashes, ``$``, ``<>``, control characters)."""
    text = str(path)
    if any(char in text for char in "\"\\$<>'") or any(ord(char) < 32 for char in text):
        raise ConfigError(f"the path {text!r} cannot be written into an Apache config: move it")
    return f'"{text}"'


def _ending(text: str, at: int) -> str:
    """The line ending of the line before ``at`` (the file's own: CRLF stays CRLF)."""
    return "\r\n" if text[max(0, at - 2) : at] == "\r\n" else "\n"


def _indent_after(text: str, node: Node) -> str:
    """The indentation of the first non-blank line inside ``node`` (else its own plus
    four spaces)."""
    for line in text[node.end : node.close_start].splitlines():
        if line.strip():
            return line[: len(line) - len(line.lstrip())]
    own = text[node.start : node.end]
    return own[: len(own) - len(own.lstrip())] + "    "


def add_include(text: str, node: Node, target: Path, why: str, *, after: bool = False) -> str:
    """``text`` with certherd's include of ``target`` as the first lines of the section
    ``node`` (``after``: right after its closing tag)."""
    at = node.close_end if after else node.end
    ending = _ending(text, at) if at else "\n"
    prefix = "" if at == 0 or text[at - 1 : at] == "\n" else ending
    if after:
        own = text[node.start : node.end]
        indent = own[: len(own) - len(own.lstrip())]
    else:
        indent = _indent_after(text, node)
    lines = f"{prefix}{indent}{MARK} {why}{ending}{indent}Include {quoted(target)}{ending}"
    return text[:at] + lines + text[at:]


def remove_include(text: str, target: Path) -> str:
    """``text`` without the includes of ``target`` that :func:`add_include` added."""
    pattern = (
        rf"(?m)^[ \t]*{re.escape(MARK)}[^\r\n]*\r?\n[ \t]*Include {re.escape(quoted(target))}\r?\n"
    )
    return re.sub(pattern, "", text)


def has_include(text: str, target: Path) -> bool:
    return f"Include {quoted(target)}" in text


async def check_before(control: ApacheControl) -> None:
    """Refuse to touch a config that already fails Apache's own test."""
    message = await control.test()
    if message is not None:
        raise InstallError(
            f"Apache's config already fails its own test, so certherd changes nothing: "
            f"{message} (fix it, then check with `{control.ctl} -t`)"
        )


def _enabled(root: Path) -> dict[Path, files.Content]:
    folder = root / "mods-enabled"
    if not folder.is_dir():
        return {}
    return {entry: files.current(entry) for entry in folder.iterdir()}


async def apply_changes(
    control: ApacheControl,
    owned: Path,
    changes: Mapping[Path, files.Content],
    *,
    modules: Sequence[str] = (),
) -> list[Path]:
    """Enable ``modules`` (a2enmod, when not loaded), write ``changes`` (bytes, a link,
    or None to remove), test and restart gracefully; on failure put every file and link
    back as it was and raise InstallError. Returns the links a2enmod added."""
    await check_before(control)
    targets = {
        (path if isinstance(data, files.Link) or (path.is_symlink() and data is None)
         else files.real_target(path)): data
        for path, data in changes.items()
    }  # fmt: skip
    previous: dict[Path, files.Content] = {path: files.current(path) for path in targets}
    files.backup(owned, previous)
    added: list[Path] = []
    try:
        missing = []
        if modules:
            loaded = await control.modules()
            missing = [name for name in modules if f"{name}_module" not in loaded]
        if missing:
            if not (control.root / "mods-enabled").is_dir():
                raise ConfigError(
                    f"Apache at {control.root} does not load {', '.join(missing)} and has no "
                    "mods-enabled/ folder (not Debian's layout): load the module "
                    "(LoadModule) and try again"
                )
            before = _enabled(control.root)
            for name in missing:
                await control.enable_module(name)
            after = _enabled(control.root)
            for path, data in after.items():
                if before.get(path) != data:
                    previous.setdefault(path, before.get(path))
                    added.append(path)
        for path, data in targets.items():
            files.write(path, data)
        message = await control.test()
        if message is None:
            message = await control.reload()
            if message is not None:
                message = f"Apache's graceful restart failed: {message}"
    except BaseException:
        files.restore(previous)
        raise
    if message is not None:
        files.restore(previous)
        if not changes and not added:  # a restart only (after a renewal): nothing written
            raise InstallError(message)
        raise InstallError(
            "Apache refused certherd's change, so every file has its previous bytes again: "
            f"{message}"
        )
    return added
