"""The http-01 listener cannot be used to take the daemon's descriptors (issue 9, item 8:
the rest of the class). Its port is open to the internet while a challenge is up, in the
process that renews everything; idle clients beyond the cap are answered 503 at once, a
silent one is dropped at the head deadline, and the token is served again as soon as the
idle clients are gone."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from tests.servers.net import free_port

from certherd.acme.messages import Challenge, Identifier, Status
from certherd.challenges import http01
from certherd.challenges.base import ChallengeTask
from certherd.challenges.http01 import Http01StandaloneSolver

TOKEN = "tok_ABCDEFGHIJKLMNOPQRSTUV"
CAP = 256
"""http01.MAX_CONNECTIONS (spelled out, so the test also runs against the code before it)."""


def task() -> ChallengeTask:
    challenge = Challenge("https://ca.test/chall/1", "http-01", Status.PENDING, token=TOKEN)
    return ChallengeTask(Identifier.dns("example.test"), challenge, f"{TOKEN}.thumbprint")


async def fetch(port: int) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False) as http:
        return await http.get(f"http://127.0.0.1:{port}/.well-known/acme-challenge/{TOKEN}")


async def test_idle_clients_beyond_the_cap_are_refused_and_the_token_served_after() -> None:
    solver = Http01StandaloneSolver(port=free_port(), host="127.0.0.1")
    handle = await solver.present(task())
    idle: list[asyncio.StreamWriter] = []
    try:
        extra = 20
        for _ in range(CAP + extra):
            _, writer = await asyncio.open_connection("127.0.0.1", solver.port)
            idle.append(writer)
        await asyncio.sleep(0.2)  # all accepted: the cap is full, the rest refused
        # Before the fix every one was held (no cap, 10 s each) and none refused.
        assert getattr(solver, "refused", 0) >= extra
        for writer in idle:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for w in idle), return_exceptions=True)
        idle.clear()
        for _ in range(50):  # the server sees each close at once; allow a few loop passes
            response = await fetch(solver.port)
            if response.status_code == 200:
                break
            await asyncio.sleep(0.05)
        assert response.status_code == 200
        assert response.text == f"{TOKEN}.thumbprint"
    finally:
        for writer in idle:
            writer.close()
        await solver.cleanup(handle)


async def test_a_silent_client_is_dropped_at_the_head_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http01, "HEAD_TIMEOUT", 0.3)
    solver = Http01StandaloneSolver(port=free_port(), host="127.0.0.1")
    handle = await solver.present(task())
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", solver.port)
        writer.write(b"GET /.well-known/acme")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
        writer.close()
    finally:
        await solver.cleanup(handle)
