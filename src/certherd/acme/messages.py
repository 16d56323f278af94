"""ACME resources as typed, immutable values (RFC 8555 §7.1, RFC 9773, draft-ietf-acme-profiles).

Everything here is parsed from CA responses, so everything is untrusted: URLs are
checked (``https`` only unless the testing switch is on), strings are typed, and
unknown fields are kept in ``raw`` rather than rejected, so a CA's new feature does not
break us.
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from certherd.errors import Problem, UnsafeResponseError, refuse_text, safe_text

__all__ = [
    "DNS_01",
    "HTTP_01",
    "TLS_ALPN_01",
    "Account",
    "Authorization",
    "Challenge",
    "Directory",
    "DirectoryMeta",
    "Identifier",
    "Order",
    "RenewalInfo",
    "Status",
    "UrlPolicy",
]

# Challenge types (the "type" of a challenge object, RFC 8555 §8 and §9.7.8).
HTTP_01 = "http-01"
"""RFC 8555 §8.3: the key authorization served at /.well-known/acme-challenge/<token>."""
DNS_01 = "dns-01"
"""RFC 8555 §8.4: a TXT record at _acme-challenge.<name> with the key authorization's digest."""
TLS_ALPN_01 = "tls-alpn-01"
"""RFC 8737 §3: a self-signed certificate offered for the "acme-tls/1" ALPN protocol."""

MAX_URL_LENGTH = 2048
MAX_LIST = 1000  # items kept of a list of text (contacts, CAA identities) from the CA
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)
"""CA timestamps outside [EARLIEST, LATEST] are refused: arithmetic on them must not overflow."""


class Status(enum.StrEnum):
    """Resource statuses of RFC 8555 §7.1.6 (accounts, orders, authorizations, challenges)."""

    PENDING = "pending"
    READY = "ready"
    PROCESSING = "processing"
    VALID = "valid"
    INVALID = "invalid"
    DEACTIVATED = "deactivated"
    EXPIRED = "expired"
    REVOKED = "revoked"

    @classmethod
    def parse(cls, value: object, what: str) -> Status:
        try:
            if not isinstance(value, str):
                raise ValueError(value)
            return cls(value)
        except ValueError:
            raise UnsafeResponseError(
                f"the CA sent an unknown {what} status {safe_text(value, 40)!r}"
            ) from None


_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")


@dataclass(frozen=True)
class UrlPolicy:
    """Which URLs from the CA we accept: ``https`` only, unless ``allow_http`` (testing)."""

    allow_http: bool = False

    def check(self, value: object, what: str) -> str:
        """Return ``value`` if it is an acceptable absolute URL, else raise UnsafeResponseError."""
        if not isinstance(value, str) or not value or len(value) > MAX_URL_LENGTH:
            raise UnsafeResponseError(f"the CA sent no usable URL for {what}")
        if _CONTROL_OR_SPACE.search(value):
            raise UnsafeResponseError(f"the CA sent a URL with control characters for {what}")
        try:
            parts = urlsplit(value)
            hostname = parts.hostname
            _ = parts.port  # a port out of range or not a number raises
        except ValueError:  # an unclosed IPv6 literal, a bad netloc
            hostname = None
            parts = urlsplit("")
        allowed = ("https", "http") if self.allow_http else ("https",)
        if parts.scheme not in allowed or not hostname:
            hint = "" if self.allow_http else " (only https is accepted)"
            raise UnsafeResponseError(
                f"the CA sent an unacceptable URL for {what}: {safe_text(value, 200)}{hint}"
            )
        return value

    def optional(self, value: object, what: str) -> str | None:
        return None if value is None else self.check(value, what)


