"""Notifications (issue 14 item 2) with real parts: a failed renewal against Pebble is
mailed to a real SMTP server (aiosmtpd) and posted to a local HTTP receiver through
apprise's ``mailto://`` and ``json://``; one message per event and interval; a notifier
that cannot be reached changes nothing; the expiring-soon and recovered events; no
secret in any message.
"""

from __future__ import annotations

import datetime as dt
import email
import json
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from acme_helpers import forget_authorizations as forget
from aiosmtpd.controller import Controller
from tests.unit.fakes import FakeClock

from certherd.challenges.spec import SecretRef, SolverSpec
from certherd.manager.lineage import LineageState
from certherd.manager.notify import DEDUP_INTERVAL, compose, scrub
from certherd.manager.policy import FAILURE_BACKOFF, renewal_threshold
from certherd.manager.service import Manager
from certherd.settings import EabSettings, LineageSettings, NotifyTarget
from certherd.storage.layout import notify_record
from certherd.storage.memory import MemoryStorage
from certherd.testing.pebble import PebbleServer

pytestmark = pytest.mark.integration

NAME = "notify.manager.test"
EAB_SECRET = "c2VjcmV0LWVhYi1obWFjLWtleS10aGF0LW11c3Qtbm90LWxlYWs"
TSIG_SECRET = "dHNpZy1zZWNyZXQtdGhhdC1tdXN0LW5vdC1sZWFr"
HOOK_TOKEN = "hooktoken-5f1c9a0e7d"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Mailbox:
    """What a real SMTP server (aiosmtpd) received."""

    port: int
    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def url(self) -> str:
        return (
            f"mailto://127.0.0.1:{self.port}?from=certherd@example.test&to=ops@example.test"
            "&mode=insecure"
        )

    def bodies(self) -> list[str]:
        texts = []
        for message in self.messages:
            parts = message.walk() if message.is_multipart() else [message]
            for part in parts:
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes):
                    texts.append(payload.decode())
            texts.append(str(message["Subject"]))
        return texts


@dataclass
class Receiver:
    """A local HTTP receiver for apprise's json:// posts."""

    port: int
    posts: list[dict[str, Any]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)

    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hooks/{HOOK_TOKEN}"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox(free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    controller.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver(0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.raw.append(self.path.encode() + b" " + body)
            got.posts.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    got.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield got
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def ca(pebble_factory: Callable[..., PebbleServer]) -> PebbleServer:
    return pebble_factory(authz_reuse_percent=0, nonce_reject_percent=0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=dt.datetime.now(dt.UTC).replace(microsecond=0))


@pytest.fixture
def storage() -> MemoryStorage:
    return MemoryStorage()


@pytest.fixture
async def manager(storage: MemoryStorage, clock: FakeClock) -> AsyncIterator[Manager]:
    manager = Manager(storage, clock=clock)
    yield manager
    await manager.aclose()


def settings_for(ca: PebbleServer, *urls: str, **changes: Any) -> LineageSettings:
    settings = LineageSettings(
        name=NAME,
        names=(NAME,),
        directory_url=ca.directory_url,
        ca_bundle=str(ca.ca_bundle),
        solvers=(SolverSpec("http", {"listen": f"127.0.0.1:{ca.options.http_port}"}),),
        agree_tos=True,
        notify=tuple(NotifyTarget(SecretRef("value"), url) for url in urls),
        # The account exists by the time a renewal fails: the key is only a secret to keep.
        eab=EabSettings("kid-1", SecretRef("value"), EAB_SECRET),
    )
    return replace(settings, **changes)


FAILING = (
    SolverSpec("hook", {"challenge": "http-01", "command": "/bin/false"}, (NAME,)),
    # A DNS solver for other names, holding a TSIG secret: never to be seen in a message.
    SolverSpec(
        "dns",
        {"provider": "rfc2136", "server": "127.0.0.1", "key_name": "k", "key_secret": TSIG_SECRET},
        ("*.other.test",),
        secrets={"key_secret": SecretRef("value")},
    ),
)


async def forget_authorizations(manager: Manager, settings: LineageSettings) -> None:
    """Deactivate the account's valid authorizations, so the next order must prove the
    name again (Pebble reuses one now and then even with authz_reuse_percent=0)."""
    await forget(await manager.client(manager.ca_for(settings)))


