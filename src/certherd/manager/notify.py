"""Telling people when it matters: notifications through apprise.

Let's Encrypt stopped its expiry e-mails in 2025: the client is the only one left to
notice a renewal that keeps failing. A lineage's ``notify`` settings list apprise URLs
(``mailto://``, ``json://``, ``slack://``, ``matrix://`` ... 100+ services); these events
are told to them:

``failed``      a renewal (or issuance) failed: the CA's problem, the attempts so far,
                when the live certificate expires;
``expiring``    the certificate expires within ``notify_expiry_days`` and was not
                renewed (checked by every ``renew`` and daemon cycle);
``recovered``   the first success after failures;
``failover``    another CA than the first had to be used (see :func:`notify_event`).

Deduplicated: one message per event and lineage per :data:`DEDUP_INTERVAL` (the time
each was last sent is kept at ``notify/<lineage>.json``); a ``recovered`` message
clears the record of ``failed`` and ``expiring`` (a new failure is told at once), a
``failed`` one that of ``recovered``. A message never carries a secret: it is built
from certherd's own one-line texts (which name settings, never values), and every
secret the lineage knows (solver credentials, the EAB key, the notify URLs themselves)
is replaced by ``***`` before it leaves. A notifier that fails never changes the
outcome of a renewal: it is logged in one line (the target's index and scheme, never
its URL) and that is all; one that hangs is waited for :data:`SEND_TIMEOUT` at most,
then left to a daemon thread and skipped until that returns (see :func:`_send`).
apprise is imported only when a message is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from certherd.clock import Clock
from certherd.errors import CertherdError, NotFoundError, StorageError, safe_text
from certherd.schema import REDACTED
from certherd.settings import NOTIFY_TIMEOUT, LineageSettings
from certherd.storage.base import Storage
from certherd.storage.layout import notify_record
from certherd.storage.leases import held_lease

__all__ = [
    "DEDUP_INTERVAL",
    "EVENTS",
    "EventKind",
    "Notice",
    "NotifyHost",
    "compose",
    "notify_event",
    "scrub",
]

log = logging.getLogger(__name__)

EventKind = Literal["failed", "expiring", "recovered", "failover"]
EVENTS: dict[EventKind, str] = {
    "failed": "renewal failed",
    "expiring": "certificate expires soon",
    "recovered": "renewal recovered",
    "failover": "CA fail-over",
}
DEDUP_INTERVAL = dt.timedelta(hours=24)
"""One message per event kind and lineage within this time."""
SEND_TIMEOUT = NOTIFY_TIMEOUT
"""Seconds a renewal waits for the targets of one message by default (the setting
``notify_timeout`` changes it per certificate; apprise's own socket
timeouts are 4 s to connect and read, 15 s for SMTP; a receiver that trickles its
answer defeats them). Past it, a target counts as not sent; its thread is left to
finish, and the target is skipped until it does."""
_CLEARS: dict[EventKind, tuple[EventKind, ...]] = {
    "failed": ("recovered",),
    "recovered": ("failed", "expiring"),
}


class NotifyHost(Protocol):
    """What sending needs from its caller (the :class:`~certherd.manager.service.Manager`):
    storage for the dedup record, the clock, the lineage's notify URLs read from where
    they come from, and the secret values to keep out of messages."""

    storage: Storage
    clock: Clock

    def notify_urls(self, settings: LineageSettings) -> list[str]: ...

    def known_secrets(self, settings: LineageSettings) -> set[str]: ...


@dataclass(frozen=True)
class Notice:
    """One message: its title and body (plain text), already scrubbed."""

    kind: EventKind
    lineage: str
    title: str
    body: str


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (and, for a URL, its password, user and tokens) as
    ``***``; the longest first, so a secret holding another is replaced whole."""
    pieces: set[str] = set()
    for secret in secrets:
        if len(secret) >= 4:
            pieces.add(secret)
        pieces.update(_url_secrets(secret))
    for piece in sorted(pieces, key=len, reverse=True):
        text = text.replace(piece, REDACTED)
    return text