def _str(data: Mapping[str, Any], key: str, what: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise UnsafeResponseError(f"the CA sent no string {key!r} in the {what}")
    return value


def _texts(value: object) -> tuple[str, ...]:
    """A JSON list of strings as a tuple; other items in their short escaped form."""
    if not isinstance(value, list):
        return ()
    return tuple(v if isinstance(v, str) else safe_text(v, 200) for v in value[:MAX_LIST])


def _object(data: object, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise UnsafeResponseError(f"the CA sent a {what} that is not a JSON object")
    return data


def parse_time(value: object, what: str) -> dt.datetime | None:
    """An RFC 3339 timestamp (§7.1 "expires" and friends), returned in UTC.

    A time before :data:`EARLIEST` or after :data:`LATEST` is clamped to that bound (Go's
    zero time ``0001-01-01T00:00:00Z`` becomes 1970), so adding a day or a year to any
    parsed time cannot overflow.
    """
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise UnsafeResponseError(f"the CA sent a non-string timestamp for {what}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return min(max(parsed.astimezone(dt.UTC), EARLIEST), LATEST)
    except (ValueError, OverflowError):
        raise UnsafeResponseError(
            f"the CA sent an unreadable timestamp for {what}: {safe_text(value, 60)}"
        ) from None


def format_time(value: dt.datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as CAs expect for notBefore/notAfter."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Identifier:
    """RFC 8555 §9.7.7: ``{"type": "dns", "value": "example.com"}``; RFC 8738 adds ``ip``."""

    type: str
    value: str

    @classmethod
    def dns(cls, name: str) -> Identifier:
        return cls("dns", name.strip().rstrip(".").lower())

    @classmethod
    def ip(cls, address: str) -> Identifier:
        # RFC 8738 §3: the textual form of RFC 1123 §2.1 / RFC 5952 §4.
        return cls("ip", str(ipaddress.ip_address(address.strip())))

    @classmethod
    def parse(cls, text: str) -> Identifier:
        """An IP address becomes an ``ip`` identifier, anything else ``dns``."""
        try:
            return cls.ip(text.strip("[]"))
        except ValueError:
            return cls.dns(text)

    @classmethod
    def from_json(cls, data: object) -> Identifier:
        obj = _object(data, "identifier")
        return cls(_str(obj, "type", "identifier"), _str(obj, "value", "identifier"))

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "value": self.value}

    @property
    def is_wildcard(self) -> bool:
        return self.type == "dns" and self.value.startswith("*.")

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class DirectoryMeta:
    """RFC 8555 §7.1.1 ``meta``, plus ``profiles`` (draft-ietf-acme-profiles §3)."""

    terms_of_service: str | None = None
    website: str | None = None
    caa_identities: tuple[str, ...] = ()
    external_account_required: bool = False
    profiles: Mapping[str, str] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Directory:
    """RFC 8555 §7.1.1: the URLs of every operation; optional ones may be None."""

    url: str
    new_nonce: str
    new_account: str
    new_order: str
    revoke_cert: str
    key_change: str
    new_authz: str | None = None
    renewal_info: str | None = None
    meta: DirectoryMeta = field(default_factory=DirectoryMeta)
    raw: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: object, url: str, urls: UrlPolicy) -> Directory:
        obj = _object(data, "directory")
        raw_meta = obj.get("meta")
        meta_obj: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        profiles_raw = meta_obj.get("profiles")
        profiles = (
            {str(k)[:200]: safe_text(v, 500) for k, v in list(profiles_raw.items())[:MAX_LIST]}
            if isinstance(profiles_raw, dict)
            else {}
        )
        caa = meta_obj.get("caaIdentities")  # §7.1.1: array of strings
        meta = DirectoryMeta(
            terms_of_service=_optional_str(meta_obj.get("termsOfService")),
            website=_optional_str(meta_obj.get("website")),
            caa_identities=_texts(caa),
            external_account_required=meta_obj.get("externalAccountRequired") is True,
            profiles=profiles,
            raw=meta_obj,
        )
        return cls(
            url=url,
            new_nonce=urls.check(obj.get("newNonce"), "directory newNonce"),
            new_account=urls.check(obj.get("newAccount"), "directory newAccount"),
            new_order=urls.check(obj.get("newOrder"), "directory newOrder"),
            revoke_cert=urls.check(obj.get("revokeCert"), "directory revokeCert"),
            key_change=urls.check(obj.get("keyChange"), "directory keyChange"),
            new_authz=urls.optional(obj.get("newAuthz"), "directory newAuthz"),
            # RFC 9773 §4: the "renewalInfo" directory entry.
            renewal_info=urls.optional(obj.get("renewalInfo"), "directory renewalInfo"),
            meta=meta,
            raw=obj,
        )


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Account:
    """RFC 8555 §7.1.2: an account and the URL (its ``kid``) the CA gave it."""

    url: str
    status: Status
    contact: tuple[str, ...] = ()
    orders: str | None = None
    terms_of_service_agreed: bool | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: object, url: str, urls: UrlPolicy) -> Account:
        obj = _object(data, "account")
        contact = obj.get("contact")
        agreed = obj.get("termsOfServiceAgreed")
        return cls(
            url=url,
            status=Status.parse(obj.get("status", "valid"), "account"),
            contact=_texts(contact),
            orders=urls.optional(obj.get("orders"), "account orders"),
            terms_of_service_agreed=agreed if isinstance(agreed, bool) else None,
            raw=obj,
        )


@dataclass(frozen=True)
class Challenge:
    """RFC 8555 §7.1.5 / §8: a challenge; unknown types are kept with their raw fields."""

    url: str
    type: str
    status: Status
    token: str | None = None
    validated: dt.datetime | None = None
    error: Problem | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: object, urls: UrlPolicy) -> Challenge:
        obj = _object(data, "challenge")
        token = obj.get("token")
        error = obj.get("error")
        return cls(
            url=urls.check(obj.get("url"), "challenge url"),
            type=_str(obj, "type", "challenge"),
            status=Status.parse(obj.get("status"), "challenge"),
            token=token if isinstance(token, str) else None,
            validated=parse_time(obj.get("validated"), "challenge validated"),
            error=Problem.from_json(error) if error is not None else None,
            raw=obj,
        )