async def fail_a_renewal(
    manager: Manager, storage: MemoryStorage, clock: FakeClock, settings: LineageSettings
) -> None:
    """Issue, then make the renewal fail (the challenge program fails), past the threshold."""
    outcome = await manager.issue(replace(settings, eab=None))
    assert outcome.action == "issued"
    await forget_authorizations(manager, settings)
    await replace(settings, solvers=FAILING).save(storage)
    state = await LineageState.load(storage, NAME)
    assert state.not_before is not None
    assert state.not_after is not None
    threshold = renewal_threshold(state.not_before, state.not_after)
    await clock.sleep((threshold - clock.now()).total_seconds() + 60)
    [failed] = await manager.renew([NAME])
    assert failed.action == "failed", failed


async def test_a_failed_renewal_is_mailed_and_posted_once_per_interval_without_secrets(
    manager: Manager,
    storage: MemoryStorage,
    clock: FakeClock,
    ca: PebbleServer,
    mailbox: Mailbox,
    receiver: Receiver,
) -> None:
    settings = settings_for(ca, mailbox.url(), receiver.url())
    await fail_a_renewal(manager, storage, clock, settings)

    assert len(mailbox.messages) == 1
    subject = str(mailbox.messages[0]["Subject"])
    assert subject == f"certherd: renewal failed: {NAME}"
    [post] = receiver.posts
    assert post["title"] == subject
    assert "/bin/false" in post["message"]
    assert "attempts failed in a row: 1" in post["message"]
    assert "live certificate expires: " in post["message"]
    assert any("/bin/false" in body for body in mailbox.bodies())
    # A second failing run within the interval tells nobody again.
    await clock.sleep(FAILURE_BACKOFF[0].total_seconds() + 1)
    [again] = await manager.renew([NAME])
    assert again.action == "failed"
    assert (await LineageState.load(storage, NAME)).failures == 2
    assert (len(mailbox.messages), len(receiver.posts)) == (1, 1)
    # Past the interval it is told again, with the attempts so far.
    await clock.sleep(DEDUP_INTERVAL.total_seconds())
    [third] = await manager.renew([NAME])
    assert third.action == "failed"
    assert (len(mailbox.messages), len(receiver.posts)) == (2, 2)
    assert "attempts failed in a row: 3" in receiver.posts[1]["message"]
    # No secret of the lineage in any message: EAB key, solver credential, URL token.
    everything = "\n".join(mailbox.bodies()) + "\n" + "\n".join(str(p) for p in receiver.posts)
    for secret in (EAB_SECRET, TSIG_SECRET, HOOK_TOKEN):
        assert secret not in everything
    assert receiver.raw
    assert all(HOOK_TOKEN.encode() in raw for raw in receiver.raw)


