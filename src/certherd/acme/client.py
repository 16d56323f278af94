"""The asyncio ACME client: every operation of RFC 8555, RFC 9773 ARI and profiles.

This is the plumbing: one method per protocol step, no storage, no solvers, no renewal
policy. ``certherd.manager`` and ``certherd.challenges`` build the flows on top.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certherd.acme import jws
from certherd.acme.certificates import CertificateChain, RevocationReason
from certherd.acme.messages import (
    Account,
    Authorization,
    Challenge,
    Directory,
    Identifier,
    Order,
    RenewalInfo,
    Status,
    UrlPolicy,
    format_time,
    identifiers_from,
)
from certherd.acme.retry import (
    CommandDeadline,
    PollPolicy,
    RetryPolicy,
    check_wait,
    parse_retry_after,
)
from certherd.acme.transport import REQUEST_TIMEOUT, Response, Transport
from certherd.clock import Clock, SystemClock
from certherd.crypto.ari import certificate_id
from certherd.crypto.certs import load_pem_chain, verify_issued
from certherd.crypto.encoding import b64url
from certherd.crypto.keys import PrivateKey, PublicKey
from certherd.errors import (
    AuthorizationFailedError,
    ConfigError,
    CryptoError,
    FeatureUnsupportedError,
    OrderFailedError,
    OrderNotReadyError,
    PollDeferredError,
    PollTimeoutError,
    ProblemError,
    UnsafeResponseError,
    refuse_text,
    safe_text,
)

if TYPE_CHECKING:
    import httpx  # loaded by Transport on first use (see certherd.acme.transport)

__all__ = ["AcmeClient", "CertificateChain", "RevocationReason"]

log = logging.getLogger(__name__)

T = TypeVar("T")
PEM_CHAIN = "application/pem-certificate-chain"
NOT_READY_GRACE = 10.0  # seconds to let a CA move an order to "ready" after orderNotReady
MAX_ORDER_PAGES = 1000
MAX_CHAIN = 32  # certificates in one downloaded chain; real ones have two to four
MAX_ALTERNATES = 10  # alternate chains downloaded; Let's Encrypt offers one or two


class AcmeClient:
    """An ACME client bound to one CA directory and one account key.

    Use as ``async with AcmeClient(url, key) as client:``. Safe for many concurrent
    tasks on one event loop (they share the connection pool and the nonce pool).
    ``account_url`` is the account's ``kid``; pass a stored one to skip ``newAccount``.

    Time limits: ``timeout`` bounds each network read (httpx); ``request_timeout``
    bounds one whole HTTP exchange, body included, so a CA that trickles its answer
    ends in DeadlineExceededError; ``retry.total_budget`` bounds one request with its
    retries; ``poll.timeout`` one wait for an order or authorization; and
    ``async with client.deadline(seconds):`` bounds a whole command.

    HTTP: ``timeout`` (30 s), ``ca_bundle``, ``proxy`` and ``trust_env`` (True: the
    ``HTTPS_PROXY``/``ALL_PROXY``/``NO_PROXY`` environment is honoured, as httpx does)
    configure the httpx client certherd makes and closes. Or pass your own
    ``http_client``: certherd never closes it, and giving any of those four with it is
    a ConfigError, since they cannot apply to a client already built. ``user_agent``
    (or a User-Agent header set on your ``http_client``) goes first in the User-Agent
    header, followed by certherd's own product token (RFC 8555 §6.1).

    Everything the CA sends is parsed into certherd's own types or refused with an
    :class:`~certherd.errors.AcmeError`: no exception of the libraries underneath
    escapes on hostile input.
    """

    def __init__(
        self,
        directory_url: str,
        account_key: PrivateKey,
        *,
        account_url: str | None = None,
        ca_bundle: str | None = None,
        timeout: float | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
        allow_http: bool = False,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        clock: Clock | None = None,
        http_client: httpx.AsyncClient | None = None,
        user_agent: str | None = None,
        proxy: str | None = None,
        trust_env: bool | None = None,
    ) -> None:
        self.urls = UrlPolicy(allow_http=allow_http)
        try:
            self.directory_url = self.urls.check(directory_url, "the directory")
        except UnsafeResponseError:
            raise ConfigError(
                f"directory URL {safe_text(directory_url, 200)} is not an https URL: "
                "give the CA's https directory URL as {directory_url}",
                settings=("directory_url",),
            ) from None
        jws.algorithm_for(account_key)  # refuse unusable keys now, not at the first POST
        self.account_key = account_key
        self.account_url = account_url
        self.clock = clock or SystemClock()
        self.poll = poll or PollPolicy()
        self.transport = Transport(
            urls=self.urls,
            ca_bundle=ca_bundle,
            timeout=timeout,
            retry=retry,
            clock=self.clock,
            http_client=http_client,
            request_timeout=request_timeout,
            user_agent=user_agent,
            proxy=proxy,
            trust_env=trust_env,
        )
        self._directory: Directory | None = None
        self._directory_lock = asyncio.Lock()

    async def __aenter__(self) -> AcmeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (never an ``http_client`` the caller passed)."""
        await self.transport.aclose()

    def deadline(self, seconds: float) -> CommandDeadline:
        """``async with client.deadline(600):`` ends everything inside within ``seconds``.

        Requests get at most the time left, a Retry-After or poll wait that would pass
        the deadline ends at once, and any other await inside is cancelled when it
        passes: each ends in DeadlineExceededError. Task-local; nested ones keep the
        earliest. Measured on this client's clock.
        """
        return CommandDeadline(seconds, self.clock)

    # -- directory and requests -------------------------------------------------------

    async def directory(self, *, refresh: bool = False) -> Directory:
        """RFC 8555 §7.1.1: fetch the directory once per client and keep it."""
        if self._directory is not None and not refresh:
            return self._directory
        async with self._directory_lock:  # one fetch, however many orders start at once
            if self._directory is None or refresh:
                response = await self.transport.get(self.directory_url, "directory")
                directory = Directory.from_json(response.json(), self.directory_url, self.urls)
                self._directory = directory
                self.transport.new_nonce_url = directory.new_nonce
            return self._directory

    async def _post(
        self,
        url: str,
        payload: Any | None,
        label: str,
        *,
        key: PrivateKey | None = None,
        use_kid: bool = True,
        safe: bool = True,
        accept: str | None = None,
    ) -> Response:
        await self.directory()
        signing_key = key or self.account_key
        kid = None
        if use_kid:
            if self.account_url is None:
                raise ConfigError("no ACME account yet: register or find the account first")
            kid = self.account_url

        def body(nonce: str) -> dict[str, str]:
            return jws.sign(signing_key, payload, url=url, nonce=nonce, kid=kid)

        return await self.transport.post(url, body, label, safe=safe, accept=accept)

    async def _post_as_get(self, url: str, label: str, accept: str | None = None) -> Response:
        """RFC 8555 §6.3: a POST with an empty payload stands in for GET."""
        return await self._post(url, None, label, accept=accept)

    def key_authorization(self, token: str) -> str:
        """RFC 8555 §8.1 key authorization for ``token`` under this account key."""
        return jws.key_authorization(token, self.account_key)

    # -- accounts (RFC 8555 §7.3) ---------------------------------------------------

    async def register(
        self,
        *,
        contact: Sequence[str] = (),
        agree_tos: bool = False,
        eab: jws.ExternalAccountBinding | None = None,
    ) -> Account:
        """§7.3: create the account, or get the existing one for this key (200 vs 201)."""
        directory = await self.directory()
        if directory.meta.external_account_required and eab is None:
            raise ConfigError(
                "this CA requires External Account Binding: give {eab_kid} and "
                "{eab_hmac_key} with the values from your CA account",
                settings=("eab_kid", "eab_hmac_key"),
            )
        payload: dict[str, Any] = {"termsOfServiceAgreed": agree_tos}
        if contact:
            payload["contact"] = contact_uris(contact)
        if eab is not None:
            # §7.3.4: the binding is a JWS by the EAB key over the account's JWK.
            payload["externalAccountBinding"] = eab.sign(self.account_key, directory.new_account)
        response = await self._post(directory.new_account, payload, "newAccount", use_kid=False)
        return self._account_from(response)

    async def find_account(self) -> Account:
        """§7.3.1: ``onlyReturnExisting``; AccountDoesNotExistError if there is none."""
        directory = await self.directory()
        response = await self._post(
            directory.new_account, {"onlyReturnExisting": True}, "newAccount", use_kid=False
        )
        return self._account_from(response)

    def _account_from(self, response: Response) -> Account:
        location = response.location
        if location is None:
            raise UnsafeResponseError("the CA's newAccount answer has no Location header")
        self.account_url = self.urls.check(location, "account URL")
        body = response.json() if response.content else {"status": "valid"}
        return Account.from_json(body, self.account_url, self.urls)

    async def fetch_account(self) -> Account:
        """§7.3.3: the account object, by POST-as-GET to its URL."""
        url = self._require_account()
        response = await self._post_as_get(url, "account")
        return Account.from_json(response.json(), url, self.urls)

    async def update_account(self, contact: Sequence[str]) -> Account:
        """§7.3.2: replace the account's contacts."""
        url = self._require_account()
        response = await self._post(url, {"contact": contact_uris(contact)}, "account update")
        return Account.from_json(response.json(), url, self.urls)

    async def change_key(self, new_key: PrivateKey) -> Account:
        """§7.3.5 key rollover: inner JWS by the new key, outer JWS by the old one."""
        directory = await self.directory()
        url = self._require_account()
        jws.algorithm_for(new_key)
        inner = jws.sign(
            new_key,
            {"account": url, "oldKey": jws.jwk_for(self.account_key)},
            url=directory.key_change,
            nonce=None,
            kid=None,
        )
        await self._post(directory.key_change, inner, "keyChange", safe=False)
        self.account_key = new_key
        return await self.fetch_account()

    async def deactivate_account(self) -> Account:
        """§7.3.6: deactivate the account; the CA then refuses all its requests."""
        url = self._require_account()
        response = await self._post(
            url, {"status": "deactivated"}, "account deactivate", safe=False
        )
        return Account.from_json(response.json(), url, self.urls)

    def _require_account(self) -> str:
        if self.account_url is None:
            raise ConfigError("no ACME account yet: register or find the account first")
        return self.account_url

    # -- orders (RFC 8555 §7.4) -----------------------------------------------------

    async def new_order(
        self,
        identifiers: Sequence[str | Identifier],
        *,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        profile: str | None = None,
        replaces: str | None = None,
    ) -> Order:
        """§7.4 newOrder; ``profile`` (draft-ietf-acme-profiles) and ``replaces`` (RFC 9773 §5)."""
        directory = await self.directory()
        idents = identifiers_from(identifiers)
        if not idents:
            raise ConfigError(
                "an order needs at least one name ({identifiers})",
                settings=("identifiers",),
            )
        payload: dict[str, Any] = {"identifiers": [i.to_json() for i in idents]}
        if not_before is not None:
            payload["notBefore"] = format_time(not_before)
        if not_after is not None:
            payload["notAfter"] = format_time(not_after)
        if profile is not None:
            offered = directory.meta.profiles
            if not offered:
                raise FeatureUnsupportedError(
                    f"the CA at {self.directory_url} offers no profiles: leave "
                    "{profile}"
                    f" unset (it is {safe_text(profile, 100)!r})",
                    settings=("profile",),
                )
            if profile not in offered:
                raise ConfigError(
                    f"the CA offers no profile {safe_text(profile, 100)!r}: set "
                    "{profile}"
                    f" to one of {', '.join(safe_text(p, 100) for p in offered)}",
                    settings=("profile",),
                )
            payload["profile"] = profile
        if replaces is not None and directory.renewal_info is not None:
            # RFC 9773 §5: only meaningful (and only sent) when the CA implements ARI.
            payload["replaces"] = replaces
        response = await self._post(directory.new_order, payload, "newOrder")
        location = response.location
        if location is None:
            raise UnsafeResponseError("the CA's newOrder answer has no Location header")
        return Order.from_json(response.json(), self.urls.check(location, "order URL"), self.urls)

    async def fetch_order(self, url: str) -> Order:
        response = await self._post_as_get(url, "order")
        return Order.from_json(response.json(), url, self.urls)

    async def list_orders(self, orders_url: str | None = None) -> AsyncIterator[str]:
        """§7.1.2.1: the account's order URLs, following ``Link: rel="next"`` pages."""
        if orders_url is None:
            account = await self.fetch_account()
            if account.orders is None:
                raise FeatureUnsupportedError("the CA lists no orders URL for this account")
            orders_url = account.orders
        seen: set[str] = set()
        next_url: str | None = orders_url
        while next_url is not None:
            if next_url in seen or len(seen) >= MAX_ORDER_PAGES:
                raise UnsafeResponseError("the CA's order list pages loop or never end")
            seen.add(next_url)
            response = await self._post_as_get(next_url, "orders list")
            body = response.json()
            orders = body.get("orders") if isinstance(body, dict) else None
            if not isinstance(orders, list):
                raise UnsafeResponseError("the CA's orders list has no 'orders' array")
            for order_url in orders:
                yield self.urls.check(order_url, "order URL in list")
            links = response.links("next")
            next_url = self.urls.check(links[0], "orders next page") if links else None

    # -- authorizations and challenges (RFC 8555 §7.5) ------------------------------

    async def fetch_authorization(self, url: str) -> Authorization:
        response = await self._post_as_get(url, "authorization")
        return Authorization.from_json(response.json(), url, self.urls)

    async def deactivate_authorization(self, url: str) -> Authorization:
        """§7.5.2: give up an authorization (for example after the name changed hands)."""
        response = await self._post(url, {"status": "deactivated"}, "authorization deactivate")
        return Authorization.from_json(response.json(), url, self.urls)

    async def new_authorization(self, identifier: str | Identifier) -> Authorization:
        """§7.4.1 pre-authorization through ``newAuthz``, when the CA offers it."""
        directory = await self.directory()
        if directory.new_authz is None:
            raise FeatureUnsupportedError(
                f"the CA at {self.directory_url} does not offer pre-authorization (newAuthz)"
            )
        ident = identifier if isinstance(identifier, Identifier) else Identifier.parse(identifier)
        try:
            response = await self._post(
                directory.new_authz, {"identifier": ident.to_json()}, "newAuthz"
            )
        except ProblemError as exc:
            if exc.status == 404:
                raise FeatureUnsupportedError(
                    f"the CA at {self.directory_url} lists newAuthz but does not serve it (404)"
                ) from exc
            raise
        location = response.location
        if location is None:
            raise UnsafeResponseError("the CA's newAuthz answer has no Location header")
        url = self.urls.check(location, "authorization URL")
        return Authorization.from_json(response.json(), url, self.urls)

    async def respond_challenge(self, challenge: Challenge) -> Challenge:
        """§7.5.1: tell the CA the challenge is ready (payload ``{}``)."""
        response = await self._post(challenge.url, {}, f"challenge {challenge.type}")
        return Challenge.from_json(response.json(), self.urls)

    async def wait_authorization(self, url: str) -> Authorization:
        """Poll until the authorization is no longer pending.

        Unless it became valid, raises :func:`authorization_failed`: the challenge's
        problem as its own type (``IncorrectResponseError``, ``DNSProblemError``...),
        which is also an OrderFailedError."""
        authorization = await self._poll(
            url,
            "authorization",
            self.fetch_authorization_response,
            lambda a: a.status is not Status.PENDING,
        )
        if authorization.status is not Status.VALID:
            raise authorization_failed(authorization)
        return authorization

    def fetch_authorization_response(self, response: Response) -> Authorization:
        return Authorization.from_json(response.json(), response.url, self.urls)

    # -- finalize and download (RFC 8555 §7.4) --------------------------------------

    async def finalize(self, order: Order, csr: x509.CertificateSigningRequest) -> Order:
        """§7.4: send the CSR, then poll until the order is valid (or fails)."""
        payload = {"csr": b64url(csr.public_bytes(Encoding.DER))}
        try:
            response = await self._post(order.finalize, payload, "finalize")
            current = Order.from_json(response.json(), order.url, self.urls)
        except OrderNotReadyError as not_ready:
            # The CA may not have moved the order to "ready" yet, or a retried finalize
            # found it already processing: look at the order (briefly) before deciding.
            try:
                current = await self.wait_order(
                    order.url,
                    until=(Status.READY, Status.PROCESSING, Status.VALID),
                    timeout=min(self.poll.timeout, NOT_READY_GRACE),
                )
            except PollDeferredError:
                raise  # the CA said when to ask again: resumable, not "not ready"
            except PollTimeoutError:
                raise not_ready from None
            if current.status is Status.READY:
                response = await self._post(order.finalize, payload, "finalize")
                current = Order.from_json(response.json(), order.url, self.urls)
        if current.status not in (Status.VALID, Status.INVALID):
            current = await self.wait_order(order.url)
        if current.status is not Status.VALID:
            why = f": {current.error.describe()}" if current.error else ""
            raise OrderFailedError(
                f"order {order.url} ended {current.status.value}{why}", current.error
            )
        return current

    async def wait_order(
        self,
        url: str,
        *,
        until: Sequence[Status] = (Status.VALID, Status.INVALID),
        timeout: float | None = None,
    ) -> Order:
        """Poll an order until its status is one of ``until`` or it becomes invalid."""
        wanted = set(until) | {Status.INVALID}
        return await self._poll(
            url,
            "order",
            lambda r: Order.from_json(r.json(), url, self.urls),
            lambda o: o.status in wanted,
            timeout=timeout,
        )

    async def download_certificate(self, url: str) -> CertificateChain:
        """§7.4.2: the PEM chain, and the URLs of alternate chains."""
        response = await self._post_as_get(url, "certificate", accept=PEM_CHAIN)
        try:
            certificates = tuple(load_pem_chain(response.content))
        except CryptoError as exc:
            raise UnsafeResponseError(
                f"the CA's certificate from {safe_text(url, 200)} is unreadable: {exc}"
            ) from None
        if len(certificates) > MAX_CHAIN:
            raise UnsafeResponseError(
                f"the CA's certificate from {safe_text(url, 200)} is a chain of "
                f"{len(certificates)} certificates, more than the {MAX_CHAIN} certherd reads"
            )
        # RFC 8555 §7.4.2: 'Link: <...>;rel="alternate"'; the first MAX_ALTERNATES are kept.
        links = response.links("alternate")[:MAX_ALTERNATES]
        alternates = tuple(self.urls.check(u, "alternate chain") for u in links)
        return CertificateChain(
            url=url, pem=response.content, certificates=certificates, alternates=alternates
        )

    async def download_chains(self, order: Order) -> list[CertificateChain]:
        """The default chain first, then every alternate the CA links."""
        if order.certificate is None:
            raise OrderFailedError(
                f"order {order.url} has no certificate URL (status {order.status})"
            )
        default = await self.download_certificate(order.certificate)
        chains = [default]
        for alternate in default.alternates:
            chains.append(await self.download_certificate(alternate))
        return chains

    def verify_chain(
        self, chain: CertificateChain, public_key: PublicKey, identifiers: Sequence[Identifier]
    ) -> None:
        """Accept the certificate only if it is what was ordered, else CertificateMismatchError."""
        verify_issued(
            chain.certificates,
            public_key=public_key,
            dns_names=[i.value for i in identifiers if i.type == "dns"],
            ip_addresses=[i.value for i in identifiers if i.type == "ip"],
            now=self.clock.now(),
        )

    # -- revocation (RFC 8555 §7.6) ---------------------------------------------------

    async def revoke(
        self,
        certificate: x509.Certificate,
        *,
        reason: RevocationReason | int | None = None,
        certificate_key: PrivateKey | None = None,
    ) -> None:
        """§7.6: revoke, signed by the account key or by the certificate's own key."""
        directory = await self.directory()
        payload: dict[str, Any] = {"certificate": b64url(certificate.public_bytes(Encoding.DER))}
        if reason is not None:
            payload["reason"] = int(reason)
        if certificate_key is not None:
            await self._post(
                directory.revoke_cert,
                payload,
                "revokeCert",
                key=certificate_key,
                use_kid=False,
                safe=False,
            )
        else:
            await self._post(directory.revoke_cert, payload, "revokeCert", safe=False)

    # -- ARI (RFC 9773) ---------------------------------------------------------------

    async def renewal_info(self, certificate: x509.Certificate) -> RenewalInfo:
        """RFC 9773 §4: GET ``{renewalInfo}/{certID}``; FeatureUnsupportedError without ARI."""
        directory = await self.directory()
        if directory.renewal_info is None:
            raise FeatureUnsupportedError(
                f"the CA at {self.directory_url} does not offer ARI (no renewalInfo)"
            )
        url = directory.renewal_info.rstrip("/") + "/" + certificate_id(certificate)
        response = await self.transport.get(url, "renewalInfo")
        retry_after = parse_retry_after(response.headers.get("retry-after"), self.clock.now())
        return RenewalInfo.from_json(response.json(), self.urls, retry_after)

    # -- polling -----------------------------------------------------------------------

    async def _poll(
        self,
        url: str,
        label: str,
        parse: Callable[[Response], T],
        done: Callable[[T], bool],
        timeout: float | None = None,
    ) -> T:
        """Poll at once, then back off; honour Retry-After (capped); end at the timeout."""
        started = self.clock.monotonic()
        attempt = 0
        while True:
            response = await self._post_as_get(url, label)
            value = parse(response)
            if done(value):
                return value
            attempt += 1
            retry_after = parse_retry_after(response.headers.get("retry-after"), self.clock.now())
            delay = self.poll.interval(attempt, retry_after)
            log.info(
                "%s %s is %s: asking again in %.2f s",
                label,
                url,
                getattr(getattr(value, "status", None), "value", "?"),
                delay,
            )
            limit = self.poll.timeout if timeout is None else timeout
            elapsed = self.clock.monotonic() - started
            if retry_after is not None and elapsed + retry_after > limit:
                # RFC 8555 §7.4 / RFC 9110 §10.2.3: the CA said when to ask again, and it
                # is past what this run waits. Stop now, not after `limit`: the resource
                # stays open at the CA for a later run to resume.
                status = getattr(value, "status", "?")
                status = getattr(status, "value", status)
                retry_at = _moment_after(self.clock.now(), retry_after)
                raise PollDeferredError(
                    f"the {label} at {safe_text(url, 200)} is still {status}"
                    f" and the CA asked to be asked again at {retry_at:%Y-%m-%d %H:%M:%S} UTC"
                    f" (Retry-After {retry_after:.0f} s), past the {limit:.0f} s this run waits",
                    url=url,
                    retry_at=retry_at,
                    retry_after=retry_after,
                )
            if elapsed + delay > limit:
                status = getattr(value, "status", "?")
                raise PollTimeoutError(
                    f"the {label} at {safe_text(url, 200)} is still {status} after "
                    f"{limit:.0f}s: the CA is not making progress, try again later",
                    url=url,
                    retry_after=retry_after,
                )
            check_wait(delay, f"polling the {label} at {url}")
            await self.clock.sleep(delay)


