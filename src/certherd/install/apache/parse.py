"""Apache's configuration read with byte offsets, and Apache's own view of it.

Why a small reader of our own: no maintained PyPI parser keeps a file's bytes.
Certbot's apache plugin edits through Augeas (``python-augeas``, a C library and a lens
Certbot has to patch and ship itself) and re-serialises what it touches;
``apacheconfig`` (last release 2019) builds dicts and drops comments and spacing.
certherd never rebuilds a file: it inserts or removes whole lines at places it knows,
so all it needs is where each directive and section starts and ends.

:func:`lex` splits a file into logical lines as Apache's ``ap_cfg_getline`` does
(backslash continuation, ``#`` comment lines, leading whitespace), words as
``ap_getword_conf`` does (``"..."`` and ``'...'`` quoting), and sections
``<Name args>`` ... ``</Name>`` into a tree, each node with its offsets. Which files are
read, and in which order, is Apache's own answer (``apache2ctl -t -D DUMP_INCLUDES``:
every ``Include``/``IncludeOptional`` resolved, globs, conditionals and all), as are the
loaded modules (``DUMP_MODULES``) and defines (``DUMP_RUN_CFG``) that decide
``<IfModule>`` and ``<IfDefine>``. :func:`read_config` walks the files in that order and
collects the ``<VirtualHost>`` sections and ``Listen`` directives Apache uses.

:func:`match_vhost` picks, for a name and a port, the vhost Apache picks: the first in
config order whose ``ServerName`` or ``ServerAlias`` (``*`` and ``?`` wildcards) matches,
else (with ``fallback``) the port's first vhost, its default; :func:`answering_vhosts`
does so for each local address group (Apache hands a connection to the vhosts of its
exact address before the ``*`` ones).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ApacheConfig",
    "IncludeTree",
    "Node",
    "VirtualHost",
    "answering_vhosts",
    "lex",
    "match_vhost",
    "parse_includes",
    "read_config",
]


@dataclass
class Node:
    """One logical line: a directive, or a section with its children and closing tag."""

    name: str
    args: list[str]
    line: int
    """The physical line Apache numbers it by (the last one of a continued line)."""
    first_line: int
    start: int
    """The offset of its first character's line (indentation included)."""
    end: int
    """The offset just past its line ending."""
    children: list[Node] | None = None
    """A section's nodes (None for a directive)."""
    close_start: int = -1
    """A section: the offset of its ``</Name>`` line."""
    close_end: int = -1

    @property
    def section(self) -> bool:
        return self.children is not None


_WORD = re.compile(r"""\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'|(\S+))""", re.DOTALL)


def words(text: str) -> list[str]:
    """Arguments as ``ap_getword_conf`` splits them (quotes removed, ``\\"`` unescaped)."""
    found = []
    for match in _WORD.finditer(text):
        double, single, bare = match.groups()
        if double is not None:
            found.append(re.sub(r'\\(["\\])', r"\1", double))
        elif single is not None:
            found.append(re.sub(r"\\(['\\])", r"\1", single))
        elif bare is not None:
            found.append(bare)
    return found


def _logical_lines(text: str) -> Iterator[tuple[str, int, int, int, int]]:
    """(joined text, first line, last line, start offset, end offset) per logical line."""
    offset = 0
    number = 0
    pending: list[str] = []
    first = start = 0
    for raw in text.splitlines(keepends=True):
        number += 1
        if not pending:
            first, start = number, offset
        offset += len(raw)
        body = raw.rstrip("\r\n")
        stripped = body.rstrip()
        if stripped.endswith("\\") and not (not pending and stripped.lstrip().startswith("#")):
            pending.append(stripped[:-1])
            continue
        pending.append(body)
        yield " ".join(part.strip() for part in pending), first, number, start, offset
        pending = []
    if pending:
        yield " ".join(part.strip() for part in pending), first, number, start, offset


def lex(text: str) -> list[Node]:
    """The nodes of one file's ``text`` (comments and blank lines left out)."""
    root: list[Node] = []
    stack: list[Node] = []
    for joined, first, last, start, end in _logical_lines(text):
        if not joined or joined.startswith("#"):
            continue
        siblings = stack[-1].children if stack else root
        assert siblings is not None
        if joined.startswith("</"):
            name = joined[2:].rstrip(">").strip().lower()
            if stack and stack[-1].name == name:
                section = stack.pop()
                section.close_start, section.close_end = start, end
            continue
        if joined.startswith("<"):
            inner = joined[1:].rstrip()
            inner = inner[:-1] if inner.endswith(">") else inner
            name, _, rest = inner.partition(" ")
            if "\t" in name:
                name, _, more = name.partition("\t")
                rest = f"{more} {rest}"
            node = Node(name.lower(), words(rest), last, first, start, end, children=[])
            siblings.append(node)
            stack.append(node)
            continue
        name, _, rest = joined.replace("\t", " ", 1).partition(" ")
        siblings.append(Node(name.lower(), words(rest), last, first, start, end))
    return root