async def test_an_unreachable_notifier_never_changes_the_renewal(
    manager: Manager,
    storage: MemoryStorage,
    clock: FakeClock,
    ca: PebbleServer,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed = free_port()  # nothing listens there
    unreachable = (
        f"mailto://user:pa55word-x@127.0.0.1:{closed}?from=a@example.test&to=b@example.test"
    )
    settings = settings_for(ca, unreachable, receiver.url())
    with caplog.at_level(logging.WARNING, logger="certherd"):
        await fail_a_renewal(manager, storage, clock, settings)
    state = await LineageState.load(storage, NAME)
    assert state.failures == 1
    assert state.last_error
    assert "/bin/false" in state.last_error
    # The working target still got it; the broken one is named by index and scheme only.
    assert len(receiver.posts) == 1
    lines = [r.getMessage() for r in caplog.records if "notification" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "notify[0] (mailto) not sent" in lines[0]
    assert "pa55word-x" not in caplog.text
    # Every target failing: the renewal's outcome is the same, nothing recorded as sent.
    only_broken = settings_for(ca, unreachable, solvers=FAILING)
    await only_broken.save(storage)
    await clock.sleep(FAILURE_BACKOFF[1].total_seconds() + 1)
    [outcome] = await manager.renew([NAME])
    assert outcome.action == "failed"
    assert outcome.error
    assert "/bin/false" in outcome.error
    assert (await LineageState.load(storage, NAME)).failures == 2


async def test_recovery_is_told_once_after_failures(
    manager: Manager,
    storage: MemoryStorage,
    clock: FakeClock,
    ca: PebbleServer,
    receiver: Receiver,
) -> None:
    settings = settings_for(ca, receiver.url())
    await fail_a_renewal(manager, storage, clock, settings)
    await settings.save(storage)  # the challenge server works again
    await clock.sleep(FAILURE_BACKOFF[0].total_seconds() + 1)

    [outcome] = await manager.renew([NAME])

    assert outcome.action == "renewed", outcome
    titles = [post["title"] for post in receiver.posts]
    assert titles == [f"certherd: renewal failed: {NAME}", f"certherd: renewal recovered: {NAME}"]
    assert "after 1 failed attempts" in receiver.posts[1]["message"]
    record = json.loads(await storage.read(notify_record(NAME)))
    assert "failed" not in record
    assert "recovered" in record


async def test_a_certificate_expiring_soon_and_not_renewed_is_told(
    manager: Manager,
    storage: MemoryStorage,
    clock: FakeClock,
    ca: PebbleServer,
    receiver: Receiver,
) -> None:
    settings = settings_for(ca, receiver.url(), notify_expiry_days=7)
    await fail_a_renewal(manager, storage, clock, settings)
    state = await LineageState.load(storage, NAME)
    assert state.not_after is not None
    # Still failing in backoff, 6 days before expiry: not due (backoff), but told.
    await clock.sleep((state.not_after - clock.now() - dt.timedelta(days=6)).total_seconds())
    await manager.renew([NAME])
    titles = [post["title"] for post in receiver.posts]
    assert f"certherd: certificate expires soon: {NAME}" in titles
    [expiring] = [p for p in receiver.posts if "expires soon" in p["title"]]
    assert "expires in 6.0 days and was not renewed" in expiring["message"]
    # Once per interval.
    await manager.renew([NAME])
    assert sum("expires soon" in p["title"] for p in receiver.posts) == 1


async def test_a_healthy_certificate_is_not_told_and_dry_run_tells_nothing(
    manager: Manager,
    storage: MemoryStorage,
    clock: FakeClock,
    ca: PebbleServer,
    receiver: Receiver,
) -> None:
    await manager.issue(replace(settings_for(ca, receiver.url()), eab=None))
    await manager.renew([NAME])
    await manager.renew([NAME], dry_run=True)
    assert receiver.posts == []


def test_compose_scrubs_every_known_secret_and_url_credentials(tmp_path: Path) -> None:
    settings = LineageSettings(name=NAME, names=(NAME,), directory_url="https://ca/dir", solvers=())
    url = "mailto://ops:hunter2-pw@mail.example.test"
    text = f"the CA said: bad key {EAB_SECRET}; tsig {TSIG_SECRET}; login ops:hunter2-pw"
    notice = compose(settings, "failed", text, secrets=[EAB_SECRET, TSIG_SECRET, url])
    for secret in (EAB_SECRET, TSIG_SECRET, "hunter2-pw"):
        assert secret not in notice.body
    assert notice.body.startswith("the CA said: bad key ***; tsig ***")
    assert scrub("nothing here", [url]) == "nothing here"


async def test_expiring_is_told_while_backing_off_without_reading_the_lineage_to_renew(
    manager: Manager,
    storage: MemoryStorage,
    clock: FakeClock,
    ca: PebbleServer,
    receiver: Receiver,
) -> None:
    """A lineage in failure backoff is skipped by the renewal index (not due): the
    expiring-soon check still sees it, from the index's expiry."""
    settings = settings_for(ca, receiver.url(), notify_expiry_days=7)
    outcome = await manager.issue(replace(settings, eab=None))
    assert outcome.not_after is not None
    await forget_authorizations(manager, settings)
    await replace(settings, solvers=FAILING).save(storage)
    # Fails two minutes before the 7-day mark: told as failed, not yet as expiring.
    seven = outcome.not_after - dt.timedelta(days=7, minutes=2)
    await clock.sleep((seven - clock.now()).total_seconds())
    [failed] = await manager.renew([NAME])
    assert failed.action == "failed"
    assert [p["title"] for p in receiver.posts] == [f"certherd: renewal failed: {NAME}"]
    # Three minutes on: inside the 7 days, and inside the 5-minute backoff (not due).
    await clock.sleep(180)
    [backing_off] = await manager.renew([NAME])
    assert backing_off.action == "not-due", backing_off
    assert len(receiver.posts) == 2
    expiring = receiver.posts[1]
    assert expiring["title"] == f"certherd: certificate expires soon: {NAME}"
    assert "expires in 7.0 days and was not renewed" in expiring["message"]
    assert "attempts failed in a row: 1" in expiring["message"]
    assert "/bin/false" in expiring["message"]  # the last error
