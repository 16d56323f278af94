"""HAProxy's crt-list files: certherd's line in one, and which certificate HAProxy
picks for a name on a ``bind``.

A crt-list (configuration.txt §5.1 "crt-list", HAProxy 2.6) holds one certificate per
line, ``<crtfile> [[<sslbindconf> ...]] [[!]<snifilter> ...]``; "Empty lines as well as
lines beginning with a hash ('#') will be ignored". certherd adds two lines at its end:
a comment saying whose they are, and the absolute path of the lineage's PEM, with no
SNI filter ("If no SNI filter is specified, the CN and SAN are used": the certificate's
own names, which follow the lineage when its names change, where a filter written once
would not). Taking them out gives the file's previous bytes.

Which certificate serves a name: HAProxy looks the name up among the certificates of
the ``bind`` and the first loaded that carries it wins, a certificate added later for
the same name is never served (seen on HAProxy 2.6: a second line for a name, with or
without an SNI filter, changes nothing); and "The first declared certificate of a bind
line ... will also be used if the provided SNI matches its CN or SAN" unless its
filters hold ``!*``. :func:`first_served` finds a name some earlier certificate already
serves, so certherd refuses instead of adding a certificate HAProxy would never use.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from certherd.errors import ConfigError
from certherd.install.haproxy.config import Bind

__all__ = [
    "Entry",
    "add_line",
    "check_served",
    "entries",
    "first_served",
    "has_line",
    "lists_holding",
    "read_text",
    "remove_line",
]

MARK = "# certherd:"
RESERVED = (".issuer", ".ocsp", ".sctl", ".key")
"""What HAProxy's directory loading skips (configuration.txt, "crt")."""


def _note(lineage: str) -> str:
    return f"{MARK} {lineage} (certherd uninstall {lineage} takes this line and the next away)"


def has_line(text: str, pem: str) -> bool:
    """Whether ``text`` holds certherd's line for ``pem``."""
    return _pattern(pem).search(text) is not None


def _pattern(pem: str) -> re.Pattern[str]:
    return re.compile(rf"(?m)^{re.escape(MARK)} [^\r\n]*\r?\n{re.escape(pem)}[ \t]*(\r?\n|\Z)")


def add_line(text: str, pem: str, lineage: str) -> str:
    """``text`` with certherd's two lines for ``pem`` at its end, in the file's own line
    endings (a file without a last newline keeps having none)."""
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = f"{_note(lineage)}{newline}{pem}"
    if not text:
        return lines + newline
    if text.endswith("\n"):
        return text + lines + newline
    return text + newline + lines


def remove_line(text: str, pem: str) -> str | None:
    """``text`` without certherd's lines for ``pem`` (None when it has none)."""
    match = _pattern(pem).search(text)
    if match is None:
        return None
    start, end = match.span()
    if not match.group(1) and start and text[start - 1] == "\n":  # added as the last line
        start -= 2 if text[max(0, start - 2) : start] == "\r\n" else 1
    return text[:start] + text[end:]


@dataclass(frozen=True)
class Entry:
    """One certificate a ``bind`` loads, in HAProxy's order: its file, SNI filters,
    and where it was named (for messages)."""

    path: str
    filters: tuple[str, ...]
    where: str
    default: bool = False  # the bind's first certificate