@dataclass
class IncludeTree:
    """Apache's list of the files it read (``DUMP_INCLUDES``): each file's includes by
    the line of the ``Include`` directive, in order."""

    main: Path
    children: dict[tuple[Path, int], list[Path]] = field(default_factory=dict)

    def included(self, file: Path, line: int) -> list[Path]:
        return self.children.get((file, line), [])

    def files(self) -> list[Path]:
        seen = [self.main]
        for paths in self.children.values():
            seen.extend(path for path in paths if path not in seen)
        return seen


def parse_includes(output: str) -> IncludeTree:
    """``apache2 -t -D DUMP_INCLUDES``'s output as a tree."""
    tree: IncludeTree | None = None
    parents: list[tuple[int, Path]] = []
    for line in output.splitlines():
        match = re.match(r"^(\s*)\((\*|\d+)\) (.+)$", line)
        if match is None:
            continue
        depth, where, path = len(match.group(1)), match.group(2), Path(match.group(3).strip())
        if where == "*":
            tree = IncludeTree(path)
            parents = [(depth, path)]
            continue
        if tree is None:
            continue
        while parents and parents[-1][0] >= depth:
            parents.pop()
        parent = parents[-1][1] if parents else tree.main
        tree.children.setdefault((parent, int(where)), []).append(path)
        parents.append((depth, path))
    if tree is None:
        raise ValueError("no main config file in Apache's DUMP_INCLUDES output")
    return tree


@dataclass
class VirtualHost:
    """A ``<VirtualHost>`` Apache uses, in config order (``index``)."""

    index: int
    file: Path
    """The file as Apache read it (``sites-enabled/x.conf``, maybe a symlink)."""
    node: Node
    addresses: list[str]
    names: list[str] = field(default_factory=list)
    """``ServerName`` first, then every ``ServerAlias``, lower case."""
    directives: dict[str, list[list[str]]] = field(default_factory=dict)
    """Each directive in it (and in files it includes), by lower-case name."""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.node.line}"

    @property
    def ssl(self) -> bool:
        engines = self.directives.get("sslengine", [])
        return any(args and args[0].lower() != "off" for args in engines)

    def ports(self) -> set[int | None]:
        """The ports of its addresses (None: ``*`` or no port, any port)."""
        found: set[int | None] = set()
        for address in self.addresses:
            _host, port = split_address(address)
            found.add(port)
        return found

    def on_port(self, port: int) -> bool:
        ports = self.ports()
        return port in ports or None in ports


def split_address(address: str) -> tuple[str, int | None]:
    """``*:80`` -> ("*", 80); ``[::1]:443`` -> ("[::1]", 443); ``*`` -> ("*", None)."""
    if address.startswith("["):
        host, _, rest = address.partition("]")
        port_text = rest.removeprefix(":")
        host += "]"
    elif address.count(":") == 1:
        host, _, port_text = address.partition(":")
    else:
        host, port_text = address, ""
    return host, int(port_text) if port_text.isdigit() else None


@dataclass
class ApacheConfig:
    """What certherd needs of a running config: each file's text, the vhosts and the
    ports something listens on."""

    root: Path
    main: Path
    texts: dict[Path, str]
    vhosts: list[VirtualHost]
    listens: list[tuple[str, int, Path]]
    """(address, port, file) of each active ``Listen``."""
    modules: frozenset[str]
    include_patterns: list[str]
    """Each active ``Include``/``IncludeOptional`` argument, absolute."""

    def listening(self, port: int, *, besides: Path | None = None) -> bool:
        """Whether a ``Listen`` (outside ``besides``) already opens ``port``."""
        return any(found == port and file != besides for _address, found, file in self.listens)

    def would_include(self, path: Path) -> bool:
        return any(fnmatch.fnmatchcase(str(path), pattern) for pattern in self.include_patterns)


def _module_active(argument: str, modules: frozenset[str]) -> bool:
    negate = argument.startswith("!")
    name = argument.lstrip("!")
    match = re.fullmatch(r"mod_(\w+)\.c", name)
    identifier = f"{match.group(1)}_module" if match else name
    return (identifier in modules) != negate