def _moment_after(now: dt.datetime, seconds: float) -> dt.datetime:
    """``now`` plus ``seconds`` (a CA's number), clamped so no date overflows."""
    room = (dt.datetime.max.replace(tzinfo=dt.UTC) - now).total_seconds() - 86400
    return now + dt.timedelta(seconds=max(0.0, min(seconds, room)))


# One address, NAME@DOMAIN: no spaces, no second "@", no list separators.
_EMAIL = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>.]+")


def authorization_failed(authorization: Authorization) -> OrderFailedError:
    """The error for an authorization that did not become valid (RFC 8555 §7.1.6).

    §7.1.1: a failed challenge's ``error`` is the problem the CA met validating it; the
    error is that problem, typed by the registry (an AuthorizationFailedError, so also an
    OrderFailedError), with the authorization's identifier and URL. Without a problem
    (deactivated, expired, revoked) it is a plain OrderFailedError.
    """
    state = authorization.status.value
    problem = next((c.error for c in authorization.challenges if c.error), None)
    if problem is None:
        return OrderFailedError(
            f"authorization for {authorization.identifier} is {state} "
            f"({safe_text(authorization.url, 200)})"
        )
    return AuthorizationFailedError.for_authorization(
        problem,
        identifier=authorization.identifier.to_json(),
        authorization_url=authorization.url,
        status=state,
    )


def contact_uris(contact: Sequence[str]) -> list[str]:
    """Contacts as URIs (§7.3): a bare e-mail address becomes ``mailto:``."""
    refuse_text(contact, "contact")
    uris: list[str] = []
    for item in contact:
        text = item.strip()
        if not text:
            continue
        if ":" not in text:
            if not _EMAIL.fullmatch(text):
                raise ConfigError(f"contact {text!r} is not an e-mail address or URI")
            text = "mailto:" + text
        uris.append(text)
    return uris
