"""The one exception tree of certherd.

Every error certherd raises derives from :class:`CertherdError`; ``str()`` of any of
them is one line that names what is wrong (and, where we know it, how to fix it).

::

    CertherdError
    ├── ConfigError                    bad input from the user: options, files, keys
    │   ├── InvalidNameError           a name the CA would refuse (checked before any order)
    │   ├── SealedError                a private value sealed with a storage key not given
    │   └── InstallError               a web server's config test refused (its own message)
    ├── UnavailableError               a needed program (pebble, ...) is not installed
    ├── CryptoError                    a key, CSR or certificate cannot be used
    ├── StorageError                   reading or writing certherd's state failed
    │   ├── NotFoundError              no such key / lineage / account
    │   ├── LockTimeoutError           another certherd holds the lock for too long
    │   ├── LeaseLostError             our lease ran out and another holder was granted it
    │   └── FencedError                a write carried a lease older than the latest grant
    ├── SolverError                    a challenge could not be presented or cleaned up
    │   ├── DnsProviderError           a DNS provider failed to add/remove a TXT value
    │   ├── PropagationTimeoutError    the TXT value did not reach every name server in time
    │   └── HookError                  a user's hook program failed (names it, shows stderr)
    └── AcmeError                      anything in talking to an ACME server
        ├── TransportError             the connection failed (after retries)
        ├── UnsafeResponseError        the CA sent something we refuse to trust
        │   └── CertificateMismatchError   issued certificate does not match the order
        ├── RetryLimitError            retries or the time budget ran out
        │   ├── PollTimeoutError       an order/authorization never left a pending state
        │   │   └── PollDeferredError  the CA asked to be polled after this run may wait
        │   └── DeadlineExceededError  a request or a command ran past its deadline
        ├── OrderFailedError           an order or authorization ended "invalid"
        │   └── AuthorizationFailedError   ... with the CA's problem: also a ProblemError,
        │                                  of the problem's own type (IncorrectResponseError...)
        ├── FeatureUnsupportedError    the CA does not offer what was asked (no ARI, ...)
        ├── CaFailoverError            every CA of a certificate's list was tried and failed
        ├── CaHeldBackError            a fleet node was told rateLimited by this CA: all wait
        └── ProblemError               the CA answered with an RFC 7807 problem document
            ├── AccountDoesNotExistError, AlreadyRevokedError, BadCSRError,
            ├── BadNonceError, BadPublicKeyError, BadRevocationReasonError,
            ├── BadSignatureAlgorithmError, CAAError, CompoundError, ConnectionProblemError,
            ├── DNSProblemError, ExternalAccountRequiredError, IncorrectResponseError,
            ├── InvalidContactError, InvalidProfileError, MalformedError, OrderNotReadyError,
            ├── RateLimitedError (retry_after), RejectedIdentifierError, ServerInternalError,
            ├── TLSProblemError, UnauthorizedError, UnsupportedContactError,
            └── UnsupportedIdentifierError, UserActionRequiredError

A problem type we do not know stays a plain :class:`ProblemError` with its type kept.

A challenge that fails arrives as the problem it failed with, typed: catch
``IncorrectResponseError``, ``DNSProblemError``, ``CAAError``... (with ``identifier`` and
``authorization_url`` set), or ``AuthorizationFailedError`` / ``OrderFailedError`` for
any of them::

    try:
        issued = await obtain_certificate(client, names, solvers)
    except CAAError as error:
        print("fix the CAA record of", error.identifier, "see", error.authorization_url)
"""

from __future__ import annotations

import datetime as _dt
import reprlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import replace as _dataclass_replace
from typing import Any, ClassVar, Self

