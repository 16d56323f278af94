"""nginx's configuration read by crossplane (nginx's own parser), with byte offsets.

:func:`read_config` parses ``ROOT/nginx.conf`` and every file it includes with
``crossplane.parse`` (includes followed, comments kept), and lexes each file again with
crossplane's own lexer while counting the characters it consumes, so every ``{`` and
``}`` of a block has its exact place in the file's text. An edit is then a located
insertion into the text nginx's parser saw: every other byte (comments, odd spacing,
``map``, ``if``, ``include``) stays as it was, by construction; no file is ever rebuilt.

:class:`ServerBlock` is one ``server { }`` of the ``http`` context with what matching
needs: its ``server_name`` values, its ``listen`` directives (those of files it includes
too) and where its braces are. :func:`match_server` picks, for a host name and a port,
the block nginx itself would pick (``server_name`` order of the nginx docs: exact name,
longest wildcard starting with ``*``, longest wildcard ending with ``*``, first regular
expression in the order of the config, else the port's ``default_server`` or first block).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from certherd.errors import ConfigError, UnavailableError

__all__ = [
    "NginxConfig",
    "ServerBlock",
    "answering_servers",
    "crossplane_module",
    "match_server",
    "read_config",
]

INSTALL_HINT = "the nginx installer needs crossplane: pip install 'certherd[nginx]'"


def crossplane_module() -> Any:
    """crossplane, imported on first use (an optional dependency: ``certherd[nginx]``)."""
    try:
        import crossplane  # type: ignore[import-untyped]
    except ImportError:
        raise UnavailableError(INSTALL_HINT) from None
    return crossplane


@dataclass(frozen=True)
class Listen:
    """One ``listen`` directive: ``address`` ("" for every address), ``port``, ``ssl``."""

    address: str
    port: int
    ssl: bool
    default: bool

    @classmethod
    def parse(cls, args: list[str]) -> Listen | None:
        """None for a ``unix:`` socket (nothing a CA reaches)."""
        if not args or args[0].startswith("unix:"):
            return None
        text = args[0]
        address, port_text = "", text
        if text.startswith("["):
            host, _, rest = text.partition("]")
            address, port_text = host + "]", rest.removeprefix(":") or "80"
        elif ":" in text:
            address, _, port_text = text.rpartition(":")
        elif not text.isdigit():
            address, port_text = text, "80"
        try:
            port = int(port_text)
        except ValueError:
            return None
        flags = set(args[1:])
        return cls(address, port, "ssl" in flags, bool(flags & {"default_server", "default"}))


@dataclass
class ServerBlock:
    """A ``server { }`` block of the ``http`` context, in config order (``index``)."""

    index: int
    file: Path
    line: int
    open_offset: int
    """The offset of its ``{`` in the file's text."""
    close_offset: int
    """The offset of its ``}``."""
    names: list[str] = field(default_factory=list)
    listens: list[Listen] = field(default_factory=list)
    includes: list[str] = field(default_factory=list)
    """The paths of its own ``include`` directives, as written."""
    directives: set[str] = field(default_factory=set)
    """The names of the directives in it (and in files it includes)."""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def plain_ports(self) -> set[int]:
        """The ports it serves plain HTTP on (no listen directive: nginx's 80)."""
        if not self.listens and "listen" not in self.directives:
            return {80}
        return {listen.port for listen in self.listens if not listen.ssl}

    def ssl_ports(self) -> set[int]:
        """The ports it serves TLS on (its own ``listen ... ssl``)."""
        return {listen.port for listen in self.listens if listen.ssl}


@dataclass
class NginxConfig:
    """The parsed config: ``texts`` (each file's text, as read), and the server blocks."""

    root: Path
    main: Path
    texts: dict[Path, str]
    servers: list[ServerBlock]


def _lex_offsets(text: str) -> Iterator[tuple[str, int, bool, int]]:
    """crossplane's lexer over ``text``, each token with the offset just past its last
    character consumed: exact for ``{``, ``;`` and ``}`` (yielded as they are read)."""
    from crossplane.lexer import _lex_file_object  # type: ignore[import-untyped]

    consumed = 0

    def characters() -> Iterator[str]:
        nonlocal consumed
        for char in text:
            consumed += 1
            yield char

    for token, line, quoted in _lex_file_object(characters()):
        yield token, line, quoted, consumed


def block_offsets(text: str) -> list[tuple[int, int]]:
    """The (``{`` offset, ``}`` offset) of every block of ``text``, in the order the
    blocks open (the order crossplane lists block directives, depth first)."""
    found: list[list[int]] = []
    stack: list[int] = []
    for token, _line, quoted, end in _lex_offsets(text):
        if quoted or token not in ("{", "}"):
            continue
        if token == "{":  # noqa: S105 (a brace, no password)
            stack.append(len(found))
            found.append([end - 1, -1])
        elif stack:
            found[stack.pop()][1] = end - 1
    return [(start, end) for start, end in found]


def read_config(root: Path, main: Path | None = None, *, owned: Path | None = None) -> NginxConfig:
    """Parse ``main`` (default ``root/nginx.conf``) and its includes; ConfigError with
    crossplane's message for a config it cannot parse. What files under ``owned``
    (certherd's own) say is left out of the server blocks' directives."""
    crossplane = crossplane_module()
    main = main or root / "nginx.conf"
    if not main.is_file():
        raise ConfigError(
            f"no nginx config at {main}: give the folder holding nginx.conf as "
            "the nginx server root"
        )
    parsed = crossplane.parse(str(main), comments=True, combine=False, check_ctx=False)
    if parsed["status"] != "ok":
        error = parsed["errors"][0]
        raise ConfigError(f"crossplane cannot parse the nginx config: {error['error']}")
    files: list[dict[str, Any]] = parsed["config"]
    texts: dict[Path, str] = {}
    offsets: dict[Path, list[tuple[int, int]]] = {}
    for item in files:
        path = Path(item["file"])
        # Bytes as they are (no newline translation: a CRLF file stays CRLF).
        texts[path] = path.read_bytes().decode("utf-8", errors="surrogateescape")
        offsets[path] = block_offsets(texts[path])
    servers: list[ServerBlock] = []

    def own(
        path: Path,
        directives: list[dict[str, Any]],
        context: tuple[str, ...],
        braces: Iterator[tuple[int, int]],
    ) -> None:
        """Walk one file's directives in config order (an include where it stands),
        pairing each block with its braces' offsets."""
        for directive in directives:
            name = directive["directive"]
            if "block" in directive:
                start, end = next(braces)
                if name == "server" and context and context[-1] == "http":
                    block = ServerBlock(len(servers), path, directive["line"], start, end)
                    servers.append(block)
                    _collect(block, directive["block"], files, owned)
                own(path, directive["block"], (*context, name), braces)
            elif name == "include":
                for number in directive.get("includes", ()):
                    included = files[number]
                    where = Path(included["file"])
                    own(where, included["parsed"], context, iter(offsets[where]))

    own(main, files[0]["parsed"], (), iter(offsets[main]))
    return NginxConfig(root, main, texts, servers)


def pid_file(main: Path) -> Path:
    """Where nginx's master writes its pid (the main config's ``pid``; Debian's default)."""
    crossplane = crossplane_module()
    parsed = crossplane.parse(str(main), single=True, check_ctx=False, check_args=False)
    for directive in parsed["config"][0]["parsed"] if parsed["config"] else ():
        if directive["directive"] == "pid" and directive["args"]:
            return Path(main.parent, str(directive["args"][0]))
    return Path("/run/nginx.pid")


def _collect(
    block: ServerBlock, directives: list[dict[str, Any]], files: list[Any], owned: Path | None
) -> None:
    for directive in directives:
        name = directive["directive"]
        block.directives.add(name)
        if name == "server_name":
            block.names.extend(directive["args"])
        elif name == "listen":
            listen = Listen.parse(directive["args"])
            if listen is not None:
                block.listens.append(listen)
        elif name == "include":
            if directive["args"]:
                block.includes.append(directive["args"][0])
            for number in directive.get("includes", ()):
                if owned is None or not Path(files[number]["file"]).is_relative_to(owned):
                    _collect(block, files[number]["parsed"], files, owned)


def _name_rank(pattern: str, host: str) -> tuple[int, int] | None:
    """How ``pattern`` (one server_name value) matches ``host``: (class, length), the
    lower class the stronger (0 exact, 1 leading wildcard, 2 trailing, 3 regex)."""
    if pattern.startswith("~"):
        # PCRE's named group (?<name>...) is Python's (?P<name>...).
        expression = re.sub(r"\(\?<([A-Za-z_]\w*)>", r"(?P<\1>", pattern[1:])
        try:
            if re.search(expression, host, re.IGNORECASE):
                return (3, 0)
        except re.error:
            return None
        return None
    pattern = pattern.lower()
    if pattern == host:
        return (0, 0)
    if pattern.startswith("*.") and host.endswith(pattern[1:]):
        return (1, -len(pattern))
    if pattern.startswith(".") and (host == pattern[1:] or host.endswith(pattern)):
        return (0, 0) if host == pattern[1:] else (1, -len(pattern))
    if pattern.endswith(".*") and host.startswith(pattern[:-1]):
        return (2, -len(pattern))
    return None


def match_server(
    servers: list[ServerBlock], host: str, port: int, *, fallback: bool, ssl: bool = False
) -> ServerBlock | None:
    """The block nginx picks for ``host`` on plain-HTTP ``port`` (``ssl``: on TLS
    ``port``); with ``fallback``, the port's default server when no ``server_name``
    matches (nginx's own answer)."""
    host = host.lower().rstrip(".")
    candidates = [
        block for block in servers if port in (block.ssl_ports() if ssl else block.plain_ports())
    ]
    best: tuple[tuple[int, int, int], ServerBlock] | None = None
    for block in candidates:
        for pattern in block.names:
            rank = _name_rank(pattern, host)
            if rank is not None:
                key = (*rank, block.index)
                if best is None or key < best[0]:
                    best = (key, block)
    if best is not None:
        return best[1]
    if not fallback or not candidates:
        return None
    for block in candidates:
        if any(listen.default and listen.port == port for listen in block.listens):
            return block
    return candidates[0]


_WILDCARDS = ("", "*", "0.0.0.0")  # noqa: S104 (names, not a bind): every IPv4 address


def answering_servers(
    servers: list[ServerBlock], host: str, port: int, *, fallback: bool
) -> list[ServerBlock]:
    """The block nginx picks for ``host`` on plain-HTTP ``port`` for each local address
    a connection may come in on: nginx gives a connection to the blocks listening on its
    exact address (``listen 192.0.2.1:80``) alone, and to the every-address ones
    (``listen 80``) only on addresses no block names (seen on nginx 1.22); in each group
    the :func:`match_server` choice (``fallback``: the group's default server when no
    name matches)."""
    groups: dict[str, list[ServerBlock]] = {}
    for block in servers:
        if port not in block.plain_ports():
            continue
        addresses = {
            "" if listen.address in _WILDCARDS else listen.address.lower()
            for listen in block.listens
            if listen.port == port and not listen.ssl
        } or {""}  # no listen directive: nginx's *:80
        for address in sorted(addresses):
            groups.setdefault(address, []).append(block)
    chosen: list[ServerBlock] = []
    for members in groups.values():
        picked = match_server(members, host, port, fallback=fallback)
        if picked is not None and picked not in chosen:
            chosen.append(picked)
    return chosen
