"""Obtain one certificate: order, prove every identifier, finalize, download, verify.

The porcelain over :class:`certherd.acme.AcmeClient`. All identifiers are presented
first, then answered and awaited concurrently; clean-up always runs, shielded from
cancellation. The certificate is returned only after it was checked against the order
(key, names, validity, chain); nothing is written here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certherd.acme.client import AcmeClient, CertificateChain, authorization_failed
from certherd.acme.messages import Authorization, Identifier, Order, Status
from certherd.challenges.base import ChallengeTask, Solver, check_token
from certherd.challenges.selection import SolverChoice
from certherd.crypto.csr import build_csr, csr_names
from certherd.crypto.keys import KeyType, PrivateKey, generate_key
from certherd.errors import CertherdError, ConfigError, OrderFailedError, ProblemError
from certherd.names import normalize_names

__all__ = [
    "IssuedCertificate",
    "IssuedChain",
    "complete_order",
    "obtain_certificate",
    "open_order",
    "select_chain",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IssuedChain:
    """A verified certificate: the chosen chain and every chain offered.

    What :func:`obtain_certificate` returns for a caller's CSR: the key stays with the
    caller (an HSM, say)."""

    order: Order
    chain: CertificateChain
    chains: tuple[CertificateChain, ...]
    reused_authorizations: int = 0


@dataclass(frozen=True)
class IssuedCertificate(IssuedChain):
    """A verified certificate: the chosen chain, every chain offered, and its key."""

    key: PrivateKey = field(kw_only=True)


def select_chain(
    chains: Sequence[CertificateChain], preferred_issuer: str | None
) -> CertificateChain:
    """The first chain with an issuer named ``preferred_issuer``, else the CA's default."""
    if preferred_issuer:
        wanted = preferred_issuer.strip().lower()
        for chain in chains:
            if any(name.lower() == wanted for name in chain.issuer_names()):
                return chain
    return chains[0]


def _choose(
    authorization: Authorization, solvers: SolverChoice
) -> tuple[Solver, ChallengeTask] | None:
    ident = authorization.full_identifier
    for solver in solvers.candidates(ident):
        challenge = authorization.challenge(solver.challenge_type)
        if challenge is not None:
            return solver, ChallengeTask(ident, challenge, "")
    return None


async def _prove(
    client: AcmeClient, authorizations: Sequence[Authorization], solvers: SolverChoice
) -> None:
    tasks: list[tuple[Solver, ChallengeTask]] = []
    for authorization in authorizations:
        chosen = _choose(authorization, solvers)
        if chosen is None:
            offered = ", ".join(c.type for c in authorization.challenges) or "none"
            usable = ", ".join(s.challenge_type for s in solvers.solvers) or "none"
            raise ConfigError(
                f"no solver for {authorization.full_identifier}: the CA offers {offered}, "
                f"certherd was given {usable} (wildcards need dns-01)"
            )
        solver, task = chosen
        log.info(
            "%s: the CA offers %s; answering %s with %s",
            authorization.full_identifier,
            ", ".join(c.type for c in authorization.challenges) or "nothing",
            task.challenge.type,
            type(solver).__name__,
        )
        key_auth = client.key_authorization(check_token(task.challenge.token))
        tasks.append((solver, ChallengeTask(task.identifier, task.challenge, key_auth)))

    # Each handle is kept the moment its present() returns, so a cancellation (Ctrl-C,
    # SIGTERM) while other names are still being presented cleans up those done. A
    # present() that is itself cancelled undoes its own work (see the Solver protocol).
    presented: list[tuple[Solver, object]] = []

    async def present(solver: Solver, task: ChallengeTask) -> None:
        presented.append((solver, await solver.present(task)))
        log.info("%s: %s presented", task.identifier, task.challenge.type)

    try:
        results = await asyncio.gather(
            *(present(solver, task) for solver, task in tasks), return_exceptions=True
        )
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            raise failure

        async def answer(task: ChallengeTask, url: str) -> None:
            challenge = await client.respond_challenge(task.challenge)
            log.info("%s: the CA was told %s is ready", task.identifier, task.challenge.type)
            if challenge.status is not Status.VALID:  # else the authorization is valid too
                await client.wait_authorization(url)
            log.info("%s: authorization valid", task.identifier)

        await _all_or_cancel(
            [
                answer(task, authz.url)
                for (_, task), authz in zip(tasks, authorizations, strict=True)
            ]
        )
    finally:
        if presented:
            await asyncio.shield(_cleanup(presented))