__all__ = [
    "AccountDoesNotExistError",
    "AcmeError",
    "AlreadyRevokedError",
    "AuthorizationFailedError",
    "BadCSRError",
    "BadNonceError",
    "BadPublicKeyError",
    "BadRevocationReasonError",
    "BadSignatureAlgorithmError",
    "CAAError",
    "CaFailoverError",
    "CaHeldBackError",
    "CertherdError",
    "CertificateMismatchError",
    "CompoundError",
    "ConfigError",
    "ConnectionProblemError",
    "CryptoError",
    "DNSProblemError",
    "DeadlineExceededError",
    "DnsProviderError",
    "ExternalAccountRequiredError",
    "FeatureUnsupportedError",
    "FencedError",
    "HookError",
    "IncorrectResponseError",
    "InstallError",
    "InvalidContactError",
    "InvalidNameError",
    "InvalidProfileError",
    "LeaseLostError",
    "LockTimeoutError",
    "MalformedError",
    "NotFoundError",
    "OrderFailedError",
    "OrderNotReadyError",
    "PollDeferredError",
    "PollTimeoutError",
    "Problem",
    "ProblemError",
    "PropagationTimeoutError",
    "RateLimitedError",
    "RejectedIdentifierError",
    "RetryLimitError",
    "SealedError",
    "ServerInternalError",
    "SettingsText",
    "SolverError",
    "StorageError",
    "TLSProblemError",
    "TransportError",
    "UnauthorizedError",
    "UnavailableError",
    "UnsafeResponseError",
    "UnsupportedContactError",
    "UnsupportedIdentifierError",
    "UserActionRequiredError",
    "refuse_text",
    "safe_text",
]

ACME_URN = "urn:ietf:params:acme:error:"
MAX_RETRY_AFTER = 10 * 365 * 86400.0
"""The longest Retry-After certherd represents (ten years); a longer one is clamped to it."""
MAX_SUBPROBLEMS = 100  # RFC 8555 §6.7.1 lists one per identifier: far below any real order


class _ShortRepr(reprlib.Repr):
    """reprlib, plus huge integers (``str()`` refuses over 4300 digits)."""

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 1000:
            return f"<an integer of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_SHORT = _ShortRepr()
_SHORT.maxlevel = 3
_SHORT.maxstring = 200
_SHORT.maxother = 200


def safe_text(value: object, limit: int = 500) -> str:
    """Make CA-supplied text safe for one terminal or log line.

    Control characters (ANSI escapes, newlines, bidi overrides) are replaced by their
    ``\\x`` escapes and the text is cut to ``limit`` characters.
    """
    # A decoded JSON value can be nested hundreds deep: show it shortened, never recursing.
    # Bounded depth and length for containers; a huge int has no str().
    text = _SHORT.repr(value) if isinstance(value, list | dict | tuple | int) else str(value)
    out: list[str] = []
    for char in text[: limit + 1]:
        code = ord(char)
        if (
            code < 0x20
            or code == 0x7F
            or 0x80 <= code < 0xA0
            or 0x202A <= code <= 0x202E
            or (0x2066 <= code <= 0x2069)
        ):
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    result = "".join(out)
    if len(text) > limit:
        result = result[:limit] + "..."
    return result


def _name_settings(template: str, settings: Sequence[str], name: Callable[[str], str]) -> str:
    for setting in settings:
        template = template.replace("{" + setting + "}", name(setting))
    return template


class SettingsText(str):
    """A message that names settings, kept as text (an outcome's ``error``): the text
    shows each setting by its own name; :meth:`naming` by another front end's words."""

    settings: tuple[str, ...] = ()
    template: str = ""

    def __new__(cls, template: str, settings: Sequence[str] = ()) -> SettingsText:
        text = super().__new__(cls, _name_settings(template, settings, str))
        text.template = template
        text.settings = tuple(settings)
        return text

    def naming(self, name: Callable[[str], str]) -> str:
        """The text with each of :attr:`settings` written as ``name(setting)``."""
        return _name_settings(self.template, self.settings, name)


class CertherdError(Exception):
    """Base of every error certherd raises.

    ``settings`` names the settings the message is about, as a Python program sets them
    (keyword arguments, :class:`~certherd.manager.LineageSettings` fields, solver
    options as ``kind.option``: ``eab_kid``, ``ca_bundle``, ``identifiers``,
    ``webroot.path``...), in the order the message names them; empty when it names
    none. Give them with ``settings=`` and write each in the message as ``{setting}``:
    ``str()`` shows the setting's own name there, and a front end with its own words
    for them (the CLI: its flags) calls :meth:`naming`::

        raise ConfigError("EAB key id is empty: give {eab_kid}", settings=("eab_kid",))
    """

    settings: tuple[str, ...] = ()
    """The settings the message names (each as ``{setting}`` in :attr:`template`)."""
    template: str = ""
    """The message with each setting as ``{setting}``; "" when it names none."""

    def __init__(self, *args: object, settings: Sequence[str] = ()) -> None:
        if settings:
            refuse_text(settings, "settings")
            template = str(args[0]) if args else ""
            missing = [s for s in settings if "{" + s + "}" not in template]
            if missing:
                raise ValueError(f"the message names no {{{missing[0]}}}: {template!r}")
            self.settings = tuple(settings)
            self.template = template
            args = (_name_settings(template, settings, str), *args[1:])
        super().__init__(*args)

    @classmethod
    def saying(cls, error: CertherdError) -> Self:
        """An error of this class with ``error``'s message and settings (a missing
        account, for instance, that is a usage error for the caller)."""
        if not error.settings:
            return cls(str(error))
        return cls(error.template, settings=error.settings)

    def naming(self, name: Callable[[str], str]) -> str:
        """The message with each of :attr:`settings` written as ``name(setting)``."""
        if not self.settings:
            return str(self)
        return _name_settings(self.template, self.settings, name)

    def text(self, limit: int = 500) -> str:
        """The message made safe for one line (:func:`safe_text`), as a
        :class:`SettingsText` when it names settings, so they can be named again later."""
        if not self.settings:
            return safe_text(self, limit)
        return SettingsText(safe_text(self.template, limit), self.settings)


