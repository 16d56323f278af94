"""Reading ``haproxy.cfg``: its sections, ``bind`` lines, runtime socket and pid file.

A small parser of HAProxy's own line grammar (configuration.txt §2.1-2.2: one keyword
and its arguments per line, words split by spaces and tabs, ``#`` starts a comment
unless quoted or escaped, ``\\`` escapes, single and double quotes group words; a line
whose first word is a section keyword starts a section). No maintained Python parser of
haproxy.cfg exists (PyPI's ``pyhaproxy`` stopped at HAProxy 1.x and rebuilds files),
and certherd needs only what this gives: each line's words with the offsets of the line
in the file, so an edit adds or takes away exactly one line and every other byte stays.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from certherd.errors import ConfigError

__all__ = [
    "Bind",
    "ConfigLine",
    "HaproxyConfig",
    "Section",
    "address_hosts",
    "address_port",
    "comment_start",
    "read_config",
    "split_words",
]

SECTION_KEYWORDS = frozenset(
    {
        "global", "defaults", "frontend", "backend", "listen", "userlist", "peers",
        "resolvers", "mailers", "program", "http-errors", "ring", "cache", "log-forward",
        "fcgi-app",
    }
)  # fmt: skip
"""The keywords that open a section (configuration.txt §3-§4, HAProxy 2.6)."""


def comment_start(line: str) -> int:
    """Where the comment of one config line starts (its length when it has none)."""
    quote = ""
    index = 0
    while index < len(line):
        char = line[index]
        if char == "\\" and quote != "'":
            index += 2
            continue
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "#":
            return index
        index += 1
    return len(line)


def split_words(line: str) -> list[str]:
    """The words of one config line, quotes and escapes resolved, comment dropped."""
    words: list[str] = []
    current: list[str] = []
    started = False
    quote = ""
    index = 0
    while index < len(line):
        char = line[index]
        if char == "\\" and quote != "'" and index + 1 < len(line):
            current.append(line[index + 1])
            started = True
            index += 2
            continue
        if quote:
            if char == quote:
                quote = ""
            else:
                current.append(char)
        elif char in "\"'":
            quote = char
            started = True
        elif char == "#":
            break
        elif char in " \t\r\n":
            if started:
                words.append("".join(current))
                current, started = [], False
        else:
            current.append(char)
            started = True
        index += 1
    if started:
        words.append("".join(current))
    return words


@dataclass(frozen=True)
class ConfigLine:
    """One line: its words, where it starts and ends in the file's text, its number."""

    words: tuple[str, ...]
    start: int
    end: int  # after its newline
    number: int
    indent: str


@dataclass
class Section:
    """``frontend NAME`` (``listen``, ``global``, ...) and the lines inside it."""

    keyword: str
    name: str
    head: ConfigLine
    lines: list[ConfigLine] = field(default_factory=list)
    mode: str = "tcp"  # its own ``mode``, else the ``defaults`` before it, else tcp

    def find(self, *keyword: str) -> Iterator[ConfigLine]:
        for line in self.lines:
            if tuple(line.words[: len(keyword)]) == keyword:
                yield line


@dataclass(frozen=True)
class Bind:
    """A ``bind`` line of a frontend or listen section."""

    section: Section
    line: ConfigLine
    addresses: tuple[str, ...]
    ssl: bool
    crts: tuple[str, ...]  # the ``crt`` arguments, as written
    crt_lists: tuple[str, ...] = ()  # the ``crt-list`` arguments, as written
    sources: tuple[tuple[str, str], ...] = ()  # ("crt" or "crt-list", argument) in order

    @property
    def where(self) -> str:
        return f"{self.section.keyword} {self.section.name}, line {self.line.number}"


