"""Which failures at one CA send a certificate to the next CA of its list.

A certificate may name several CAs (``ca = ["letsencrypt", "zerossl"]``), tried in
order, each with its own account. Obtaining moves on to the next CA only when the
failure is the CA's and another CA could well succeed where it failed:

- the CA cannot be reached or does not answer usably: connection errors after the
  retries (:class:`TransportError`), a request that stalls past its timeout, 5xx answers
  and bad nonces past the retries (:class:`RetryLimitError`, a 5xx problem), answers we
  refuse to trust (:class:`UnsafeResponseError`, a certificate not matching the order);
- the CA refuses us for its own reasons: ``rateLimited`` (RFC 8555 §6.7; Let's Encrypt's
  limits last hours to a week; in a fleet, also when another node was told so:
  :class:`CaHeldBackError`, the CA is not even asked), ``rejectedIdentifier`` /
  ``unsupportedIdentifier`` (its policy on the name), ``invalidProfile`` (it has no
  such profile), ``userActionRequired`` (new terms to accept by hand), ``caa`` (the
  domain's CAA records name other CAs: RFC 8659 lets the domain owner choose the CA,
  and the next CA may be one it allows);
- it refuses the account: ``externalAccountRequired``, or ``unauthorized`` while the
  account is created (an EAB it does not accept), or its directory says it requires
  External Account Binding and none is configured for it (the client does not even ask).

Everything else stays with the CA that failed, because it is ours to fix and the next
CA would fail the same way (or worse, the same names would be tried at every CA for
nothing): validation failures (``connection``, ``incorrectResponse``, ``dns``, ``tls``,
``unauthorized`` for a challenge: the CA could not reach or read our answer), an order
or authorization that ended invalid without a problem saying why, ``badCSR`` and
``malformed``, configuration, solver, hook and storage errors, and an order the CA is
still working on (:class:`PollTimeoutError`: it is resumed at the same CA, never
duplicated at another).
"""

from __future__ import annotations

from certherd.errors import (
    CAAError,
    CaHeldBackError,
    ConfigError,
    ExternalAccountRequiredError,
    InvalidProfileError,
    PollTimeoutError,
    ProblemError,
    RateLimitedError,
    RejectedIdentifierError,
    RetryLimitError,
    TransportError,
    UnauthorizedError,
    UnsafeResponseError,
    UnsupportedIdentifierError,
    UserActionRequiredError,
)

__all__ = ["fails_over"]

CA_REFUSALS: tuple[type[ProblemError], ...] = (
    RateLimitedError,
    RejectedIdentifierError,
    UnsupportedIdentifierError,
    InvalidProfileError,
    UserActionRequiredError,
    CAAError,
)
"""Problems that say "not from this CA" rather than "not like this"."""

ACCOUNT_REFUSALS: tuple[type[ProblemError], ...] = (
    ExternalAccountRequiredError,
    UnauthorizedError,
)
"""Problems that, while the account is created, mean this CA will not have us."""


def fails_over(error: BaseException, *, creating_account: bool = False) -> bool:
    """Whether ``error``, met while obtaining from one CA, sends the certificate to the
    next CA of its list (see the module's docstring for why each case is or is not);
    ``creating_account``: it came while opening the account at that CA."""
    if isinstance(error, PollTimeoutError):
        return False  # the order is open at this CA: resumed there, not placed twice
    if creating_account and isinstance(error, ConfigError) and "eab_kid" in error.settings:
        return True  # the CA requires an EAB this certificate has none of for it
    if isinstance(error, TransportError | RetryLimitError | UnsafeResponseError | CaHeldBackError):
        return True
    if not isinstance(error, ProblemError):
        return False
    if isinstance(error, CA_REFUSALS):
        return True
    if creating_account and isinstance(error, ACCOUNT_REFUSALS):
        return True
    if isinstance(error, ExternalAccountRequiredError):
        return True
    status = error.status
    return isinstance(status, int) and status >= 500
