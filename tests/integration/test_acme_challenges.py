"""Challenges through ``obtain_certificate`` against a real Pebble: http-01 and failed validation.

RFC 8555 §7.5.1 (responding to challenges), §8.3 (http-01), §7.1.6 (an invalid
authorization makes the order invalid). The validator connects to 127.0.0.1 at the
Pebble's ``http_port``, where the standalone solver listens.
"""

from __future__ import annotations

import asyncio

import pytest
from acme_helpers import (
    ACME_ERROR,
    CHALLENGE_POST,
    SilentHttp01Solver,
    SlowHttp01Solver,
    WireRecorder,
    WrongKeyHttp01Solver,
    count,
    http_solver,
    port_is_free,
    registered,
    unique_name,
)

from certherd.acme.client import AcmeClient
from certherd.acme.messages import Status
from certherd.crypto.certs import describe_certificate
from certherd.errors import OrderFailedError
from certherd.manager.obtain import obtain_certificate
from certherd.testing.pebble import PebbleServer

pytestmark = pytest.mark.integration


async def _only_order(client: AcmeClient, recorder: WireRecorder) -> str:
    """The URL of the one order the client created, as the CA's Location named it."""
    created = recorder.created((await client.directory()).new_order)
    assert len(created) == 1
    return created[0]


async def test_http01_standalone_proves_several_names(pebble: PebbleServer) -> None:
    names = [unique_name("http-a"), unique_name("http-b"), unique_name("http-c")]
    solver = http_solver(pebble)
    async with registered(pebble) as client:
        issued = await obtain_certificate(client, names, [solver])
        authorizations = [
            await client.fetch_authorization(url) for url in issued.order.authorizations
        ]
        challenge_posts = count(client.transport.trace, *CHALLENGE_POST)
    assert sorted(describe_certificate(issued.chain.leaf).dns_names) == sorted(names)
    assert issued.reused_authorizations == 0
    assert challenge_posts >= len(names)  # one each, plus any badNonce retry
    # The validator fetched every token from our listener, which is closed again.
    assert solver.requests_served >= len(names)
    assert port_is_free(pebble.options.http_port)
    for authorization in authorizations:
        assert authorization.status is Status.VALID
        challenge = authorization.challenge("http-01")
        assert challenge is not None
        assert challenge.status is Status.VALID
        assert challenge.validated is not None


async def test_one_solver_serves_consecutive_orders(pebble: PebbleServer) -> None:
    """The listener stops at the last cleanup and starts again for the next order."""
    solver = http_solver(pebble)
    async with registered(pebble) as client:
        first = await obtain_certificate(client, [unique_name("again-a")], [solver])
        assert port_is_free(pebble.options.http_port)
        second = await obtain_certificate(client, [unique_name("again-b")], [solver])
    assert first.order.url != second.order.url
    assert solver.requests_served >= 2
    assert port_is_free(pebble.options.http_port)


async def test_nothing_served_fails_the_order_with_a_connection_problem(
    pebble: PebbleServer,
) -> None:
    assert port_is_free(pebble.options.http_port), "nothing may listen where Pebble validates"
    solver, recorder = SilentHttp01Solver(), WireRecorder()
    async with registered(pebble, http_client=recorder.http_client(pebble)) as client:
        with pytest.raises(OrderFailedError) as caught:
            await obtain_certificate(client, [unique_name("silent")], [solver])
        order = await client.fetch_order(await _only_order(client, recorder))
        authorization = await client.fetch_authorization(order.authorizations[0])
        listed = [url async for url in client.list_orders()]
    problem = caught.value.problem
    assert problem is not None
    assert problem.type == ACME_ERROR + "connection"
    assert "connection refused" in problem.detail
    assert "connection" in str(caught.value)
    # The solver's cleanup ran for exactly what it presented.
    assert len(solver.presented) == 1
    assert solver.cleaned == solver.presented
    assert authorization.status is Status.INVALID
    assert order.status is Status.INVALID
    assert order.error is not None
    assert order.error.type == problem.type
    # Pebble 2.4 leaves invalid orders out of the account's orders list.
    assert order.url not in listed


async def test_wrong_key_authorization_fails_with_unauthorized(pebble: PebbleServer) -> None:
    solver, recorder = WrongKeyHttp01Solver(pebble), WireRecorder()
    async with registered(pebble, http_client=recorder.http_client(pebble)) as client:
        with pytest.raises(OrderFailedError) as caught:
            await obtain_certificate(client, [unique_name("wrong")], [solver])
        order = await client.fetch_order(await _only_order(client, recorder))
    problem = caught.value.problem
    assert problem is not None
    # Pebble 2.4 reports a wrong key authorization as 403 unauthorized (not incorrectResponse).
    assert problem.type == ACME_ERROR + "unauthorized"
    assert problem.status == 403
    assert "did not match" in problem.detail
    assert ".not-the-thumbprint" in problem.detail
    assert solver.inner.requests_served >= 1
    assert len(solver.cleaned) == 1
    assert port_is_free(pebble.options.http_port)
    assert order.status is Status.INVALID


async def test_one_failed_name_fails_the_order_and_cleans_up_every_name(
    pebble: PebbleServer,
) -> None:
    """Two names, one answered wrongly: the order fails, both presentations are removed."""
    good, bad = unique_name("good"), unique_name("bad")
    solver, recorder = WrongKeyHttp01Solver(pebble, only=[bad]), WireRecorder()
    async with registered(pebble, http_client=recorder.http_client(pebble)) as client:
        with pytest.raises(OrderFailedError) as caught:
            await obtain_certificate(client, [good, bad], [solver])
        order = await client.fetch_order(await _only_order(client, recorder))
        authorizations = {
            str(a.identifier): a.status
            for a in [await client.fetch_authorization(u) for u in order.authorizations]
        }
    assert caught.value.problem is not None
    assert caught.value.problem.type == ACME_ERROR + "unauthorized"
    assert bad in str(caught.value)
    # The good name may or may not have been validated before the cleanup: not checked.
    assert authorizations[bad] is Status.INVALID
    assert set(authorizations) == {good, bad}
    assert order.status is Status.INVALID
    assert len(solver.presented) == 2
    assert sorted(map(repr, solver.cleaned)) == sorted(map(repr, solver.presented))
    assert port_is_free(pebble.options.http_port)  # the last cleanup closed the listener


async def test_a_failed_name_leaves_no_task_behind(pebble: PebbleServer) -> None:
    """When one name fails, the wait for the others ends too: nothing keeps polling.

    The good name is answered a second late, so its authorization is still pending when
    the bad one fails. obtain_certificate must not return while its own tasks still poll
    the CA (they would outlive the solver's cleanup and, later, the client).
    """
    slow, bad = unique_name("slow"), unique_name("bad")
    solver = SlowHttp01Solver(pebble, slow=[slow], wrong=[bad])
    async with registered(pebble) as client:
        with pytest.raises(OrderFailedError, match=bad):
            await obtain_certificate(client, [slow, bad], [solver])
        left = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
    assert len(solver.cleaned) == 2
    assert port_is_free(pebble.options.http_port)
    assert left == [], f"obtain_certificate left tasks running: {left}"