async def _all_or_cancel(coroutines: Sequence[Coroutine[Any, Any, None]]) -> None:
    """Run all; at the first failure cancel the rest, wait for them, raise that failure."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    for task in tasks:
        if task in done and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


async def _cleanup(presented: Sequence[tuple[Solver, object]]) -> None:
    results = await asyncio.gather(
        *(solver.cleanup(handle) for solver, handle in presented), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    log.info("cleaned up %d challenge(s), %d error(s)", len(presented), len(errors))
    if errors and not isinstance(errors[0], CertherdError | OSError):
        raise errors[0]


async def open_order(
    client: AcmeClient, url: str, identifiers: Sequence[Identifier], now: dt.datetime
) -> Order | None:
    """The order at ``url`` (placed by an earlier run), if it can still lead to a
    certificate for ``identifiers``; None if it cannot (the caller places a new one).

    An order that is ``invalid``, past its ``expires`` (RFC 8555 §7.1.3: "the server
    will consider this order invalid" after it), for other identifiers, or that the CA
    no longer knows (a 4xx problem) is never resumed: resuming it again and again would
    keep a lineage from ever renewing.
    """
    try:
        order = await client.fetch_order(url)
    except ProblemError as exc:
        if exc.status is not None and 400 <= exc.status < 500:
            return None
        raise
    if order.status is Status.INVALID:
        return None
    if order.expires is not None and order.expires <= now and order.status is not Status.VALID:
        return None
    if {(i.type, i.value) for i in order.identifiers} != {(i.type, i.value) for i in identifiers}:
        return None
    return order


async def complete_order(
    client: AcmeClient,
    order: Order,
    identifiers: Sequence[Identifier],
    solvers: Sequence[Solver] | SolverChoice,
    key: PrivateKey | x509.CertificateSigningRequest,
    *,
    before_finalize: Callable[[], Awaitable[object]] | None = None,
) -> tuple[Order, int]:
    """Take ``order`` from whatever status it is in to ``valid`` (RFC 8555 §7.4): prove
    the pending authorizations, finalize with a CSR for ``key`` (or ``key`` itself when
    it is a CSR already), wait while processing. ``before_finalize`` is awaited right
    before the finalize request and may raise to stop it (a holder that lost its lease
    while proving must not finalize an order the next holder now works on).

    Returns the valid order and how many authorizations were valid already. A wait the
    CA asks to be longer than this run allows ends in PollDeferredError (from the
    client): the order stays open at the CA and can be resumed later.
    """
    reused = len(order.authorizations) if order.status is Status.READY else 0
    if order.status is Status.PENDING:
        authorizations = await asyncio.gather(
            *(client.fetch_authorization(url) for url in order.authorizations)
        )
        pending = [a for a in authorizations if a.status is Status.PENDING]
        failed = [a for a in authorizations if a.status not in (Status.PENDING, Status.VALID)]
        if failed:
            raise authorization_failed(failed[0])
        reused = len(authorizations) - len(pending)
        log.info(
            "order %s: %d authorization(s), %d to prove",
            order.url,
            len(authorizations),
            len(pending),
        )
        if pending:
            await _prove(client, pending, SolverChoice.of(solvers))
    if order.status in (Status.PENDING, Status.READY):
        csr = (
            key
            if isinstance(key, x509.CertificateSigningRequest)
            else build_csr(
                key,
                dns_names=[i.value for i in identifiers if i.type == "dns"],
                ip_addresses=[i.value for i in identifiers if i.type == "ip"],
            )
        )
        if before_finalize is not None:
            await before_finalize()
        log.info("order %s: finalizing", order.url)
        order = await client.finalize(order, csr)
    elif order.status is Status.PROCESSING:
        order = await client.wait_order(order.url)
    if order.status is not Status.VALID:
        why = f": {order.error.describe()}" if order.error else ""
        raise OrderFailedError(f"order {order.url} ended {order.status.value}{why}", order.error)
    if order.certificate is None:
        raise OrderFailedError(f"order {order.url} is valid but has no certificate URL")
    return order, reused


@overload
async def obtain_certificate(
    client: AcmeClient,
    names: Sequence[str | Identifier],
    solvers: Sequence[Solver] | SolverChoice,
    *,
    key: PrivateKey | None = None,
    key_type: KeyType | str = KeyType.EC256,
    csr: None = None,
    profile: str | None = None,
    replaces: str | None = None,
    preferred_chain: str | None = None,
    not_after: dt.datetime | None = None,
) -> IssuedCertificate: ...


@overload
async def obtain_certificate(
    client: AcmeClient,
    names: Sequence[str | Identifier],
    solvers: Sequence[Solver] | SolverChoice,
    *,
    csr: x509.CertificateSigningRequest,
    profile: str | None = None,
    replaces: str | None = None,
    preferred_chain: str | None = None,
    not_after: dt.datetime | None = None,
) -> IssuedChain: ...


async def obtain_certificate(
    client: AcmeClient,
    names: Sequence[str | Identifier],
    solvers: Sequence[Solver] | SolverChoice,
    *,
    key: PrivateKey | None = None,
    key_type: KeyType | str = KeyType.EC256,
    csr: x509.CertificateSigningRequest | None = None,
    profile: str | None = None,
    replaces: str | None = None,
    preferred_chain: str | None = None,
    not_after: dt.datetime | None = None,
) -> IssuedChain:
    """Run one order to a verified certificate (RFC 8555 §7.4 end to end).

    ``names`` are normalised and checked first (:mod:`certherd.names`): a name the CA
    would refuse raises InvalidNameError before any request.

    With ``csr`` (built by the caller: a key in an HSM, extensions of its own) that CSR
    is sent as it is, after checking that its signature holds and that it asks for
    exactly ``names``; the result is an :class:`IssuedChain`, without a key. Otherwise
    the CSR is built for ``key`` (a new ``key_type`` key by default) and the result is
    an :class:`IssuedCertificate` carrying it."""
    identifiers = normalize_names(names)
    if csr is not None:
        if key is not None:
            raise ConfigError("give the certificate key or a CSR, not both: the CSR has a key")
        public_key = _check_csr(csr, identifiers)
        order = await client.new_order(
            identifiers, profile=profile, replaces=replaces, not_after=not_after
        )
        order, reused = await complete_order(client, order, identifiers, solvers, csr)
        chain, chains = await _download(client, order, preferred_chain)
        client.verify_chain(chain, public_key, identifiers)
        return IssuedChain(order=order, chain=chain, chains=chains, reused_authorizations=reused)
    certificate_key = key or generate_key(key_type)
    order = await client.new_order(
        identifiers, profile=profile, replaces=replaces, not_after=not_after
    )
    order, reused = await complete_order(client, order, identifiers, solvers, certificate_key)
    chain, chains = await _download(client, order, preferred_chain)
    client.verify_chain(chain, certificate_key.public_key(), identifiers)
    return IssuedCertificate(
        order=order,
        chain=chain,
        chains=chains,
        key=certificate_key,
        reused_authorizations=reused,
    )


def _check_csr(
    csr: x509.CertificateSigningRequest, identifiers: Sequence[Identifier]
) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """The CSR's public key, once its signature holds and it asks for ``identifiers``
    (RFC 8555 §7.4: the CA refuses a CSR whose names differ from the order's)."""
    if not isinstance(csr, x509.CertificateSigningRequest):
        raise TypeError(f"csr must be a cryptography x509.CertificateSigningRequest, not {csr!r}")
    if not csr.is_signature_valid:
        raise ConfigError("the CSR's signature does not verify: sign it with its own key")
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise ConfigError(
            f"the CSR's key is a {type(public_key).__name__}: use an ECDSA or RSA key"
        )
    dns_names, addresses = csr_names(csr)
    asked: set[tuple[str, str]] = set()
    if dns_names or addresses:
        asked = {(i.type, i.value) for i in normalize_names([*dns_names, *addresses])}
    wanted = {(i.type, i.value) for i in identifiers}
    if asked != wanted:
        missing = ", ".join(sorted(v for _, v in wanted - asked)) or "nothing"
        extra = ", ".join(sorted(v for _, v in asked - wanted)) or "nothing"
        raise ConfigError(
            "the CSR's subjectAltName does not ask for exactly the names given: "
            f"it lacks {missing} and adds {extra}"
        )
    return public_key


async def _download(
    client: AcmeClient, order: Order, preferred_chain: str | None
) -> tuple[CertificateChain, tuple[CertificateChain, ...]]:
    """The order's chain (the one issued by ``preferred_chain`` if offered) and all chains."""
    if preferred_chain:
        chains = await client.download_chains(order)
    else:
        assert order.certificate is not None  # checked by complete_order
        chains = [await client.download_certificate(order.certificate)]
    chain = select_chain(chains, preferred_chain)
    log.info(
        "order %s: downloaded %d chain(s); using the one issued by %s",
        order.url,
        len(chains),
        ", ".join(chain.issuer_names()) or "?",
    )
    return chain, tuple(chains)
