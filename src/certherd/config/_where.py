"""Where in certherd.toml: the text of the file read, a TOML syntax error and a schema
mistake each said as one line naming the file, the line and the fix."""

from __future__ import annotations

import re
from pathlib import Path

from certherd.errors import ConfigError
from certherd.schema import SchemaError

__all__ = ["Where", "read_text", "syntax_error"]


class Where:
    """Error messages that name the file, the line and the fix.

    Lines are found in the text itself (tomllib keeps no positions): a key is looked up
    only inside its own table, the ``block``-th ``[[certificate]]`` or ``[defaults]``.
    """

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        self._headers: dict[str, list[int]] = {}
        self._keys: dict[int, dict[str, int]] = {}

    def header(self, name: str, occurrence: int = 0) -> int | None:
        """The line of the ``occurrence``-th ``[name]`` or ``[[name]]`` header."""
        found = self._headers.get(name)
        if found is None:  # one scan per table name, not per lookup: files of 10,000 blocks
            pattern = re.compile(rf"^\s*\[\[?\s*[\"']?{re.escape(name)}[\"']?\s*\]")
            found = [n for n, line in enumerate(self.lines, 1) if pattern.match(line)]
            self._headers[name] = found
        return found[occurrence] if occurrence < len(found) else None

    def key(self, key: str, table: str | None = None, occurrence: int = 0) -> int | None:
        """The line setting ``key`` in a table (None: before the first table), else the
        table's header line."""
        start = self.header(table, occurrence) if table else 0
        if start is None:
            return None
        keys = self._keys.get(start)
        if keys is None:  # one scan per table, then every lookup in it is a dict get
            keys = {}
            for number in range(start + 1, len(self.lines) + 1):
                line = self.lines[number - 1]
                if _TABLE_HEADER.match(line):
                    break
                found = _KEY.match(line)
                if found:
                    keys.setdefault(found["key"], number)
            self._keys[start] = keys
        return keys.get(key) or start or None

    def line(self, path: tuple[str | int, ...]) -> int | None:
        """The line of the value at a key path (``certificate[3].solvers[1].listen``):
        the line of its key in its table, or of the nearest enclosing key found."""
        if not path:
            return None
        head = path[0]
        if head == "certificate" and len(path) > 1 and isinstance(path[1], int):
            table, occurrence, rest = "certificate", path[1], path[2:]
        elif head == "defaults" and len(path) > 1:
            table, occurrence, rest = "defaults", 0, path[1:]
        else:
            return self.header(str(head)) or self.key(str(head))
        if not rest:
            return self.header(table, occurrence)
        line = self.key(str(rest[0]), table, occurrence)
        inner = [part for part in rest[1:] if isinstance(part, str)]
        if line and inner:  # a key inside an inline table or array: the first line naming it
            pattern = re.compile(rf"(^|[{{,\s]){re.escape(inner[-1])}\s*=")
            for number in range(line, len(self.lines) + 1):
                text = self.lines[number - 1]
                if number > line and _TABLE_HEADER.match(text):
                    break
                if pattern.search(text):
                    return number
        return line

    def error(self, message: str, line: int | None) -> ConfigError:
        where = f"{self.path}:{line}" if line else str(self.path)
        return ConfigError(f"{where}: {message}")

    def schema_error(self, err: SchemaError) -> ConfigError:
        """A schema mistake as one line: file, line, key path, what and how to fix."""
        path = err.path
        if path == ("certificate",):
            message = "write certificates as [[certificate]] blocks (two brackets)"
        elif path == ("defaults",):
            message = "defaults must be a table: write a [defaults] section"
        elif len(path) == 1 and err.reason.startswith("unknown setting"):
            message = f"unknown section {path[0]!r}: use [defaults] and [[certificate]]"
        elif path[-1:] == ("domains",) and err.reason.startswith("is required"):
            message = 'a certificate needs domains = ["example.com", ...]'
        elif err.reason.startswith("unknown setting") and len(path) == (
            2 if path[0] == "defaults" else 3
        ):
            table = "[defaults]" if path[0] == "defaults" else "[[certificate]]"
            message = str(SchemaError(path, err.reason.replace(":", f" in {table}:", 1)))
        else:
            message = str(err)
        return self.error(message, self.line(path))


_TABLE_HEADER = re.compile(r"^\s*\[")
_KEY = re.compile(r"^\s*[\"']?(?P<key>[^\"'=.\s]+)[\"']?\s*[=.]")
_TOML_POSITION = re.compile(
    r"^(?P<reason>.*) \(at (?:line (?P<line>\d+), column (?P<column>\d+)|end of document)\)$"
)


def syntax_error(path: Path, text: str, exc: Exception) -> ConfigError:
    match = _TOML_POSITION.match(str(exc))
    if match is None:
        return ConfigError(f"{path}: not valid TOML: {exc}: fix the syntax (see https://toml.io)")
    line = match["line"] or str(max(1, len(text.splitlines())))
    column = f" at column {match['column']}" if match["column"] else " at the end"
    return ConfigError(
        f"{path}:{line}: not valid TOML: {match['reason']}{column}: "
        "fix the syntax on that line (see https://toml.io)"
    )


def read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - raw.rfind(b"\n", 0, exc.start)
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {column}): "
            "save the file as UTF-8"
        ) from None