class ConfigError(CertherdError):
    """Bad input from the user: an option, a file, a key. The message says how to fix it."""


class InvalidNameError(ConfigError):
    """A name for a certificate that the CA would refuse: caught before any order."""


class UnavailableError(CertherdError):
    """A program certherd needs is not installed; the message carries the install hint."""


class CryptoError(CertherdError):
    """A key, CSR or certificate cannot be loaded or used."""


class StorageError(CertherdError):
    """Reading or writing certherd's state failed (disk full, read-only, database down)."""


class NotFoundError(StorageError):
    """No such key, lineage or account in storage."""


class LockTimeoutError(StorageError):
    """Another certherd process held the lock longer than we were willing to wait."""


class LeaseLostError(StorageError):
    """Renewing a lease failed: it ran out and another holder was granted the name
    (this holder was paused or cut off past its time to live). Stop working on it."""


class FencedError(StorageError):
    """A write or delete carried a lease whose fencing token is older than the latest
    grant of that name: a holder that lost its lease may not overwrite the new one's work."""


class SealedError(ConfigError):
    """A private value in the database is sealed with a storage key this process was not
    given (``storage_key_file``): every lineage needs it, so it is never one lineage's
    trouble to log and pass over."""


class InstallError(ConfigError):
    """A web server refused a change to its config (the message is the server's own);
    every file it touched has its previous bytes again."""


class SolverError(CertherdError):
    """A challenge response could not be presented or cleaned up."""


class DnsProviderError(SolverError):
    """A DNS provider could not add or remove a TXT value."""


class PropagationTimeoutError(SolverError):
    """A TXT value did not appear on every authoritative name server in time."""


class HookError(SolverError):
    """A user's hook program failed; the message names it and shows its stderr."""


class AcmeError(CertherdError):
    """Base of every error in talking to an ACME server."""


class TransportError(AcmeError):
    """The request could not be completed on the network, after the allowed retries."""


class UnsafeResponseError(AcmeError):
    """The CA sent something certherd refuses to trust (bad URL, oversize body, redirect...)."""


class CertificateMismatchError(UnsafeResponseError):
    """The issued certificate does not match the order; nothing was saved."""


class RetryLimitError(AcmeError):
    """The retries or the time budget for a request ran out."""


