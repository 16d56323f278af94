"""A failed challenge reaches the user as the CA's problem, typed (issue 11 item 8).

RFC 8555 §7.1.6 / §8.2: a challenge that fails carries the problem the CA met validating
it; ``obtain_certificate`` raises that problem as its registered type, which is also an
OrderFailedError, with the authorization's identifier and URL. Against a real Pebble
2.4, which sends ``unauthorized`` for a wrong http-01 answer and for a dns-01 without
its TXT record, and ``connection`` when nothing answers http-01.
"""

from __future__ import annotations

import pytest
from acme_helpers import SilentHttp01Solver, WrongKeyHttp01Solver, registered, unique_name

from certherd.acme.messages import Identifier, Status
from certherd.challenges.base import ChallengeTask, check_token
from certherd.errors import (
    AuthorizationFailedError,
    ConnectionProblemError,
    OrderFailedError,
    ProblemError,
    UnauthorizedError,
)
from certherd.manager.obtain import obtain_certificate
from certherd.testing.pebble import PebbleServer

pytestmark = pytest.mark.integration


class NoRecordDns01Solver:
    """Claims dns-01 but publishes no TXT record."""

    challenge_type = "dns-01"

    def supports(self, identifier: Identifier) -> bool:
        return identifier.type == "dns"

    async def present(self, task: ChallengeTask) -> object:
        check_token(task.challenge.token)
        return task.token

    async def cleanup(self, handle: object) -> None:
        return None


async def test_a_wrong_http01_answer_is_caught_as_its_problem_type(
    pebble: PebbleServer,
) -> None:
    name = unique_name("typed-http")
    async with registered(pebble) as client:
        try:
            await obtain_certificate(client, [name], [WrongKeyHttp01Solver(pebble)])
        except UnauthorizedError as error:  # what Pebble sends for a wrong key authorization
            caught: UnauthorizedError = error
        else:
            pytest.fail("a wrong http-01 answer issued a certificate")
        authorization = await client.fetch_authorization(caught.authorization_url)
    assert caught.identifier == {"type": "dns", "value": name}
    assert authorization.identifier == Identifier("dns", name)
    assert authorization.status is Status.INVALID
    assert caught.url == caught.authorization_url
    assert caught.status == 403
    assert "did not match" in caught.detail
    # One error, every way a program may catch it.
    assert isinstance(caught, OrderFailedError)
    assert isinstance(caught, AuthorizationFailedError)
    assert isinstance(caught, ProblemError)
    assert isinstance(caught, OrderFailedError)
    assert caught.problem.type.endswith(":unauthorized")
    assert type(caught).__name__ == "UnauthorizedError"
    assert str(caught).startswith(f"authorization for {name} is invalid (")
    assert caught.authorization_url in str(caught)


async def test_nothing_listening_is_a_connection_problem(pebble: PebbleServer) -> None:
    name = unique_name("typed-silent")
    async with registered(pebble) as client:
        with pytest.raises(ConnectionProblemError) as caught:
            await obtain_certificate(client, [name], [SilentHttp01Solver()])
    assert caught.value.identifier == {"type": "dns", "value": name}
    assert caught.value.authorization_url
    assert "connection refused" in caught.value.detail


async def test_a_dns01_without_its_record_is_caught_as_its_problem_type(
    pebble: PebbleServer,
) -> None:
    name = unique_name("typed-dns")
    async with registered(pebble) as client:
        try:
            await obtain_certificate(client, [name], [NoRecordDns01Solver()])
        except UnauthorizedError as error:  # Pebble 2.4: "No TXT records found ..."
            caught: UnauthorizedError = error
        else:
            pytest.fail("a dns-01 without its record issued a certificate")
        authorization = await client.fetch_authorization(caught.authorization_url)
    assert isinstance(caught, OrderFailedError)
    assert caught.identifier == {"type": "dns", "value": name}
    assert "No TXT records" in caught.detail
    assert str(caught) == (
        f"authorization for {name} is invalid ({caught.authorization_url}): "
        f"unauthorized: {caught.detail}"
    )
    assert authorization.status is Status.INVALID
    challenge = authorization.challenge("dns-01")
    assert challenge is not None
    assert challenge.status is Status.INVALID