@dataclass(frozen=True)
class Authorization:
    """RFC 8555 §7.1.4: one identifier's authorization and its challenges."""

    url: str
    identifier: Identifier
    status: Status
    challenges: tuple[Challenge, ...] = ()
    expires: dt.datetime | None = None
    wildcard: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: object, url: str, urls: UrlPolicy) -> Authorization:
        obj = _object(data, "authorization")
        challenges = obj.get("challenges")
        return cls(
            url=url,
            identifier=Identifier.from_json(obj.get("identifier")),
            status=Status.parse(obj.get("status"), "authorization"),
            challenges=tuple(Challenge.from_json(c, urls) for c in challenges)
            if isinstance(challenges, list)
            else (),
            expires=parse_time(obj.get("expires"), "authorization expires"),
            wildcard=obj.get("wildcard") is True,
            raw=obj,
        )

    def challenge(self, challenge_type: str) -> Challenge | None:
        """The first challenge of ``challenge_type``, or None."""
        for challenge in self.challenges:
            if challenge.type == challenge_type:
                return challenge
        return None

    @property
    def full_identifier(self) -> Identifier:
        """The identifier as ordered: RFC 8555 §7.1.4 strips ``*.`` and sets ``wildcard``."""
        if self.wildcard and not self.identifier.value.startswith("*."):
            return Identifier(self.identifier.type, "*." + self.identifier.value)
        return self.identifier


@dataclass(frozen=True)
class Order:
    """RFC 8555 §7.1.3: an order; ``profile`` and ``replaces`` as the CA echoed them."""

    url: str
    status: Status
    identifiers: tuple[Identifier, ...]
    authorizations: tuple[str, ...]
    finalize: str
    certificate: str | None = None
    expires: dt.datetime | None = None
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    error: Problem | None = None
    profile: str | None = None
    replaces: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: object, url: str, urls: UrlPolicy) -> Order:
        obj = _object(data, "order")
        identifiers = obj.get("identifiers")
        authorizations = obj.get("authorizations")
        error = obj.get("error")
        return cls(
            url=url,
            status=Status.parse(obj.get("status"), "order"),
            identifiers=tuple(Identifier.from_json(i) for i in identifiers)
            if isinstance(identifiers, list)
            else (),
            authorizations=tuple(urls.check(a, "order authorization") for a in authorizations)
            if isinstance(authorizations, list)
            else (),
            finalize=urls.check(obj.get("finalize"), "order finalize"),
            certificate=urls.optional(obj.get("certificate"), "order certificate"),
            expires=parse_time(obj.get("expires"), "order expires"),
            not_before=parse_time(obj.get("notBefore"), "order notBefore"),
            not_after=parse_time(obj.get("notAfter"), "order notAfter"),
            error=Problem.from_json(error) if error is not None else None,
            profile=_optional_str(obj.get("profile")),
            replaces=_optional_str(obj.get("replaces")),
            raw=obj,
        )


@dataclass(frozen=True)
class RenewalInfo:
    """RFC 9773 §4.2: the CA's suggested renewal window for one certificate.

    ``retry_after`` is the server's Retry-After in seconds (§4.3: when to ask again).
    """

    start: dt.datetime
    end: dt.datetime
    explanation_url: str | None = None
    retry_after: float | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: object, urls: UrlPolicy, retry_after: float | None) -> RenewalInfo:
        obj = _object(data, "renewalInfo")
        window = _object(obj.get("suggestedWindow"), "renewalInfo suggestedWindow")
        start = parse_time(window.get("start"), "suggestedWindow start")
        end = parse_time(window.get("end"), "suggestedWindow end")
        if start is None or end is None or end < start:
            # RFC 9773 §4.2: a window whose end precedes its start is invalid.
            raise UnsafeResponseError("the CA sent an invalid renewalInfo suggestedWindow")
        if start <= EARLIEST or end >= LATEST:
            raise UnsafeResponseError(
                "the CA sent a renewalInfo suggestedWindow outside the years 1970 to 9000: "
                f"{start.isoformat()} to {end.isoformat()}"
            )
        explanation = obj.get("explanationURL")
        return cls(
            start=start,
            end=end,
            explanation_url=urls.optional(explanation, "renewalInfo explanationURL"),
            retry_after=retry_after,
            raw=obj,
        )


def identifiers_from(names: Sequence[str | Identifier]) -> tuple[Identifier, ...]:
    """Identifiers from names or identifiers, order kept, duplicates dropped."""
    refuse_text(names, "identifiers")
    seen: dict[Identifier, None] = {}
    for name in names:
        ident = name if isinstance(name, Identifier) else Identifier.parse(name)
        seen.setdefault(ident, None)
    return tuple(seen)