def _url_secrets(url: str) -> set[str]:
    """The parts of a notify URL that may be secret: user and password (3 characters
    or more), path segments and query values long enough to be tokens (Slack's and
    Telegram's live there; 8 or more, so words like ``hooks`` stay readable)."""
    if "://" not in url:
        return set()
    try:
        parts = urlsplit(url)
        login = {unquote(parts.username or ""), unquote(parts.password or "")}
    except ValueError:
        return set()
    tokens = {unquote(segment) for segment in parts.path.split("/")}
    tokens.update(value for _, value in parse_qsl(parts.query))
    return {p for p in login if len(p) >= 3} | {t for t in tokens if len(t) >= 8}


def compose(
    settings: LineageSettings,
    kind: EventKind,
    text: str,
    *,
    details: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
) -> Notice:
    """The message for ``kind`` about ``settings``' lineage: a title, then ``text``, then
    the lineage's names, CA and ``details`` (attempts, expiry ...), one per line."""
    title = f"certherd: {EVENTS[kind]}: {settings.name}"
    lines = [safe_text(text, 2000), ""]
    lines.append(f"lineage: {settings.name}")
    lines.append(f"names: {', '.join(settings.names)}")
    lines.append(f"CA: {safe_text(settings.directory_url, 300)}")
    lines += [f"{key}: {safe_text(value, 500)}" for key, value in (details or {}).items()]
    kept = list(secrets)
    return Notice(kind, settings.name, scrub(title, kept), scrub("\n".join(lines), kept))


async def notify_event(
    host: NotifyHost,
    settings: LineageSettings,
    kind: EventKind,
    text: str,
    *,
    details: Mapping[str, str] | None = None,
) -> bool:
    """Tell ``settings.notify`` about ``kind`` (with ``text``, one line, and ``details``),
    unless the same kind was told for this lineage within :data:`DEDUP_INTERVAL`.

    Returns whether a message went out to at least one target. Never raises (but for
    cancellation): a notifier that fails is logged in one line and the caller goes on.
    This is the one call for every event, ``failover`` included::

        await notify_event(manager, settings, "failover", "CA A refused: ...; B issued")
    """
    if not settings.notify:
        return False
    name = settings.name
    try:
        now = host.clock.now()
        record = await _load(host.storage, name)
        last = record.get(kind)
        if last is not None and now - last < DEDUP_INTERVAL:
            log.debug("lineage %s: %s already told at %s", name, kind, last.isoformat())
            return False
        urls = host.notify_urls(settings)
        notice = compose(
            settings,
            kind,
            text,
            details=details,
            secrets=[*host.known_secrets(settings), *urls],
        )
        sent = await _send(name, urls, notice, settings.notify_timeout)
        if sent:
            record[kind] = now
            for cleared in _CLEARS.get(kind, ()):
                record.pop(cleared, None)
            await _save(host.storage, name, record)
        return sent
    except asyncio.CancelledError:
        raise
    except CertherdError as exc:  # a URL that cannot be read, storage: one line
        log.warning("lineage %s: %s notification not sent: %s", name, kind, exc.text(300))
    except Exception as exc:  # a bug in a notifier must not fail a renewal
        log.warning("lineage %s: %s notification not sent: %s", name, kind, type(exc).__name__)
    return False


async def _load(storage: Storage, name: str) -> dict[EventKind, dt.datetime]:
    try:
        raw = await storage.read(notify_record(name))
    except NotFoundError:
        return {}
    try:
        data = json.loads(raw)
        return {kind: dt.datetime.fromisoformat(str(data[kind])) for kind in EVENTS if kind in data}
    except (ValueError, TypeError):
        log.warning("lineage %s: %s is damaged: starting it again", name, notify_record(name))
        return {}


async def _save(storage: Storage, name: str, record: dict[EventKind, dt.datetime]) -> None:
    data = {kind: moment.astimezone(dt.UTC).isoformat() for kind, moment in record.items()}
    try:
        await storage.write(
            notify_record(name),
            json.dumps(data, sort_keys=True).encode() + b"\n",
            fence=held_lease(name),
        )
    except StorageError as exc:  # the message went out; at worst it goes out again
        log.warning("lineage %s: cannot record the notification sent: %s", name, exc.text(200))