def _split(line: str) -> tuple[str, tuple[str, ...]] | None:
    """A crt-list line: its certificate and SNI filters (the ``[...]`` options left out)."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    words = stripped.split()
    path, rest = words[0], " ".join(words[1:])
    if rest.startswith("["):
        rest = rest.partition("]")[2]
    return path, tuple(rest.split())


def entries(sources: Sequence[tuple[str, str]], crt_base: str, skip: str) -> Iterator[Entry]:
    """The certificates a bind's ``crt``/``crt-list`` arguments (``sources``) load, in
    order; files below ``skip`` (certherd's crt dir) left out."""

    def located(path: str) -> str:
        if path.startswith("/") or not crt_base:
            return os.path.normpath(path)
        return os.path.normpath(os.path.join(crt_base, path))

    def loaded() -> Iterator[Entry]:
        for kind, argument in sources:
            if kind == "crt":
                path = located(argument)
                if os.path.isdir(path):
                    for name in sorted(os.listdir(path)):
                        if not name.startswith(".") and not name.endswith(RESERVED):
                            yield Entry(os.path.join(path, name), (), f"crt {argument}")
                else:
                    yield Entry(path, (), f"crt {argument}")
                continue
            try:
                lines = Path(argument).read_text(errors="replace").splitlines()
            except OSError:
                continue  # HAProxy's own test says what is wrong with it
            for number, line in enumerate(lines, start=1):
                parsed = _split(line)
                if parsed is not None:
                    where = f"crt-list {argument}, line {number}"
                    yield Entry(located(parsed[0]), parsed[1], where)

    for index, entry in enumerate(loaded()):
        if os.path.dirname(entry.path) != skip:
            yield Entry(entry.path, entry.filters, entry.where, default=index == 0)


def _certificate_names(path: str) -> set[str]:
    """The DNS names (subject alternative names and common names) of the first
    certificate in the PEM file ``path``; empty when it cannot be read."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        with open(path, "rb") as stream:
            data = stream.read(1 << 20)
        leaf = x509.load_pem_x509_certificates(data)[0]
    except (OSError, ValueError, IndexError):
        return set()
    names = {str(a.value) for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    try:
        alternative = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names.update(alternative.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        pass
    return {name.lower() for name in names}


def first_served(names: Iterable[str], found: Iterable[Entry]) -> tuple[str, Entry] | None:
    """A name of ``names`` a certificate of ``found`` (a bind's, in order) already
    serves, as HAProxy keys it (the exact name, or the same ``*.`` wildcard), and that
    certificate; None when HAProxy would pick certherd's for every name."""
    wanted = {name.lower() for name in names}
    for entry in found:
        positive = {f.lower() for f in entry.filters if not f.startswith("!")}
        negative = {f[1:].lower() for f in entry.filters if f.startswith("!")}
        hidden = "*" in negative  # "!*": not its own names
        own = (
            set() if hidden or (positive and not entry.default) else _certificate_names(entry.path)
        )
        keys = positive or own
        if entry.default:  # the bind's default certificate: its own names too
            keys = keys | own
        for name in sorted(wanted & (keys - negative)):
            return name, entry
    return None


def check_served(binds: Iterable[Bind], crt_base: str, crt_dir: str, names: Sequence[str]) -> None:
    """ConfigError when a certificate one of ``binds`` loads (certherd's in ``crt_dir``
    left out) already serves one of ``names``: HAProxy would go on serving that one."""
    for bind in binds:
        served = first_served(names, entries(bind.sources, crt_base, crt_dir))
        if served is not None:
            name, entry = served
            raise ConfigError(
                f"HAProxy serves {name} from {entry.path} ({entry.where}; {bind.where}) "
                "before any certificate certherd adds there, so certherd's would never be "
                "served: take that certificate (or the name) out, then run certherd again"
            )


def read_text(path: Path) -> str | None:
    """A crt-list's text (None when it cannot be read: HAProxy's own test says why)."""
    try:
        return path.read_bytes().decode("utf-8", "surrogateescape")
    except OSError:
        return None


def lists_holding(binds: Iterable[Bind], pem: str) -> dict[str, str]:
    """Each crt-list the ``binds`` load (by an absolute path) that holds certherd's line
    for ``pem``, as written in the config: its text without that line."""
    found = {}
    for written in dict.fromkeys(w for bind in binds for w in bind.crt_lists):
        text = read_text(Path(written)) if written.startswith("/") else None
        edited = remove_line(text, pem) if text is not None else None
        if edited is not None:
            found[written] = edited
    return found
