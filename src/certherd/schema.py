"""Typed schemas of certherd's settings (msgspec), errors that name the key path, and
which fields hold secrets.

Every settings table is a :class:`msgspec.Struct` with ``forbid_unknown_fields``: the
certherd.toml document, each solver's options, each DNS provider's settings. A field
whose value is a secret (a TSIG key, an API token) is typed :data:`Secret` (a ``str``
carrying :data:`SECRET` metadata); :func:`secret_fields` lists them, and
:func:`looks_secret` guesses for settings whose names are only known at run time
(dns-lexicon's options). Secrets are shown as :data:`REDACTED`, never as themselves.

:func:`convert` checks data against a schema: ``strict=True`` for TOML (``"false"`` is
not a boolean, ``7`` is not a string), ``strict=False`` for command-line text (``"30"``
may be a number). A mistake raises :class:`SchemaError`: one line with the key path
(``certificate[2].solver_options.lisen``), what is wrong and what is allowed, never the
value of a secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, TypeVar

import msgspec

from certherd.errors import ConfigError

__all__ = [
    "REDACTED",
    "SECRET",
    "SchemaError",
    "Secret",
    "convert",
    "dotted",
    "looks_secret",
    "secret_fields",
]

SECRET = msgspec.Meta(extra={"secret": True}, description="a secret: never shown or logged")
"""Metadata marking a field as secret: ``Annotated[str, SECRET]``."""

Secret = Annotated[str, SECRET]
"""A string that is a secret (stored by reference, redacted in all output)."""

REDACTED = "***"
"""What is shown in place of a secret."""

Path = tuple[str | int, ...]
T = TypeVar("T")

_SECRET_WORDS = re.compile(r"(secret|token|password|passwd|credential|private|api_?key|auth_)")


def looks_secret(name: str) -> bool:
    """Whether a setting named ``name`` probably holds a secret (for settings that no
    schema declares: dns-lexicon's ``auth_token``, ``auth_password``, ...)."""
    return bool(_SECRET_WORDS.search(name.lower()))


def secret_fields(schema: type[msgspec.Struct]) -> frozenset[str]:
    """The names of the fields of ``schema`` typed :data:`Secret`."""
    cached = _SECRETS.get(schema)
    if cached is None:
        info = msgspec.inspect.type_info(schema)
        assert isinstance(info, msgspec.inspect.StructType)
        cached = frozenset(field.name for field in info.fields if _is_secret(field.type))
        _SECRETS[schema] = cached
    return cached


_SECRETS: dict[type[msgspec.Struct], frozenset[str]] = {}


def _is_secret(kind: msgspec.inspect.Type) -> bool:
    if isinstance(kind, msgspec.inspect.Metadata):
        return bool((kind.extra or {}).get("secret")) or _is_secret(kind.type)
    if isinstance(kind, msgspec.inspect.UnionType):
        return any(_is_secret(member) for member in kind.types)
    return False


def dotted(path: Sequence[str | int]) -> str:
    """``("certificate", 2, "solvers", 0, "listen")`` -> ``certificate[2].solvers[0].listen``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


class SchemaError(ConfigError):
    """A value that does not fit its schema: ``path`` is where, ``reason`` what and how to fix."""

    def __init__(self, path: Iterable[str | int], reason: str) -> None:
        self.path: Path = tuple(path)
        self.reason = reason
        where = dotted(self.path)
        joint = " " if reason.startswith(("must ", "is ")) else ": "
        super().__init__(f"{where}{joint}{reason}" if where else reason)

    def below(self, prefix: Iterable[str | int]) -> SchemaError:
        """The same error, located below ``prefix`` (where the checked table sits)."""
        return SchemaError((*prefix, *self.path), self.reason)


def convert(
    data: Any,
    schema: type[T],
    *,
    strict: bool = True,
    what: str = "",
) -> T:
    """``data`` as an instance of ``schema``, or :class:`SchemaError`.

    ``what`` names the table in messages (``the http solver``). No message shows the
    value of a string field, so a secret given in the wrong place is never echoed.
    """
    try:
        return msgspec.convert(data, schema, strict=strict)
    except msgspec.ValidationError as exc:
        raise _explain(str(exc), schema, what) from None


_AT = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<at>[^`]*)`)?$", re.DOTALL)
_PART = re.compile(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]|\['((?:[^'\\]|\\.)*)'\]|\[\"([^\"]*)\"\]")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>.*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<field>.*)`$")
_EXPECTED = re.compile(r"^Expected `(?P<want>[^`]*)`(?:, got `(?P<got>[^`]*)`)?(?P<rest>.*)$")
_ENUM = re.compile(r"^Invalid enum value (?P<value>.*)$")

_GOT = {
    "str": "a string",
    "int": "a whole number",
    "float": "a number",
    "bool": "true/false",
    "array": "a list",
    "object": "a table",
    "null": "nothing",
    "datetime": "a date-time",
    "date": "a date",
    "time": "a time",
}


def _parse_path(text: str) -> Path:
    parts: list[str | int] = []
    for match in _PART.finditer(text):
        name, index, quoted, double = match.groups()
        if index is not None:
            parts.append(int(index))
        else:
            parts.append(name if name is not None else (quoted or double or ""))
    return tuple(parts)


def _explain(message: str, schema: type[Any], what: str) -> SchemaError:
    match = _AT.match(message.strip())
    assert match is not None
    reason, path = match["reason"], _parse_path(match["at"] or "")
    table = f" of {what}" if what else ""
    unknown = _UNKNOWN.match(reason)
    if unknown:
        allowed = _fields_at(schema, path)
        choices = f": use one of {', '.join(allowed)}" if allowed else ""
        return SchemaError(
            (*path, unknown["field"]), f"unknown setting {unknown['field']!r}{table}{choices}"
        )
    missing = _MISSING.match(reason)
    if missing:
        return SchemaError((*path, missing["field"]), f"is required{table}: set it")
    field_type = _type_at(schema, path)
    expected = _EXPECTED.match(reason)
    if expected and expected["got"]:
        wanted = _describe(field_type) if field_type is not None else expected["want"]
        got = _GOT.get(expected["got"], expected["got"])
        if path and isinstance(path[-1], int) and field_type is not None:
            path = _field_path(path)
            wanted = _describe(_type_at(schema, path) or field_type)
        return SchemaError(path, f"must be {wanted}, not {got}")
    if expected:  # a constraint: ``Expected `float` >= 0.0``
        if field_type is not None:
            return SchemaError(path, f"must be {_describe(field_type)}")
        return SchemaError(path, f"must be {expected['want']}{expected['rest']}".rstrip())
    enum = _ENUM.match(reason)
    if enum:
        choices = _describe(field_type) if field_type is not None else "one of the choices"
        return SchemaError(path, f"{enum['value']} is not allowed: use {choices}")
    return SchemaError(path, reason)


def _field_path(path: Path) -> Path:
    """The path of the field holding a list item (``domains[1]`` -> ``domains``)."""
    while path and isinstance(path[-1], int):
        path = path[:-1]
    return path


def _unwrap(kind: msgspec.inspect.Type) -> msgspec.inspect.Type:
    while isinstance(kind, msgspec.inspect.Metadata):
        kind = kind.type
    return kind


def _type_at(schema: type[Any], path: Path) -> msgspec.inspect.Type | None:
    """The declared type at ``path`` inside ``schema`` (None where it cannot be told)."""
    kind: msgspec.inspect.Type = msgspec.inspect.type_info(schema)
    for part in path:
        kind = _unwrap(kind)
        candidates = kind.types if isinstance(kind, msgspec.inspect.UnionType) else (kind,)
        found: msgspec.inspect.Type | None = None
        for candidate in map(_unwrap, candidates):
            if isinstance(part, str) and isinstance(candidate, msgspec.inspect.StructType):
                found = next((f.type for f in candidate.fields if f.name == part), None)
            elif isinstance(part, str) and isinstance(candidate, msgspec.inspect.DictType):
                found = candidate.value_type
            elif isinstance(part, int) and isinstance(
                candidate, msgspec.inspect.ListType | msgspec.inspect.TupleType
            ):
                found = (
                    candidate.item_type if isinstance(candidate, msgspec.inspect.ListType) else None
                )
            if found is not None:
                break
        if found is None:
            return None
        kind = found
    return kind


def _fields_at(schema: type[Any], path: Path) -> list[str]:
    kind = _type_at(schema, path)
    if kind is None:
        return []
    kind = _unwrap(kind)
    members = kind.types if isinstance(kind, msgspec.inspect.UnionType) else (kind,)
    for candidate in map(_unwrap, members):
        if isinstance(candidate, msgspec.inspect.StructType):
            return sorted(f.encode_name for f in candidate.fields)
    return []


def _describe(kind: msgspec.inspect.Type) -> str:
    """How to write a value of ``kind`` in TOML, for a person."""
    if isinstance(kind, msgspec.inspect.Metadata):
        return _describe(kind.type)
    if isinstance(kind, msgspec.inspect.IntType | msgspec.inspect.FloatType):
        text = "a whole number" if isinstance(kind, msgspec.inspect.IntType) else "a number"
        bounds = [
            f"{word} {value:g}"
            for word, value in ((">=", kind.ge), (">", kind.gt), ("<=", kind.le), ("<", kind.lt))
            if value is not None
        ]
        return " ".join([text, " and ".join(bounds)]) if bounds else text
    if isinstance(kind, msgspec.inspect.StrType):
        return 'a string in quotes, like "..."'
    if isinstance(kind, msgspec.inspect.BoolType):
        return "true or false (without quotes)"
    if isinstance(kind, msgspec.inspect.LiteralType):
        return "one of " + ", ".join(str(v) for v in kind.values)
    if isinstance(kind, msgspec.inspect.ListType):
        if isinstance(_unwrap(kind.item_type), msgspec.inspect.StrType):
            return 'a list of strings, like ["..."]'
        return "a list"
    if isinstance(kind, msgspec.inspect.DictType | msgspec.inspect.StructType):
        return 'a table, like { key = "value" }'
    if isinstance(kind, msgspec.inspect.UnionType):
        members = [m for m in kind.types if not isinstance(m, msgspec.inspect.NoneType)]
        strings = [_unwrap(m) for m in members]
        if (
            len(strings) == 2
            and isinstance(strings[0], msgspec.inspect.StrType)
            and isinstance(strings[1], msgspec.inspect.ListType)
        ):
            return 'a string or a list of strings, like ["..."]'
        return " or ".join(_describe(m) for m in members)
    return "of another type"