@dataclass
class HaproxyConfig:
    """One parsed haproxy.cfg (certherd reads one file, as Debian's unit passes it)."""

    path: Path
    text: str
    sections: list[Section]

    def section(self, keyword: str) -> Section | None:
        return next((s for s in self.sections if s.keyword == keyword), None)

    def binds(self) -> list[Bind]:
        found = []
        for section in self.sections:
            if section.keyword not in ("frontend", "listen"):
                continue
            for line in section.find("bind"):
                words = line.words[1:]
                addresses = tuple(words[0].split(",")) if words else ()
                sources = tuple(
                    (w, words[i + 1])
                    for i, w in enumerate(words[:-1])
                    if i and w in ("crt", "crt-list")
                )
                crts = tuple(arg for kind, arg in sources if kind == "crt")
                lists = tuple(arg for kind, arg in sources if kind == "crt-list")
                ssl = "ssl" in words[1:]
                found.append(Bind(section, line, addresses, ssl, crts, lists, sources))
        return found

    def crt_path(self, written: str) -> str:
        """A ``crt`` argument as HAProxy reads it: below ``crt-base`` when relative,
        without trailing slashes (HAProxy names a directory's files ``DIR/FILE``)."""
        base = self.crt_base
        path = written if written.startswith("/") or not base else f"{base}/{written}"
        return os.path.normpath(path)

    @property
    def crt_base(self) -> str:
        """``crt-base`` of ``global`` (where relative ``crt`` paths start), else empty."""
        base = ""
        global_section = self.section("global")
        if global_section is not None:
            for line in global_section.find("crt-base"):
                base = line.words[1] if len(line.words) > 1 else ""
        return base

    def stats_sockets(self) -> list[tuple[str, bool]]:
        """Each ``stats socket`` of ``global`` on a UNIX path: (path, level admin)."""
        found = []
        global_section = self.section("global")
        for line in global_section.find("stats", "socket") if global_section else ():
            if len(line.words) < 3:
                continue
            address = line.words[2]
            if address.startswith("unix@"):
                address = address[len("unix@") :]
            elif "@" in address or not address.startswith("/"):
                continue  # ipv4@, abns@, fd@: not a path certherd opens
            words = line.words[3:]
            level = next((words[i + 1] for i, w in enumerate(words[:-1]) if w == "level"), "")
            found.append((address, level == "admin"))
        return found

    @property
    def pidfile(self) -> str | None:
        global_section = self.section("global")
        for line in global_section.find("pidfile") if global_section else ():
            if len(line.words) > 1:
                return line.words[1]
        return None

    @property
    def master_worker(self) -> bool:
        global_section = self.section("global")
        return bool(global_section and any(global_section.find("master-worker")))


def address_port(address: str) -> str:
    """The port of a bind address (``:443`` -> ``443``), empty for a UNIX one."""
    if address.startswith("/") or ("@" in address and not address.startswith(("ipv4@", "ipv6@"))):
        return ""
    return address.rpartition(":")[2]


def address_hosts(addresses: Sequence[str]) -> set[str]:
    """The host part of each TCP address of a bind (``:80`` -> ``""``), UNIX ones left out."""
    hosts = set()
    for address in addresses:
        if "@" in address and not address.startswith(("ipv4@", "ipv6@")):
            continue
        if address.startswith("/"):
            continue
        host, colon, _port = address.rpartition(":")
        if colon:
            hosts.add(host)
    return hosts


def read_config(path: Path) -> HaproxyConfig:
    """Parse ``path``; ConfigError when it cannot be read."""
    try:
        text = path.read_bytes().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        raise ConfigError(
            f"HAProxy's config {path} does not exist: give its path as {{haproxy_config}}",
            settings=("haproxy_config",),
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read HAProxy's config {path}: {exc.strerror}") from None
    return parse_config(path, text)


def parse_config(path: Path, text: str) -> HaproxyConfig:
    sections: list[Section] = []
    default_mode = "tcp"
    offset = 0
    for number, raw in enumerate(text.splitlines(keepends=True), start=1):
        words = tuple(split_words(raw))
        stripped = raw.lstrip(" \t")
        line = ConfigLine(words, offset, offset + len(raw), number, raw[: len(raw) - len(stripped)])
        offset += len(raw)
        if not words:
            continue
        if words[0] in SECTION_KEYWORDS:
            name = words[1] if len(words) > 1 else ""
            mode = default_mode if words[0] in ("frontend", "listen", "backend") else "tcp"
            sections.append(Section(words[0], name, line, mode=mode))
        elif sections:
            section = sections[-1]
            section.lines.append(line)
            if words[0] == "mode" and len(words) > 1:
                section.mode = words[1]
                if section.keyword == "defaults":
                    default_mode = words[1]
    return HaproxyConfig(path, text, sections)
