"""A blocking facade over :class:`AcmeClient`, for programs without an event loop.

Not a second client: every method runs the async method of one private AcmeClient on
a private event loop in a background thread. ``run()`` runs any other coroutine (for
example :func:`certherd.manager.obtain_certificate`) on that same loop.

Interrupts: a KeyboardInterrupt (Ctrl-C), or any other exception raised in the calling
thread while it waits, cancels the coroutine on the loop and waits up to
:data:`CANCEL_WAIT` seconds for it to end before the exception goes on: nothing keeps
talking to the CA behind the caller's back. ``close()`` cancels and awaits whatever is
still running on the loop before it stops it, so no task is left pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography import x509

from certherd.acme.certificates import CertificateChain, RevocationReason
from certherd.acme.client import AcmeClient
from certherd.acme.jws import ExternalAccountBinding
from certherd.acme.messages import (
    Account,
    Authorization,
    Challenge,
    Directory,
    Identifier,
    Order,
    RenewalInfo,
    Status,
)
from certherd.acme.retry import PollPolicy, RetryPolicy
from certherd.acme.transport import REQUEST_TIMEOUT
from certherd.clock import Clock
from certherd.crypto.keys import PrivateKey
from certherd.errors import DeadlineExceededError

if TYPE_CHECKING:
    import httpx  # loaded by Transport on first use (see certherd.acme.transport)

__all__ = ["CANCEL_WAIT", "SyncAcmeClient"]

log = logging.getLogger(__name__)

R = TypeVar("R")

CANCEL_WAIT = 10.0
"""Seconds an interrupted call, or ``close()``, waits for cancelled coroutines to end."""


class _Call:
    """One coroutine run on the loop for a waiting thread; cancellable before it starts."""

    def __init__(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        self.coroutine = coroutine
        self.task: asyncio.Task[Any] | None = None
        self.cancelled = False
        self.ended = threading.Event()

    def start(self) -> None:  # on the loop
        if self.cancelled:
            self.coroutine.close()
            self.ended.set()
            return
        self.task = asyncio.get_running_loop().create_task(self.coroutine)
        self.task.add_done_callback(lambda _: self.ended.set())

    def cancel(self) -> None:  # on the loop
        self.cancelled = True
        if self.task is not None:
            self.task.cancel()

    def outcome(self) -> Any:
        if self.task is None or self.task.cancelled():
            raise asyncio.CancelledError("the call was cancelled: the client was closed")
        return self.task.result()


class SyncAcmeClient:
    """The same operations as AcmeClient, blocking. Use as a context manager.

    The keyword arguments are AcmeClient's. Every blocking call takes ``timeout=``
    (seconds): the whole call, retries and polling included, ends within it in
    DeadlineExceededError (as inside ``with client.deadline(timeout):``).
    Thread-safe: calls from several threads are run on the one private loop.
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
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="certherd-acme", daemon=True
        )
        self._thread.start()
        self._local = threading.local()  # the deadline stack of each calling thread
        self._closed = False

        async def make() -> AcmeClient:
            return AcmeClient(
                directory_url,
                account_key,
                account_url=account_url,
                ca_bundle=ca_bundle,
                timeout=timeout,
                request_timeout=request_timeout,
                allow_http=allow_http,
                retry=retry,
                poll=poll,
                clock=clock,
                http_client=http_client,
                user_agent=user_agent,
                proxy=proxy,
                trust_env=trust_env,
            )

        try:
            self.async_client = self._wait(make())
        except BaseException:
            self._stop()
            raise

    def run(self, coroutine: Coroutine[Any, Any, R], *, timeout: float | None = None) -> R:
        """Run ``coroutine`` on the client's loop and wait for its result.

        It runs under ``timeout`` seconds if given, and inside ``with
        client.deadline(seconds):`` under the time left, whichever is less.
        """
        limits: list[tuple[float, float]] = list(getattr(self._local, "deadlines", []))
        if timeout is not None:
            if not timeout > 0:
                coroutine.close()
                raise ValueError("timeout needs a positive number of seconds")
            limits.append((self.async_client.clock.monotonic() + timeout, timeout))
        if limits:
            until, seconds = min(limits)
            remaining = until - self.async_client.clock.monotonic()
            if remaining <= 0:
                coroutine.close()
                raise DeadlineExceededError(
                    f"the call was not started: the {seconds:g}s deadline given has passed",
                    seconds=seconds,
                )
            coroutine = self._bounded(coroutine, remaining)
        return self._wait(coroutine)

    def _wait(self, coroutine: Coroutine[Any, Any, R]) -> R:
        """Run on the loop; an exception in this thread while waiting cancels the coroutine."""
        if self._closed or not self._loop.is_running():
            coroutine.close()
            raise RuntimeError("this SyncAcmeClient is closed")
        call = _Call(coroutine)
        self._loop.call_soon_threadsafe(call.start)
        try:
            call.ended.wait()
        except BaseException:
            # Ctrl-C or another exception here: nothing may go on talking to the CA.
            self._loop.call_soon_threadsafe(call.cancel)
            if not call.ended.wait(CANCEL_WAIT):
                log.warning("an interrupted ACME call did not end within %gs", CANCEL_WAIT)
            raise
        result: R = call.outcome()
        return result

    @contextlib.contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """``with client.deadline(600):`` every call inside ends within ``seconds`` in all.

        See :meth:`AcmeClient.deadline`; per calling thread.
        """
        if not seconds > 0:
            raise ValueError("a deadline needs a positive number of seconds")
        stack: list[tuple[float, float]] = self._local.__dict__.setdefault("deadlines", [])
        stack.append((self.async_client.clock.monotonic() + seconds, seconds))
        try:
            yield
        finally:
            stack.pop()

    async def _bounded(self, inner: Coroutine[Any, Any, R], seconds: float) -> R:
        async with self.async_client.deadline(seconds):
            return await inner

    def close(self) -> None:
        """Cancel what still runs, close the connection pool and stop the background loop.

        A second call does nothing. An ``http_client`` given by the caller stays open.
        """
        if self._closed or not self._loop.is_running():
            return
        try:
            self._wait(self._shutdown())
        finally:
            self._closed = True
            self._stop()

    async def _shutdown(self) -> None:
        current = asyncio.current_task()
        others = [task for task in asyncio.all_tasks() if task is not current]
        for task in others:
            task.cancel()
        if others:
            _, pending = await asyncio.wait(others, timeout=CANCEL_WAIT)
            if pending:
                log.warning("%d ACME task(s) did not end when cancelled", len(pending))
        await self.async_client.aclose()
        await asyncio.get_running_loop().shutdown_asyncgens()

    def _stop(self) -> None:
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=CANCEL_WAIT)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> SyncAcmeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def account_url(self) -> str | None:
        return self.async_client.account_url

    @property
    def account_key(self) -> PrivateKey:
        return self.async_client.account_key

    def key_authorization(self, token: str) -> str:
        return self.async_client.key_authorization(token)

    # -- the blocking calls: AcmeClient's, each with ``timeout=`` --------------------------

    def list_orders(
        self, orders_url: str | None = None, *, timeout: float | None = None
    ) -> list[str]:
        """Every order URL of the account, all pages followed."""

        async def collect() -> list[str]:
            return [url async for url in self.async_client.list_orders(orders_url)]

        return self.run(collect(), timeout=timeout)

    def directory(self, *, refresh: bool = False, timeout: float | None = None) -> Directory:
        return self.run(self.async_client.directory(refresh=refresh), timeout=timeout)

    def register(
        self,
        *,
        contact: Sequence[str] = (),
        agree_tos: bool = False,
        eab: ExternalAccountBinding | None = None,
        timeout: float | None = None,
    ) -> Account:
        coroutine = self.async_client.register(contact=contact, agree_tos=agree_tos, eab=eab)
        return self.run(coroutine, timeout=timeout)

    def find_account(self, *, timeout: float | None = None) -> Account:
        return self.run(self.async_client.find_account(), timeout=timeout)

    def fetch_account(self, *, timeout: float | None = None) -> Account:
        return self.run(self.async_client.fetch_account(), timeout=timeout)

    def update_account(self, contact: Sequence[str], *, timeout: float | None = None) -> Account:
        return self.run(self.async_client.update_account(contact), timeout=timeout)

    def change_key(self, new_key: PrivateKey, *, timeout: float | None = None) -> Account:
        return self.run(self.async_client.change_key(new_key), timeout=timeout)

    def deactivate_account(self, *, timeout: float | None = None) -> Account:
        return self.run(self.async_client.deactivate_account(), timeout=timeout)

    def new_order(
        self,
        identifiers: Sequence[str | Identifier],
        *,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        profile: str | None = None,
        replaces: str | None = None,
        timeout: float | None = None,
    ) -> Order:
        coroutine = self.async_client.new_order(
            identifiers,
            not_before=not_before,
            not_after=not_after,
            profile=profile,
            replaces=replaces,
        )
        return self.run(coroutine, timeout=timeout)

    def fetch_order(self, url: str, *, timeout: float | None = None) -> Order:
        return self.run(self.async_client.fetch_order(url), timeout=timeout)

    def fetch_authorization(self, url: str, *, timeout: float | None = None) -> Authorization:
        return self.run(self.async_client.fetch_authorization(url), timeout=timeout)

    def deactivate_authorization(self, url: str, *, timeout: float | None = None) -> Authorization:
        return self.run(self.async_client.deactivate_authorization(url), timeout=timeout)

    def new_authorization(
        self, identifier: str | Identifier, *, timeout: float | None = None
    ) -> Authorization:
        return self.run(self.async_client.new_authorization(identifier), timeout=timeout)

    def respond_challenge(self, challenge: Challenge, *, timeout: float | None = None) -> Challenge:
        return self.run(self.async_client.respond_challenge(challenge), timeout=timeout)

    def wait_authorization(self, url: str, *, timeout: float | None = None) -> Authorization:
        return self.run(self.async_client.wait_authorization(url), timeout=timeout)

    def finalize(
        self, order: Order, csr: x509.CertificateSigningRequest, *, timeout: float | None = None
    ) -> Order:
        return self.run(self.async_client.finalize(order, csr), timeout=timeout)

    def wait_order(
        self,
        url: str,
        *,
        until: Sequence[Status] = (Status.VALID, Status.INVALID),
        timeout: float | None = None,
    ) -> Order:
        """Poll an order; ``timeout`` bounds the whole call as for every other call here
        (DeadlineExceededError); the poll's own limit is the client's ``poll.timeout``."""
        return self.run(self.async_client.wait_order(url, until=until), timeout=timeout)

    def download_certificate(self, url: str, *, timeout: float | None = None) -> CertificateChain:
        return self.run(self.async_client.download_certificate(url), timeout=timeout)

    def download_chains(
        self, order: Order, *, timeout: float | None = None
    ) -> list[CertificateChain]:
        return self.run(self.async_client.download_chains(order), timeout=timeout)

    def revoke(
        self,
        certificate: x509.Certificate,
        *,
        reason: RevocationReason | int | None = None,
        certificate_key: PrivateKey | None = None,
        timeout: float | None = None,
    ) -> None:
        coroutine = self.async_client.revoke(
            certificate, reason=reason, certificate_key=certificate_key
        )
        self.run(coroutine, timeout=timeout)

    def renewal_info(
        self, certificate: x509.Certificate, *, timeout: float | None = None
    ) -> RenewalInfo:
        return self.run(self.async_client.renewal_info(certificate), timeout=timeout)