async def _send(name: str, urls: list[str], notice: Notice, timeout: float = SEND_TIMEOUT) -> bool:
    """Send ``notice`` to every URL, each in a thread of its own (apprise blocks), and
    wait at most ``timeout`` seconds for them all; whether any took it.

    A target that does not answer in time is left to its thread (a daemon thread: the
    process never waits for it at exit) and skipped by later messages until that thread
    returns, so a receiver that hangs costs one wait, not one per message, and never
    holds up the other targets of the message."""
    if not urls:
        return False
    loop = asyncio.get_running_loop()
    problems: dict[int, str] = {}
    waiting: dict[int, asyncio.Future[str | None]] = {}
    for index, url in enumerate(urls):
        with _HANGING_LOCK:
            if url in _HANGING:
                problems[index] = "an earlier message to it has not returned yet: skipped"
                continue
            _HANGING.add(url)
        future: asyncio.Future[str | None] = loop.create_future()
        thread = threading.Thread(
            target=_send_in_thread,
            args=(loop, future, url, notice, urls),
            name=f"certherd-notify-{index}",
            daemon=True,
        )
        thread.start()
        waiting[index] = future
    if waiting:
        await asyncio.wait(waiting.values(), timeout=timeout)
    for index, future in waiting.items():
        if not future.done():
            future.cancel()
            problems[index] = f"no answer within {timeout:g} s"
        elif (problem := future.result()) is not None:
            problems[index] = problem
    for index in sorted(problems):
        log.warning(
            "lineage %s: %s notification to notify[%d] (%s) not sent: %s",
            name,
            notice.kind,
            index,
            _scheme(urls[index]),
            problems[index],
        )
    return len(problems) < len(urls)


_HANGING: set[str] = set()
"""Targets whose thread has not returned yet (skipped until it does)."""
_HANGING_LOCK = threading.Lock()
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]{0,30})://")


def _scheme(url: str) -> str:
    match = _SCHEME.match(url)
    return match.group(1) if match else "?"


def _send_in_thread(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[str | None],
    url: str,
    notice: Notice,
    urls: list[str],
) -> None:
    """A target's thread: send, then hand the result to the loop (if it still runs)."""
    try:
        problem = _send_one(url, notice, urls)
    except BaseException as exc:  # a plugin's bug: this target failed, not the run
        problem = f"unexpected {type(exc).__name__}"
    finally:
        with _HANGING_LOCK:
            _HANGING.discard(url)

    def settle() -> None:
        if not future.done():
            future.set_result(problem)

    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
        loop.call_soon_threadsafe(settle)


class _ThreadLog(logging.Handler):
    """What apprise logs at WARNING or above from one thread (apprise's logger is one
    for the process, and targets are sent in parallel)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._thread = threading.get_ident()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self._thread:
            with contextlib.suppress(Exception):
                self.lines.append(record.getMessage())


def _send_one(url: str, notice: Notice, urls: list[str]) -> str | None:
    """Send to one URL; what went wrong (apprise's last warning, with every URL's
    secrets scrubbed), else None."""
    import apprise

    # Sent right here, in this target's daemon thread: with its service time limit (60 s
    # by default) or in async mode, apprise runs the call in a shared executor of its
    # own, whose threads the process waits for at exit: a receiver that never finishes
    # its answer then keeps certherd from ending. The time is bounded by _send instead.
    try:
        asset = apprise.AppriseAsset(async_mode=False, service_timeout=0)
    except (TypeError, AttributeError):  # apprise 1.x: no service limit, no executor
        asset = apprise.AppriseAsset(async_mode=False)
    sender = apprise.Apprise(asset=asset)
    if not sender.add(url):
        return "apprise does not know this URL: see docs/notifications.md"
    # apprise's warnings say why a target failed: heard for the length of this call by a
    # handler of this thread's records only, taken off again after; the level of
    # apprise's logger is the embedding program's to set (default: WARNING).
    logger = logging.getLogger("apprise")
    capture = _ThreadLog()
    logger.addHandler(capture)
    try:
        if sender.notify(title=notice.title, body=notice.body):
            return None
    finally:
        logger.removeHandler(capture)
    said = [line for line in capture.lines if line.strip()]
    return safe_text(scrub(said[-1], urls), 200) if said else "refused"
