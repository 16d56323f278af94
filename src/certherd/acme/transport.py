"""HTTP to the CA: one keep-alive pool, a nonce pool, caps on everything, narrow retries.

RFC 8555 §6.1: all requests over HTTPS; §6.2: POSTs are JWS with ``application/jose+json``;
§6.5: every response carries a fresh ``Replay-Nonce`` that we keep for the next POST, so
``newNonce`` is asked only when the pool is empty; §6.7: errors are problem documents.
Redirects are refused and bodies are size-capped: everything from the CA is untrusted.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import logging
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from certherd.acme.http import USER_AGENT, http_client_for
from certherd.acme.messages import UrlPolicy
from certherd.acme.retry import (
    RetryPolicy,
    check_wait,
    current_deadline,
    parse_retry_after,
)
from certherd.clock import Clock, SystemClock
from certherd.errors import (
    BadNonceError,
    ConfigError,
    DeadlineExceededError,
    Problem,
    ProblemError,
    RateLimitedError,
    RetryLimitError,
    TransportError,
    UnsafeResponseError,
    safe_text,
)

if TYPE_CHECKING:
    # httpx is imported when the first Transport is made, not with this module: its
    # __init__ imports its command-line tool (click, rich, pygments: about 35 ms) whenever
    # those are installed, and `from certherd.acme import AcmeClient` need not pay that.
    import httpx

__all__ = ["REQUEST_TIMEOUT", "USER_AGENT", "Response", "Transport", "redact_headers"]

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # 1 MiB: far above any real ACME response, certificate chains included
MAX_NONCES = 64
MAX_LINKS = 100  # Link targets read from one response; a real CA sends one to three
REQUEST_TIMEOUT = 60.0
"""Seconds one HTTP exchange may take in all (connect, send, the whole body)."""
_NONCE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")  # RFC 8555 §6.5.1: base64url
# RFC 8288 §3: link-value = "<" URI-Reference ">" *( OWS ";" OWS link-param ). Neither
# pattern can backtrack over what it has read, so a 100 KB header costs linear time.
_LINK = re.compile(r"<([^<>]*)>((?:\s*;[^;,<]*)*)")
_REL = re.compile(r'rel\s*=\s*"?([^";,]+)"?')

Signer = Callable[[str], Mapping[str, str]]
"""Builds the JWS body for one attempt, given a fresh nonce."""

# Header names whose values are credentials or session secrets: never logged. ACME
# itself carries none in headers (RFC 8555 §6.2: the JWS body authenticates), but a
# proxy or a CA's gateway may; Replay-Nonce is single-use and public (§6.5).
_SECRET_HEADER = re.compile(
    r"authorization|cookie|token|secret|key|session|password|credential|signature", re.I
)


def redact_headers(headers: Mapping[str, str] | httpx.Headers) -> str:
    """``name: value`` pairs for a debug log, with credential-like values replaced."""
    import httpx

    items = headers.multi_items() if isinstance(headers, httpx.Headers) else headers.items()
    return "; ".join(
        f"{name}: {'<redacted>' if _SECRET_HEADER.search(name) else safe_text(value, 300)}"
        for name, value in items
    )


def _describe_jws(content: bytes) -> str:
    """The protected header of a JWS body (alg, kid or jwk, nonce, url) for a debug log.

    The payload and signature are never logged: the payload may carry an External
    Account Binding or a key change, and neither is of use to a reader of the log.
    """
    try:
        protected = json.loads(content)["protected"]
        header = json.loads(base64.urlsafe_b64decode(protected + "=" * (-len(protected) % 4)))
        shown = {
            k: (f"<{header[k].get('kty', '?')} public key>" if k == "jwk" else header[k])
            for k in ("alg", "kid", "jwk", "nonce", "url")
            if k in header
        }
    except (KeyError, TypeError, ValueError, AttributeError):
        return f"body {len(content)} bytes"
    return f"JWS protected {json.dumps(shown)}; payload and signature <redacted>"


@dataclass(frozen=True)
class Response:
    """One HTTP response from the CA, body already read (and capped)."""

    url: str
    status: int
    headers: httpx.Headers
    content: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.content)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise UnsafeResponseError(
                f"the CA's answer from {safe_text(self.url, 200)} is not JSON"
            ) from None

    @property
    def location(self) -> str | None:
        """RFC 9110 §10.2.2 ``Location``, resolved against the request URL; None if absent."""
        value = self.headers.get("location")
        return self._resolve(value, "Location") if value else None

    def links(self, rel: str) -> list[str]:
        """The targets of ``Link: <...>;rel="rel"`` headers (RFC 8288), resolved to absolute.

        At most :data:`MAX_LINKS` are returned. A target that is not a URL reference
        raises UnsafeResponseError; whether it is an acceptable URL is the caller's check.
        """
        found: list[str] = []
        for header in self.headers.get_list("link"):
            for target, params in _LINK.findall(header):
                rels = _REL.findall(params)
                if any(rel in r.split() for r in rels):
                    found.append(self._resolve(target.strip(), f'Link rel="{rel}"'))
                    if len(found) >= MAX_LINKS:
                        return found
        return found

    def _resolve(self, reference: str, what: str) -> str:
        try:
            return urljoin(self.url, reference)
        except ValueError:  # e.g. "https://[::1/": an unclosed IPv6 literal
            raise UnsafeResponseError(
                f"the CA sent an unreadable {what} URL: {safe_text(reference, 200)}"
            ) from None


def _is_problem(response: httpx.Response | Response) -> bool:
    content_type = response.headers.get("content-type", "")
    return "json" in content_type.split(";")[0]


class Transport:
    """HTTP to one CA with a shared connection pool and nonce pool.

    Not safe to share across event loops; safe for concurrent tasks on one loop.
    ``trace`` records (method, label) of every HTTP request sent, for benchmarks.
    """

    def __init__(
        self,
        *,
        urls: UrlPolicy,
        ca_bundle: str | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        http_client: httpx.AsyncClient | None = None,
        max_body: int = MAX_BODY,
        request_timeout: float = REQUEST_TIMEOUT,
        user_agent: str | None = None,
        proxy: str | None = None,
        trust_env: bool | None = None,
    ) -> None:
        if not request_timeout > 0:
            raise ConfigError("the request timeout must be a positive number of seconds")
        self.urls = urls
        self.retry = retry or RetryPolicy()
        self.clock = clock or SystemClock()
        self.max_body = max_body
        self.request_timeout = request_timeout
        self.new_nonce_url: str | None = None
        self.trace: collections.deque[tuple[str, str]] = collections.deque(maxlen=100_000)
        self._nonces: collections.deque[str] = collections.deque(maxlen=MAX_NONCES)
        self._pause_until = 0.0  # monotonic time before which nobody sends (shared backoff)
        self._http, self._owns_http, self.user_agent = http_client_for(
            http_client,
            ca_bundle=ca_bundle,
            timeout=timeout,
            proxy=proxy,
            trust_env=trust_env,
            user_agent=user_agent,
        )

    async def aclose(self) -> None:
        """Close the connection pool if certherd made it; a caller's http_client stays open."""
        if self._owns_http:
            await self._http.aclose()

    @property
    def request_count(self) -> int:
        return len(self.trace)

    # -- one exchange -------------------------------------------------------------

    async def _exchange(
        self,
        method: str,
        url: str,
        label: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """One HTTP request and its whole body, within the request timeout (and deadline).

        httpx's timeouts bound each read, so a CA sending one byte every few seconds
        would keep the request open for ever: the whole exchange runs under one
        ``asyncio.timeout``, at most ``request_timeout`` or the command's time left.
        """
        self.urls.check(url, label)
        limit = self.request_timeout
        deadline = current_deadline()
        if deadline is not None:
            remaining = deadline.remaining()
            if remaining <= 0:
                raise deadline.exceeded(f"{label} to {safe_text(url, 200)} was not sent")
            limit = min(limit, remaining)
        self.trace.append((method, label))
        request_headers = {"User-Agent": self.user_agent, **(headers or {})}
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s request headers: %s", method, label, redact_headers(request_headers))
            if content:
                log.debug("%s %s %s", method, label, _describe_jws(content))
        scope = asyncio.timeout(limit)
        try:
            async with scope:
                response = await self._read(method, url, label, content, request_headers)
        except TimeoutError:
            if not scope.expired():
                raise
            if deadline is not None and limit < self.request_timeout:
                raise deadline.exceeded(
                    f"{label} to {safe_text(url, 200)} got no complete answer in time"
                ) from None
            raise DeadlineExceededError(
                f"{label} to {safe_text(url, 200)} got no complete answer within "
                f"{limit:g}s: the CA is too slow or stalls mid-answer; try again later",
                seconds=limit,
            ) from None
        self._keep_nonce(response)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s response headers: %s", method, label, redact_headers(response.headers))
        if 300 <= response.status < 400:
            raise UnsafeResponseError(
                f"the CA answered {label} ({safe_text(url, 200)}) with a redirect "
                f"to {safe_text(response.headers.get('location', '?'), 200)}: redirects are refused"
            )
        return response

    async def _read(
        self,
        method: str,
        url: str,
        label: str,
        content: bytes | None,
        headers: Mapping[str, str],
    ) -> Response:
        """Send, then read the body up to ``max_body``; httpx's own failures are converted.

        ``httpx.TransportError`` passes through (the retry loop decides); every other
        failure of reading what the CA sent becomes UnsafeResponseError.
        """
        import httpx  # already loaded by __init__ (see the note at the imports)

        try:
            async with self._http.stream(method, url, content=content, headers=headers) as raw:
                declared = raw.headers.get("content-length", "").strip()
                # Compare lengths first: int() refuses more than 4300 digits.
                if (
                    declared.isascii()
                    and declared.isdigit()
                    and (len(declared) > 18 or int(declared) > self.max_body)
                ):
                    raise UnsafeResponseError(
                        f"the CA's answer to {label} is {safe_text(declared, 40)} bytes, "
                        f"over the {self.max_body} cap"
                    )
                body = bytearray()
                async for chunk in raw.aiter_bytes():
                    body += chunk
                    if len(body) > self.max_body:
                        raise UnsafeResponseError(
                            f"the CA's answer to {label} exceeds the {self.max_body}-byte cap"
                        )
                return Response(
                    url=url, status=raw.status_code, headers=raw.headers, content=bytes(body)
                )
        except httpx.TransportError:
            raise
        except (httpx.HTTPError, httpx.InvalidURL, ValueError, UnicodeError) as exc:
            # A body that does not decode (Content-Encoding), a URL httpx cannot send to,
            # a header h11 cannot read: the CA's data is at fault, not the network.
            raise UnsafeResponseError(
                f"the CA's answer to {label} ({safe_text(url, 200)}) is unreadable: "
                f"{type(exc).__name__}: {safe_text(exc, 200)}"
            ) from None

    def _keep_nonce(self, response: Response) -> None:
        nonce = response.headers.get("replay-nonce")
        if nonce and _NONCE.fullmatch(nonce):
            self._nonces.append(nonce)

    async def _nonce(self) -> str:
        if self._nonces:
            return self._nonces.popleft()
        if self.new_nonce_url is None:
            raise ConfigError("no newNonce URL: fetch the directory first")
        # RFC 8555 §7.2: HEAD newNonce answers 200 with a Replay-Nonce header.
        response = await self._with_retries("HEAD", self.new_nonce_url, "newNonce", safe=True)
        if not self._nonces:
            raise UnsafeResponseError("the CA's newNonce answer carried no usable Replay-Nonce")
        del response
        return self._nonces.popleft()

    # -- retries -------------------------------------------------------------------

    async def _with_retries(
        self,
        method: str,
        url: str,
        label: str,
        *,
        safe: bool,
        body: Signer | None = None,
        accept: str | None = None,
    ) -> Response:
        import httpx  # already loaded by __init__ (see the note at the imports)

        policy = self.retry
        started = self.clock.monotonic()
        bad_nonces = 0
        server_errors = 0
        connection_errors = 0
        while True:
            await self._honour_pause(started, label, url)
            headers: dict[str, str] = {}
            content: bytes | None = None
            if accept:
                headers["Accept"] = accept
            if body is not None:
                nonce = await self._nonce()
                content = json.dumps(body(nonce), separators=(",", ":")).encode()
                headers["Content-Type"] = "application/jose+json"
            sent_at = time.perf_counter()
            try:
                response = await self._exchange(
                    method, url, label, content=content, headers=headers
                )
            except DeadlineExceededError:
                raise  # not retried: a CA that stalled once for the whole limit stalls again
            except httpx.TransportError as exc:
                log.info(
                    "%s %s %s -> %s: %s (%.0f ms)",
                    method,
                    label,
                    url,
                    type(exc).__name__,
                    exc,
                    (time.perf_counter() - sent_at) * 1000,
                )
                connection_errors += 1
                sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                verify_failure = _certificate_failure(exc)
                if verify_failure:
                    raise TransportError(
                        f"TLS verification of {safe_text(url, 200)} failed ({verify_failure}): "
                        "give the CA's root as {ca_bundle} if it is a private CA",
                        settings=("ca_bundle",),
                    ) from None
                if (sent and not safe) or connection_errors >= policy.connection_attempts:
                    raise TransportError(
                        f"{label} to {safe_text(url, 200)} failed after {connection_errors} "
                        f"attempt(s): {type(exc).__name__}: {safe_text(exc, 200)}"
                    ) from None
                await self._wait(policy.backoff(connection_errors), started, label, url)
                continue
            elapsed_ms = (time.perf_counter() - sent_at) * 1000
            if response.status < 400:
                status = response.status
                log.info("%s %s %s -> %d (%.0f ms)", method, label, url, status, elapsed_ms)
                return response
            now = self.clock.now()
            retry_after = parse_retry_after(response.headers.get("retry-after"), now)
            problem = _problem_of(response)
            log.info(
                "%s %s %s -> %d %s: %s (%.0f ms)",
                method,
                label,
                url,
                response.status,
                problem.type,
                problem.detail,
                elapsed_ms,
            )
            error = ProblemError.from_problem(problem, url=url, retry_after=retry_after)
            if isinstance(error, BadNonceError) and body is not None:
                # RFC 8555 §6.5: retry with the nonce the error response carried (kept above).
                bad_nonces += 1
                if bad_nonces >= policy.bad_nonce_attempts:
                    raise RetryLimitError(
                        f"the CA rejected {bad_nonces} nonces in a row for {label} "
                        f"({safe_text(url, 200)}): {problem.describe()}"
                    ) from error
                continue
            if response.status in policy.retry_statuses:
                server_errors += 1
                replay_ok = safe or response.status in (429, 503)
                if not replay_ok or server_errors >= policy.server_error_attempts:
                    raise error
                if retry_after is not None and retry_after > policy.retry_after_cap:
                    if isinstance(error, RateLimitedError):
                        raise error
                    raise RetryLimitError(
                        f"the CA asked to retry {label} in {retry_after:.0f}s, more than the "
                        f"{policy.retry_after_cap:.0f}s certherd waits: {problem.describe()}"
                    ) from error
                delay = retry_after if retry_after is not None else policy.backoff(server_errors)
                if response.status in (429, 503):
                    # The CA said "slow down": every request through this transport waits,
                    # so a hundred concurrent orders back off together instead of hammering.
                    self._pause_until = max(self._pause_until, self.clock.monotonic() + delay)
                await self._wait(delay, started, label, url, cause=error)
                continue
            raise error

    async def _honour_pause(self, started: float, label: str, url: str) -> None:
        remaining = self._pause_until - self.clock.monotonic()
        if remaining > 0:
            await self._wait(remaining, started, label, url)

    async def _wait(
        self, delay: float, started: float, label: str, url: str, cause: Exception | None = None
    ) -> None:
        elapsed = self.clock.monotonic() - started
        if elapsed + delay > self.retry.total_budget:
            raise RetryLimitError(
                f"{label} to {safe_text(url, 200)} did not succeed within "
                f"{self.retry.total_budget:.0f}s of retries"
            ) from cause
        check_wait(delay, f"retrying {label} to {url}")
        log.info("%s: retrying in %.1f s", label, delay)
        await self.clock.sleep(delay)

    # -- the public calls -------------------------------------------------------------

    async def get(self, url: str, label: str, *, accept: str | None = None) -> Response:
        """Unsigned GET (directory, renewalInfo), retried on 5xx and connection errors."""
        return await self._with_retries("GET", url, label, safe=True, accept=accept)

    async def post(
        self, url: str, body: Signer, label: str, *, safe: bool = True, accept: str | None = None
    ) -> Response:
        """A signed POST; ``body(nonce)`` builds the JWS for each attempt.

        ``safe`` says replay is harmless, allowing retries after the request may have
        reached the CA (read errors, 500/502/504).
        """
        return await self._with_retries("POST", url, label, safe=safe, body=body, accept=accept)

    def add_nonce(self, nonce: str) -> None:
        """Offer a nonce to the pool (used by tests and by callers that have one)."""
        if _NONCE.fullmatch(nonce):
            self._nonces.append(nonce)


def _problem_of(response: Response) -> Problem:
    # RFC 8555 §6.7 says application/problem+json, but some CAs label it text/plain:
    # a body that parses as a problem document is used whatever its content type.
    try:
        data = json.loads(response.content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        data = None
    if isinstance(data, dict) and ("type" in data or _is_problem(response)):
        return Problem.from_json(data)
    text = response.content[:200].decode("utf-8", "replace")
    return Problem(
        type="about:blank",
        detail=f"HTTP {response.status}: {safe_text(text, 200)}",
        status=response.status,
    )


def _certificate_failure(exc: BaseException) -> str | None:
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or "certificate verify failed"
        seen = seen.__cause__ or seen.__context__
    return None
