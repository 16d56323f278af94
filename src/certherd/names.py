"""Names for certificates, normalised and checked the way the CA will judge them.

What a person types (``-d``, ``domains = [...]`` in certherd.toml, a Certbot lineage)
becomes a typed ACME identifier (RFC 8555 §9.7.7 ``dns``, RFC 8738 ``ip``) here, before
any CA is contacted, so a name the CA would refuse never costs an order (nor a failed
validation, which counts against rate limits):

- white space around the name is dropped, and one trailing dot (the DNS root);
- IPv4 and IPv6 literals (also ``[::1]``) become ``ip`` identifiers in the text form of
  RFC 8738 §3 (RFC 5952 for IPv6: lower case, compressed);
- DNS names are lower-cased; IDNs become A-labels by UTS 46 / IDNA 2008 (the ``idna``
  package); :func:`unicode_name` gives the U-label form back for display;
- every label is letters, digits and hyphens, not starting or ending with one (RFC 1123
  §2.1, RFC 5891 §4.2.3.1), at most 63 octets; the name at most 253 (RFC 1035 §2.3.4);
  ``--`` in the 3rd and 4th place only in a valid ``xn--`` A-label (RFC 5891 §4.2.3.1);
  the last label not all digits (that is an IP address typed wrong);
- ``*`` only as the whole leftmost label with a name under it (RFC 8555 §7.1.3);
- duplicates are dropped, the first keeps its place.

A name that fails raises :class:`~certherd.errors.InvalidNameError` (a ConfigError:
exit 2), one line naming the name and what is wrong with it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from certherd.acme.messages import Identifier
from certherd.errors import InvalidNameError, refuse_text, safe_text

__all__ = [
    "MAX_LABEL",
    "MAX_NAME",
    "canonical_names",
    "describe_name",
    "name_set",
    "normalize_name",
    "normalize_names",
    "unicode_name",
]

MAX_LABEL = 63
"""RFC 1035 §2.3.4: labels are 63 octets or less."""
MAX_NAME = 253
"""RFC 1035 §2.3.4: 255 octets on the wire, so 253 characters in text without the root."""

_LDH = re.compile(r"[a-z0-9-]+")
_DIGITS = re.compile(r"[0-9]+")


def _invalid(text: str, why: str) -> InvalidNameError:
    return InvalidNameError(f"{safe_text(text, 300)!r} is not a valid DNS name: {why}")


def normalize_name(text: str | Identifier) -> Identifier:
    """The identifier the CA will see for ``text``, or InvalidNameError saying why not."""
    if isinstance(text, Identifier):
        checked = normalize_name(text.value)
        if checked.type != text.type:
            raise InvalidNameError(
                f"{safe_text(text.value, 300)!r} is not a valid {text.type} identifier"
            )
        return checked
    if not isinstance(text, str):
        raise InvalidNameError(f"{safe_text(text, 100)!r} is not a name: write it as text")
    stripped = text.strip()
    if not stripped:
        raise InvalidNameError("an empty name: give a DNS name or an IP address")
    address = _ip_address(stripped)
    if address is not None:
        return Identifier("ip", address)
    return Identifier("dns", _dns_name(stripped, text))


def normalize_names(texts: Iterable[str | Identifier]) -> tuple[Identifier, ...]:
    """Every name normalised, duplicates dropped (the first keeps its place); at least one."""
    refuse_text(texts, "names")
    seen: dict[Identifier, None] = {}
    for text in texts:
        seen.setdefault(normalize_name(text), None)
    if not seen:
        raise InvalidNameError("no names: a certificate needs at least one")
    return tuple(seen)


def canonical_names(texts: Iterable[str | Identifier]) -> tuple[str, ...]:
    """:func:`normalize_names` as the text values stored in lineage settings."""
    return tuple(identifier.value for identifier in normalize_names(texts))


def name_set(values: Iterable[str]) -> frozenset[str]:
    """Stored names as a set to compare, each normalised where it can be: settings
    written before names were normalised (``dot.test.``) still match ``dot.test``."""
    result = set()
    for value in values:
        try:
            result.add(normalize_name(value).value)
        except InvalidNameError:
            result.add(value.strip().lower())
    return frozenset(result)


def unicode_name(name: str | Identifier) -> str:
    """The U-label form of a DNS name for people (``xn--bcher-kva.example`` ->
    ``bücher.example``); any other name as it is."""
    value = name.value if isinstance(name, Identifier) else name
    if "xn--" not in value:
        return value
    import idna

    labels = []
    for label in value.split("."):
        if label.startswith("xn--"):
            try:
                labels.append(idna.decode(label))
                continue
            except UnicodeError:  # not ours to judge here: shown as it is
                pass
        labels.append(label)
    return ".".join(labels)


def describe_name(name: str | Identifier) -> str:
    """Both forms of an IDN (``xn--bcher-kva.example (bücher.example)``), else the name."""
    value = name.value if isinstance(name, Identifier) else name
    shown = unicode_name(value)
    return value if shown == value else f"{value} ({shown})"


def _ip_address(text: str) -> str | None:
    """RFC 8738 §3: the text form of an IP literal, or None when ``text`` is not one."""
    bracketed = text.startswith("[") and text.endswith("]")
    candidate = text[1:-1] if bracketed else text
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        if bracketed:
            raise InvalidNameError(
                f"{safe_text(text, 100)!r} is not a valid IP address: write it as "
                "192.0.2.1 or 2001:db8::1"
            ) from None
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        raise InvalidNameError(
            f"{safe_text(text, 100)!r} cannot be in a certificate: drop the zone index "
            f"%{safe_text(address.scope_id, 40)}"
        )
    return str(address)


def _to_ascii(name: str, original: str) -> str:
    """UTS 46 mapping, then IDNA 2008 A-labels (non-transitional: ``ß`` stays ``ß``)."""
    import idna

    prefix = ""
    if name.startswith("*."):
        prefix, name = "*.", name[2:]
    try:
        encoded = idna.encode(name, uts46=True, std3_rules=True, transitional=False)
    except UnicodeError as exc:  # idna.IDNAError and its codepoint errors
        raise _invalid(original, f"{safe_text(exc, 200)} (IDNA 2008)") from None
    return prefix + encoded.decode("ascii")


def _dns_name(text: str, original: str) -> str:
    name = text if text.isascii() else _to_ascii(text, original)
    name = name.lower().removesuffix(".")
    if not name:
        raise _invalid(original, "it is only a dot")
    labels = name.split(".")
    if labels[0] == "*":
        labels = labels[1:]
        if not labels:
            raise _invalid(original, "a wildcard needs a name under it, as in *.example.com")
    for label in labels:
        _check_label(label, original)
    if len(name) > MAX_NAME:
        raise _invalid(original, f"it is {len(name)} characters long: at most {MAX_NAME}")
    if _DIGITS.fullmatch(labels[-1]):
        raise _invalid(
            original, "its last label is all digits: write an IP address in full (192.0.2.1)"
        )
    return name


def _check_label(label: str, original: str) -> None:
    if not label:
        raise _invalid(original, "it has an empty label (two dots in a row, or a leading dot)")
    if "*" in label:
        raise _invalid(
            original, "'*' is allowed only as the whole leftmost label, as in *.example.com"
        )
    if not _LDH.fullmatch(label):
        bad = next(char for char in label if not _LDH.fullmatch(char))
        if bad.isspace():
            why = "it contains white space"
        elif bad == "_":
            why = "'_' is not allowed in a host name (RFC 1123 §2.1): CAs refuse it"
        else:
            why = f"it contains {safe_text(bad, 10)!r}: use letters, digits and '-'"
        raise _invalid(original, why)
    if len(label) > MAX_LABEL:
        raise _invalid(
            original,
            f"the label {label[:20]}... is {len(label)} characters long: at most {MAX_LABEL}",
        )
    if label.startswith("-") or label.endswith("-"):
        raise _invalid(original, f"the label {label!r} starts or ends with '-'")
    if label[2:4] == "--":
        if not label.startswith("xn--"):
            raise _invalid(
                original,
                f"the label {label!r} has '--' in the 3rd and 4th place, which is kept for "
                "IDN A-labels (xn--)",
            )
        _check_a_label(label, original)


def _check_a_label(label: str, original: str) -> None:
    """An ``xn--`` label must decode to a valid U-label that encodes back to itself
    (RFC 5891 §5.4), as CAs check."""
    import idna

    try:
        again = idna.encode(idna.decode(label)).decode("ascii")
    except UnicodeError as exc:
        raise _invalid(
            original, f"the label {label!r} is not a valid A-label: {safe_text(exc, 200)}"
        ) from None
    if again != label:
        raise _invalid(original, f"the label {label!r} is not in normal form: write {again!r}")