class PollTimeoutError(RetryLimitError):
    """An order or authorization stayed pending/processing past the allowed time.

    ``url`` is the polled resource (the order URL, to resume it later); ``retry_after``
    is the CA's last Retry-After in seconds, already clamped to :data:`MAX_RETRY_AFTER`,
    or None when it sent none.
    """

    def __init__(self, message: str, *, url: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.retry_after = retry_after


class DeadlineExceededError(RetryLimitError):
    """A request, or a command given a deadline, ran past it; nothing more was sent.

    ``seconds`` is the deadline that ran out.
    """

    def __init__(self, message: str, *, seconds: float | None = None) -> None:
        super().__init__(message)
        self.seconds = seconds


class PollDeferredError(PollTimeoutError):
    """The CA asked (Retry-After) not to be polled again before ``retry_at``, later than
    this run may wait: the order or authorization at ``url`` stays open at the CA and
    is resumed from ``retry_at`` on, rather than replaced by a new one."""

    def __init__(
        self,
        message: str,
        *,
        url: str,
        retry_at: _dt.datetime,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, url=url, retry_after=retry_after)
        self.retry_at = retry_at


class OrderFailedError(AcmeError):
    """An order or an authorization ended ``invalid``; carries the CA's problem if any."""

    def __init__(self, message: str, problem: Problem | None = None) -> None:
        super().__init__(message)
        self._order_problem = problem

    @property
    def problem(self) -> Problem | None:
        """The CA's problem document for the failure, if it sent one."""
        return self._order_problem


class FeatureUnsupportedError(AcmeError):
    """The CA does not offer a feature that was asked for (no ARI, no newAuthz, ...)."""


class CaFailoverError(AcmeError):
    """A certificate's CAs were tried in order and none gave it: ``failures`` holds
    (directory URL, error) for each CA tried; the error of the last one is the cause."""

    def __init__(self, failures: Sequence[tuple[str, CertherdError]]) -> None:
        said = "; ".join(
            f"{safe_text(url, 200)}: {safe_text(error, 400)}" for url, error in failures
        )
        super().__init__(f"every CA tried failed: {said}")
        self.failures = tuple(failures)


class CaHeldBackError(AcmeError):
    """The CA answered ``rateLimited`` to a node of this fleet (RFC 8555 §6.7), and every
    node leaves it alone until its Retry-After: not asked now (the next CA of the
    certificate's list is, if it has one)."""


@dataclass(frozen=True)
class Problem:
    """An RFC 7807 problem document as the CA sent it (RFC 8555 §6.7).

    ``type`` is kept as sent, known or not; ``subproblems`` (§6.7.1) carry their own
    ``identifier``.
    """

    type: str
    detail: str = ""
    status: int | None = None
    title: str = ""
    instance: str = ""
    identifier: Mapping[str, str] | None = None
    subproblems: Sequence[Problem] = ()
    algorithms: Sequence[str] = ()

    @property
    def short_type(self) -> str:
        """The type without the ACME URN prefix (``badNonce``), or the type as sent."""
        if self.type.startswith(ACME_URN):
            return self.type[len(ACME_URN) :]
        return self.type

    @classmethod
    def from_json(cls, data: Any, *, depth: int = 0) -> Problem:
        """Build from a decoded JSON body; tolerant of missing or mistyped fields.

        Text fields that are not strings become their short, escaped form; a status
        that is not an HTTP status is dropped; subproblems (§6.7.1) are read one level
        deep and at most :data:`MAX_SUBPROBLEMS` of them, so no CA document can make
        this recurse or grow without bound.
        """
        if not isinstance(data, dict):
            return cls(type="about:blank", detail=safe_text(data, 200))
        identifier = data.get("identifier")
        ident: dict[str, str] | None = None
        if isinstance(identifier, dict):
            ident = {
                "type": _text(identifier.get("type")),
                "value": _text(identifier.get("value")),
            }
        raw_subs = data.get("subproblems")
        subs: tuple[Problem, ...] = ()
        if isinstance(raw_subs, list) and depth < 1:
            subs = tuple(cls.from_json(s, depth=depth + 1) for s in raw_subs[:MAX_SUBPROBLEMS])
        status = data.get("status")
        algorithms = data.get("algorithms")
        return cls(
            type=_text(data.get("type")) or "about:blank",
            detail=_text(data.get("detail")),
            status=status if _is_http_status(status) else None,
            title=_text(data.get("title")),
            instance=_text(data.get("instance")),
            identifier=ident,
            subproblems=subs,
            algorithms=tuple(_text(a) for a in algorithms[:50])
            if isinstance(algorithms, list)
            else (),
        )

    def describe(self) -> str:
        """One safe line: type, identifier, detail and the subproblems."""
        parts = [self.short_type]
        if self.identifier:
            parts.append(f"for {self.identifier.get('type')}:{self.identifier.get('value')}")
        text = " ".join(parts)
        if self.detail:
            text += f": {self.detail}"
        for sub in self.subproblems:
            text += f"; [{sub.describe()}]"
        return safe_text(text, 1000)


def refuse_text(values: object, what: str) -> None:
    """TypeError when ``values``, which should be a list of ``what``, is one bare string.

    A string is itself a sequence of strings: ``"example.com"`` would otherwise be read
    as eleven one-letter names (or contacts).
    """
    if isinstance(values, str):
        raise TypeError(
            f"{what} must be a list of strings, not the single string "
            f"{safe_text(values, 100)!r}: write [{safe_text(values, 100)!r}]"
        )


def _text(value: object) -> str:
    """A CA-sent field as text: a string as is, anything else in its short form; None is ""."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value[:10_000]
    return safe_text(value, 200)


def _is_http_status(value: object) -> bool:
    return type(value) is int and 100 <= value <= 599


class ProblemError(AcmeError):
    """The CA answered with a problem document; the document *is* this error.

    The registry maps each ``urn:ietf:params:acme:error:*`` to a subclass; use
    :meth:`from_problem` to get the right one.
    """

    urn: ClassVar[str] = ""
    _registry: ClassVar[dict[str, type[ProblemError]]] = {}
    authorization_url: str = ""
    """The authorization this problem ended (RFC 8555 §7.1.4), when it came from one:
    set on every challenge failure (see :class:`AuthorizationFailedError`)."""

    def __init__(self, problem: Problem, *, url: str = "", retry_after: float | None = None):
        where = f" (from {safe_text(url, 200)})" if url else ""
        super().__init__(f"the CA refused the request{where}: {problem.describe()}")
        self._problem = problem
        self.url = url
        self.retry_after = retry_after

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.urn:
            ProblemError._registry[ACME_URN + cls.urn] = cls

    @property
    def problem(self) -> Problem:
        """The CA's problem document: this error."""
        return self._problem

    @property
    def type(self) -> str:
        return self.problem.type

    @property
    def detail(self) -> str:
        return self.problem.detail

    @property
    def status(self) -> int | None:
        return self.problem.status

    @property
    def subproblems(self) -> Sequence[Problem]:
        return self.problem.subproblems

    @property
    def identifier(self) -> Mapping[str, str] | None:
        return self.problem.identifier

    @classmethod
    def from_problem(
        cls, problem: Problem, *, url: str = "", retry_after: float | None = None
    ) -> ProblemError:
        """The registered subclass for ``problem.type``, or a plain ProblemError."""
        subclass = cls._registry.get(problem.type, ProblemError)
        return subclass(problem, url=url, retry_after=retry_after)


class AuthorizationFailedError(ProblemError, OrderFailedError):
    """An authorization ended ``invalid`` with its challenge's problem (RFC 8555 §7.1.6,
    §8.2: "the server MUST ... set the challenge's 'error' field").

    Raised as the problem's own type: :meth:`for_authorization` returns an instance that
    is at once this class, :class:`OrderFailedError` and the registered ProblemError
    subclass (``IncorrectResponseError``, ``DNSProblemError``, ``CAAError``...), so
    ``except IncorrectResponseError`` and ``except OrderFailedError`` both catch it.
    ``identifier`` is the authorization's identifier (``{"type": "dns", "value": ...}``)
    unless the problem names its own; ``authorization_url`` and ``url`` its URL.
    """

    def __init__(
        self,
        problem: Problem,
        *,
        url: str = "",
        retry_after: float | None = None,
        status: str = "invalid",
    ) -> None:
        super().__init__(problem, url=url, retry_after=retry_after)
        self.authorization_url = url
        who = problem.identifier or {}
        where = f" ({safe_text(url, 200)})" if url else ""
        self.args = (
            f"authorization for {safe_text(who.get('value', '?'), 300)} is "
            f"{safe_text(status, 40)}{where}: "
            f"{_dataclass_replace(problem, identifier=None).describe()}",
        )

    @classmethod
    def for_authorization(
        cls,
        problem: Problem,
        *,
        identifier: Mapping[str, str],
        authorization_url: str,
        status: str = "invalid",
    ) -> AuthorizationFailedError:
        """The error for an authorization that ended ``status`` with ``problem``, of the
        problem's registered type when it has one."""
        if problem.identifier is None:
            problem = _dataclass_replace(problem, identifier=dict(identifier))
        typed = ProblemError._registry.get(problem.type)
        failed = _failed_class(typed) if typed is not None else cls
        return failed(problem, url=authorization_url, status=status)


_FAILED_CLASSES: dict[str, type[AuthorizationFailedError]] = {}


def _failed_class(typed: type[ProblemError]) -> type[AuthorizationFailedError]:
    """``typed`` joined with AuthorizationFailedError, one class per problem type, named
    like ``typed`` (an ``IncorrectResponseError`` that is also an OrderFailedError)."""
    joined = _FAILED_CLASSES.get(typed.urn)
    if joined is None:
        namespace: dict[str, Any] = {
            "__module__": __name__,
            "__qualname__": typed.__qualname__,
            "__doc__": typed.__doc__,
            "urn": "",  # not registered again: from_problem keeps returning ``typed``
        }
        joined = type(typed.__name__, (typed, AuthorizationFailedError), namespace)
        _FAILED_CLASSES[typed.urn] = joined
    return joined


class AccountDoesNotExistError(ProblemError):
    """RFC 8555 §6.7 accountDoesNotExist: no account for this key."""

    urn = "accountDoesNotExist"


class AlreadyRevokedError(ProblemError):
    """RFC 8555 §6.7 alreadyRevoked."""

    urn = "alreadyRevoked"


class BadCSRError(ProblemError):
    """RFC 8555 §6.7 badCSR: the CSR is unacceptable."""

    urn = "badCSR"


class BadNonceError(ProblemError):
    """RFC 8555 §6.7 badNonce: retried with the fresh nonce from the error response."""

    urn = "badNonce"


class BadPublicKeyError(ProblemError):
    """RFC 8555 §6.7 badPublicKey: the JWS key type is not supported."""

    urn = "badPublicKey"


class BadRevocationReasonError(ProblemError):
    """RFC 8555 §6.7 badRevocationReason."""

    urn = "badRevocationReason"


class BadSignatureAlgorithmError(ProblemError):
    """RFC 8555 §6.7 badSignatureAlgorithm; ``problem.algorithms`` lists the accepted ones."""

    urn = "badSignatureAlgorithm"


class CAAError(ProblemError):
    """RFC 8555 §6.7 caa: CAA records forbid the CA from issuing."""

    urn = "caa"


class CompoundError(ProblemError):
    """RFC 8555 §6.7 compound: see ``subproblems``."""

    urn = "compound"


class ConnectionProblemError(ProblemError):
    """RFC 8555 §6.7 connection: the CA could not connect to the validation target."""

    urn = "connection"


class DNSProblemError(ProblemError):
    """RFC 8555 §6.7 dns: a DNS problem during validation."""

    urn = "dns"


class ExternalAccountRequiredError(ProblemError):
    """RFC 8555 §6.7 externalAccountRequired: give the EAB key id and HMAC key of your
    CA account (``eab_kid``, ``eab_hmac_key``)."""

    urn = "externalAccountRequired"


class IncorrectResponseError(ProblemError):
    """RFC 8555 §6.7 incorrectResponse: the challenge response did not match."""

    urn = "incorrectResponse"


class InvalidContactError(ProblemError):
    """RFC 8555 §6.7 invalidContact."""

    urn = "invalidContact"


class InvalidProfileError(ProblemError):
    """draft-ietf-acme-profiles invalidProfile: the CA does not know the profile."""

    urn = "invalidProfile"


class MalformedError(ProblemError):
    """RFC 8555 §6.7 malformed."""

    urn = "malformed"


class OrderNotReadyError(ProblemError):
    """RFC 8555 §6.7 orderNotReady: finalize sent before all authorizations are valid."""

    urn = "orderNotReady"


class RateLimitedError(ProblemError):
    """RFC 8555 §6.7 rateLimited; ``retry_after`` holds the CA's Retry-After in seconds."""

    urn = "rateLimited"

    @property
    def retry_at(self) -> _dt.timedelta | None:
        if self.retry_after is None:
            return None
        return _dt.timedelta(seconds=min(max(self.retry_after, 0.0), MAX_RETRY_AFTER))


class RejectedIdentifierError(ProblemError):
    """RFC 8555 §6.7 rejectedIdentifier: the CA will not issue for this name."""

    urn = "rejectedIdentifier"


class ServerInternalError(ProblemError):
    """RFC 8555 §6.7 serverInternal."""

    urn = "serverInternal"


class TLSProblemError(ProblemError):
    """RFC 8555 §6.7 tls: a TLS problem during validation."""

    urn = "tls"


class UnauthorizedError(ProblemError):
    """RFC 8555 §6.7 unauthorized: the client lacks authorization."""

    urn = "unauthorized"


class UnsupportedContactError(ProblemError):
    """RFC 8555 §6.7 unsupportedContact."""

    urn = "unsupportedContact"


class UnsupportedIdentifierError(ProblemError):
    """RFC 8555 §6.7 unsupportedIdentifier."""

    urn = "unsupportedIdentifier"


class UserActionRequiredError(ProblemError):
    """RFC 8555 §6.7 userActionRequired: see the ``Link: rel="terms-of-service"`` URL."""

    urn = "userActionRequired"
