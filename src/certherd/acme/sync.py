"""A blocking facade over :class:`AcmeClient`, for programs without an event loop.

Not a second client: every method runs the async method of one private AcmeClient on
a private event loop in a background thread. ``run()`` runs any other coroutine (for
example :func:`certherd.manager.obtain_certificate`) on that same loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Concatenate, ParamSpec, TypeVar

from certherd.acme.client import AcmeClient
from certherd.crypto.keys import PrivateKey
from certherd.errors import DeadlineExceededError

__all__ = ["SyncAcmeClient"]

P = ParamSpec("P")
R = TypeVar("R")


def _blocking(
    method: Callable[Concatenate[AcmeClient, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[SyncAcmeClient, P], R]:
    def call(self: SyncAcmeClient, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.run(method(self.async_client, *args, **kwargs))

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


class SyncAcmeClient:
    """The same operations as AcmeClient, blocking. Use as a context manager.

    Thread-safe: calls from several threads are run on the one private loop.
    """

    def __init__(self, directory_url: str, account_key: PrivateKey, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="certherd-acme", daemon=True
        )
        self._thread.start()
        self._local = threading.local()  # the deadline stack of each calling thread

        async def make() -> AcmeClient:
            return AcmeClient(directory_url, account_key, **options)

        try:
            self.async_client = self.run(make())
        except BaseException:
            self._stop()
            raise

    def run(self, coroutine: Coroutine[Any, Any, R]) -> R:
        """Run ``coroutine`` on the client's loop and wait for its result.

        Inside ``with client.deadline(seconds):`` it runs under the time left.
        """
        deadlines: list[tuple[float, float]] = getattr(self._local, "deadlines", [])
        if deadlines:
            until, seconds = min(deadlines)
            remaining = until - self.async_client.clock.monotonic()
            if remaining <= 0:
                coroutine.close()
                raise DeadlineExceededError(
                    f"the call was not started: the {seconds:g}s deadline given has passed",
                    seconds=seconds,
                )
            coroutine = self._bounded(coroutine, remaining)
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

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
        """Close the connection pool and stop the background loop."""
        if self._loop.is_running():
            try:
                self.run(self.async_client.aclose())
            finally:
                self._stop()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
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

    def list_orders(self, orders_url: str | None = None) -> list[str]:
        """Every order URL of the account, all pages followed."""

        async def collect() -> list[str]:
            return [url async for url in self.async_client.list_orders(orders_url)]

        return self.run(collect())

    directory = _blocking(AcmeClient.directory)
    register = _blocking(AcmeClient.register)
    find_account = _blocking(AcmeClient.find_account)
    fetch_account = _blocking(AcmeClient.fetch_account)
    update_account = _blocking(AcmeClient.update_account)
    change_key = _blocking(AcmeClient.change_key)
    deactivate_account = _blocking(AcmeClient.deactivate_account)
    new_order = _blocking(AcmeClient.new_order)
    fetch_order = _blocking(AcmeClient.fetch_order)
    fetch_authorization = _blocking(AcmeClient.fetch_authorization)
    deactivate_authorization = _blocking(AcmeClient.deactivate_authorization)
    new_authorization = _blocking(AcmeClient.new_authorization)
    respond_challenge = _blocking(AcmeClient.respond_challenge)
    wait_authorization = _blocking(AcmeClient.wait_authorization)
    finalize = _blocking(AcmeClient.finalize)
    wait_order = _blocking(AcmeClient.wait_order)
    download_certificate = _blocking(AcmeClient.download_certificate)
    download_chains = _blocking(AcmeClient.download_chains)
    revoke = _blocking(AcmeClient.revoke)
    renewal_info = _blocking(AcmeClient.renewal_info)