def read_config(
    root: Path,
    tree: IncludeTree,
    modules: frozenset[str],
    defines: Sequence[str],
    *,
    owned: Path | None = None,
) -> ApacheConfig:
    """Walk the files Apache reads (``tree``), in its order, with ``<IfModule>`` and
    ``<IfDefine>`` decided by ``modules`` and ``defines``. What files under ``owned``
    (certherd's own) say inside a vhost is left out of its directives."""
    texts: dict[Path, str] = {}
    parsed: dict[Path, list[Node]] = {}
    defined = set(defines)
    vhosts: list[VirtualHost] = []
    listens: list[tuple[str, int, Path]] = []
    patterns: list[str] = []

    def nodes_of(path: Path) -> list[Node]:
        if path not in parsed:
            # Bytes as they are (no newline translation: a CRLF file stays CRLF).
            texts[path] = path.read_bytes().decode("utf-8", errors="surrogateescape")
            parsed[path] = lex(texts[path])
        return parsed[path]

    def walk(path: Path, nodes: list[Node], vhost: VirtualHost | None) -> None:
        for node in nodes:
            name = node.name
            if node.section:
                assert node.children is not None
                if name == "ifmodule" and node.args:
                    if not _module_active(node.args[0], modules):
                        continue
                elif name == "ifdefine" and node.args:
                    negate = node.args[0].startswith("!")
                    if (node.args[0].lstrip("!") in defined) == negate:
                        continue
                elif name == "iffile" and node.args:
                    negate = node.args[0].startswith("!")
                    target = Path(root, node.args[0].lstrip("!"))
                    if target.exists() == negate:
                        continue
                elif name == "virtualhost" and vhost is None:
                    found = VirtualHost(len(vhosts), path, node, list(node.args))
                    vhosts.append(found)
                    walk(path, node.children, found)
                    continue
                walk(path, node.children, vhost)
                continue
            if name == "define" and node.args:
                defined.add(node.args[0])
            elif name == "undefine" and node.args:
                defined.discard(node.args[0])
            elif name == "listen" and node.args and vhost is None:
                host, port = split_address(node.args[0])
                if port is None and node.args[0].isdigit():
                    host, port = "*", int(node.args[0])
                if port is not None:
                    listens.append((host, port, path))
            elif name in ("include", "includeoptional") and node.args:
                pattern = node.args[0]
                patterns.append(pattern if pattern.startswith("/") else str(root / pattern))
                for included in tree.included(path, node.line):
                    mine = owned is not None and included.resolve().is_relative_to(owned.resolve())
                    walk(included, nodes_of(included), None if mine else vhost)
                continue
            if vhost is not None:
                vhost.directives.setdefault(name, []).append(node.args)
                if name == "servername" and node.args:
                    vhost.names.insert(0, _host_of(node.args[0]))
                elif name == "serveralias":
                    vhost.names.extend(arg.lower() for arg in node.args)

    walk(tree.main, nodes_of(tree.main), None)
    return ApacheConfig(root, tree.main, texts, vhosts, listens, modules, patterns)


def _host_of(server_name: str) -> str:
    """``ServerName https://www.example.com:443`` -> ``www.example.com``."""
    host = server_name.split("://", 1)[-1]
    if host.startswith("["):
        return host.partition("]")[0].lower() + "]"
    return host.rpartition(":")[0].lower() if ":" in host else host.lower()


def _wildcard(pattern: str) -> re.Pattern[str]:
    """A ServerAlias pattern (``*`` and ``?`` only, as Apache's ap_strcasecmp_match)."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def match_vhost(
    vhosts: list[VirtualHost], host: str, port: int, *, fallback: bool, ssl: bool = False
) -> VirtualHost | None:
    """The vhost Apache picks for ``host`` on ``port`` among the plain ones (``ssl``:
    the TLS ones); with ``fallback``, the port's first vhost when no name matches."""
    host = host.lower().rstrip(".")
    candidates = [v for v in vhosts if v.on_port(port) and v.ssl == ssl]
    for vhost in candidates:
        if any(_wildcard(pattern).fullmatch(host) for pattern in vhost.names):
            return vhost
    return candidates[0] if fallback and candidates else None


def answering_vhosts(
    vhosts: list[VirtualHost], host: str, port: int, *, fallback: bool = True
) -> list[VirtualHost]:
    """Every plain vhost that may answer ``host`` on ``port``, whichever local address
    the connection comes in on: Apache hands a connection to the vhosts of its exact
    address first (``<VirtualHost 127.0.0.1:80>``), and only without any to the ``*``
    ones, then the ``_default_`` ones; in each group, the name match, else (with
    ``fallback``) the group's first (a vhost more than Apache would pick gets the
    challenge include: harmless, it only adds the challenge path)."""
    groups: dict[str, list[VirtualHost]] = {}
    for vhost in vhosts:
        if vhost.ssl or not vhost.on_port(port):
            continue
        for address in vhost.addresses:
            where, found = split_address(address)
            if found in (port, None):
                group = where.lower()  # _default_ apart: Apache tries it after the * ones
                if vhost not in groups.setdefault(group, []):
                    groups[group].append(vhost)
    chosen: list[VirtualHost] = []
    for members in groups.values():
        picked = match_vhost(members, host, port, fallback=fallback)
        if picked is not None and picked not in chosen:
            chosen.append(picked)
    return chosen
