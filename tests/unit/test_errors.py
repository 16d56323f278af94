"""The public exception tree of certherd.errors (STYLE habits 3 and 4)."""

from __future__ import annotations

import builtins
import inspect

import pytest

import certherd.errors as errors
from certherd.errors import CertherdError, Problem, ProblemError, RateLimitedError, safe_text

ACME_URN = "urn:ietf:params:acme:error:"

EXCEPTIONS = [
    value
    for name in errors.__all__
    if inspect.isclass(value := getattr(errors, name)) and issubclass(value, BaseException)
]


def _all_subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_all_subclasses(sub)}
    return found


def test_all_names_exist() -> None:
    missing = [name for name in errors.__all__ if not hasattr(errors, name)]
    assert missing == []


def test_public_exception_classes_are_all_exported() -> None:
    defined = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == errors.__name__
    }
    assert defined <= set(errors.__all__)


@pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda c: c.__name__)
def test_every_exception_derives_from_certherd_error(cls: type[BaseException]) -> None:
    assert issubclass(cls, CertherdError)


@pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda c: c.__name__)
def test_every_exception_is_drawn_in_the_docstring(cls: type[BaseException]) -> None:
    assert errors.__doc__ is not None
    assert cls.__name__ in errors.__doc__


@pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda c: c.__name__)
def test_no_exception_is_named_like_a_builtin(cls: type[BaseException]) -> None:
    assert not hasattr(builtins, cls.__name__)


def test_every_problem_subclass_with_a_urn_is_registered() -> None:
    with_urn = [cls for cls in _all_subclasses(ProblemError) if cls.urn]
    assert len(with_urn) >= 24, "RFC 8555 §6.7 alone defines 24 error types"
    for cls in with_urn:
        assert ProblemError._registry[ACME_URN + cls.urn] is cls
        problem = Problem(type=ACME_URN + cls.urn, detail="d")
        assert type(ProblemError.from_problem(problem)) is cls


def test_registry_holds_only_problem_subclasses_and_urns_are_unique() -> None:
    registry = ProblemError._registry
    assert all(issubclass(cls, ProblemError) for cls in registry.values())
    assert len(set(registry.values())) == len(registry)


@pytest.mark.parametrize(
    "short",
    [
        "accountDoesNotExist",
        "alreadyRevoked",
        "badCSR",
        "badNonce",
        "badPublicKey",
        "badRevocationReason",
        "badSignatureAlgorithm",
        "caa",
        "compound",
        "connection",
        "dns",
        "externalAccountRequired",
        "incorrectResponse",
        "invalidContact",
        "malformed",
        "orderNotReady",
        "rateLimited",
        "rejectedIdentifier",
        "serverInternal",
        "tls",
        "unauthorized",
        "unsupportedContact",
        "unsupportedIdentifier",
        "userActionRequired",
    ],
)
def test_every_rfc8555_error_type_has_a_subclass(short: str) -> None:
    # RFC 8555 §6.7, the table of error types.
    assert ACME_URN + short in ProblemError._registry


def test_unknown_problem_type_stays_a_plain_problem_error() -> None:
    error = ProblemError.from_problem(Problem(type=ACME_URN + "fromTheFuture", detail="new"))
    assert type(error) is ProblemError
    assert error.type == ACME_URN + "fromTheFuture"
    assert "fromTheFuture" in str(error)
    assert "new" in str(error)


def test_rate_limited_carries_retry_after() -> None:
    problem = Problem(type=ACME_URN + "rateLimited", detail="slow down")
    error = ProblemError.from_problem(problem, url="https://ca.test/new-order", retry_after=60.0)
    assert isinstance(error, RateLimitedError)
    assert error.retry_after == 60.0
    assert error.url == "https://ca.test/new-order"


def test_problem_from_json_is_tolerant() -> None:
    assert Problem.from_json("just text").type == "about:blank"
    problem = Problem.from_json(
        {"type": None, "status": "500", "subproblems": "x", "identifier": "y"}
    )
    assert problem.type == "about:blank"
    assert problem.status is None
    assert problem.subproblems == ()
    assert problem.identifier is None


def test_safe_text_escapes_controls_and_cuts() -> None:
    assert safe_text("a\x1b[31mb\nc\u202ed") == "a\\x1b[31mb\\x0ac\\u202ed"
    assert safe_text("x" * 20, limit=5) == "xxxxx..."
    assert safe_text("plain text, é ü") == "plain text, é ü"


def test_a_failed_authorization_is_its_problem_type_and_an_order_failure() -> None:
    from certherd.errors import AuthorizationFailedError, CAAError, OrderFailedError, Problem

    problem = Problem(type=ACME_URN + "caa", detail="CAA forbids", status=403)
    error = AuthorizationFailedError.for_authorization(
        problem, identifier={"type": "dns", "value": "a.test"}, authorization_url="https://ca/a/1"
    )
    assert isinstance(error, CAAError)
    assert isinstance(error, OrderFailedError)
    assert error.identifier == {"type": "dns", "value": "a.test"}
    assert error.authorization_url == error.url == "https://ca/a/1"
    assert error.problem.type == ACME_URN + "caa"
    assert str(error) == "authorization for a.test is invalid (https://ca/a/1): caa: CAA forbids"
    # The joined class is made once and never replaces the plain type in the registry.
    again = AuthorizationFailedError.for_authorization(
        problem, identifier={"type": "dns", "value": "b.test"}, authorization_url=""
    )
    assert type(again) is type(error)
    assert type(ProblemError.from_problem(problem)) is CAAError
    assert not isinstance(ProblemError.from_problem(problem), OrderFailedError)


def test_a_failed_authorization_with_an_unknown_problem_type() -> None:
    from certherd.errors import AuthorizationFailedError, OrderFailedError, Problem

    problem = Problem(type="urn:example:new", identifier={"type": "dns", "value": "own.test"})
    error = AuthorizationFailedError.for_authorization(
        problem, identifier={"type": "dns", "value": "a.test"}, authorization_url="u"
    )
    assert type(error) is AuthorizationFailedError
    assert isinstance(error, OrderFailedError)
    assert isinstance(error, ProblemError)
    assert error.identifier == {"type": "dns", "value": "own.test"}  # the problem's own kept
