"""The status page's data and its basic auth: what one row says (and never says), the
auth file's checks, and the credential check."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from pathlib import Path

import pytest

from certherd.daemon.page import BasicAuth, read_users
from certherd.daemon.status import lineage_row
from certherd.errors import ConfigError
from certherd.manager.lineage import LineageState
from certherd.settings import EabSettings, LineageSettings, SecretRef

NOW = dt.datetime(2026, 12, 4, 6, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def settings() -> LineageSettings:
    return LineageSettings(
        name="example.com",
        names=("example.com", "www.example.com"),
        directory_url="https://ca.example/directory",
        solvers=(),
        email="owner@example.com",
        eab=EabSettings("kid-123", SecretRef("file", "/etc/certherd/eab-key")),
    )


def state(**values: object) -> LineageState:
    base: dict[str, object] = {
        "name": "example.com",
        "version": 3,
        "serial": "0a1b",
        "not_before": NOW - 10 * DAY,
        "not_after": NOW + 80 * DAY,
    }
    return LineageState(**{**base, **values})  # type: ignore[arg-type]


def test_a_fine_row_says_when_and_why_and_no_secret() -> None:
    row = lineage_row(settings(), state(), NOW)
    assert row["condition"] == "ok"
    assert row["names"] == ["example.com", "www.example.com"]
    assert row["ca"] == "https://ca.example/directory"
    assert row["not_after"] == "2027-02-22T06:00:00Z"
    assert row["next_renewal"] == "2027-01-23T06:00:00Z"  # a third of the lifetime left
    assert "a third of the lifetime" in row["reason"]
    text = json.dumps(row)
    for secret in ("owner@example.com", "kid-123", "eab-key", "account"):
        assert secret not in text


def test_failing_expired_due_and_pending() -> None:
    failing = state(failures=2, last_error="CA said: \x1b[31mno", last_failure=NOW - DAY)
    row = lineage_row(settings(), failing, NOW)
    assert (row["condition"], row["failures"]) == ("failing", 2)
    assert row["last_error"] == "CA said: \\x1b[31mno"  # control characters made visible
    expired = state(not_before=NOW - 90 * DAY, not_after=NOW - DAY)
    assert lineage_row(settings(), expired, NOW)["condition"] == "expired"
    due = lineage_row(settings(), state(not_before=NOW - 70 * DAY, not_after=NOW + 20 * DAY), NOW)
    assert (due["condition"], due["due"]) == ("due", True)
    pending = lineage_row(settings(), LineageState(name="example.com"), NOW)
    assert (pending["condition"], pending["reason"]) == ("pending", "not obtained yet")


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_the_auth_file_is_read_and_checked(tmp_path: Path) -> None:
    users = _write(tmp_path / "users", "# comment\n\nops:s3cret:with colon\nci:x\n")
    assert read_users(users) == {"ops": b"s3cret:with colon", "ci": b"x"}
    cases = {
        "readable": (_write(tmp_path / "a", "ops:x\n", 0o640), "chmod 600"),
        "empty": (_write(tmp_path / "b", "# nobody\n"), "names no user"),
        "malformed": (_write(tmp_path / "c", "ops\n"), "line 1 is not user:password"),
        "missing": (tmp_path / "none", "cannot be read"),
    }
    for path, expected in cases.values():
        with pytest.raises(ConfigError, match=expected) as caught:
            read_users(path)
        assert caught.value.settings == ("metrics_auth",)
    link = tmp_path / "link"
    link.symlink_to(users)
    with pytest.raises(ConfigError, match="is a symbolic link"):
        read_users(link)  # never followed


def test_basic_auth_checks_user_and_password() -> None:
    auth = BasicAuth({"ops": b"s3cret"})

    def header(text: str) -> str:
        return "Basic " + base64.b64encode(text.encode()).decode()

    assert auth.allows(header("ops:s3cret"))
    assert auth.allows("basic " + header("ops:s3cret")[6:])  # the scheme is case-blind
    for bad in (
        None,
        "",
        header("ops:wrong"),
        header("other:s3cret"),
        header("ops"),
        "Basic ***",
        "Bearer abc",
    ):
        assert not auth.allows(bad), bad


class _Manager:
    """What StatusSource reads of a Manager; counts how often storage is listed."""

    def __init__(self) -> None:
        from fakes import FakeClock

        from certherd.storage import MemoryStorage

        self.clock = FakeClock()
        self.storage = MemoryStorage()
        self.listed = 0
        self.gate: asyncio.Event | None = None

    async def lineages(self) -> list[str]:
        self.listed += 1
        if self.gate is not None:
            await self.gate.wait()
        return ["example.com"]

    async def store(self) -> None:
        from certherd.storage.layout import renewal_settings

        await self.storage.write(renewal_settings("example.com"), settings().to_json())
        await state().save(self.storage)


class _Daemon:
    def __init__(self) -> None:
        from certherd.daemon.loop import DaemonStatus

        self.manager = _Manager()
        self.status = DaemonStatus()

    def health(self) -> str | None:
        return None


async def test_storage_is_read_at_most_every_few_seconds_whatever_the_viewers() -> None:
    from certherd.daemon.status import FRESH_FOR, StatusSource

    now = [100.0]
    daemon = _Daemon()
    source = StatusSource(daemon, monotonic=lambda: now[0])  # type: ignore[arg-type]
    await daemon.manager.store()
    daemon.manager.gate = asyncio.Event()
    viewers = [asyncio.ensure_future(source.document()) for _ in range(20)]
    await asyncio.sleep(0)
    daemon.manager.gate.set()
    documents = await asyncio.gather(*viewers)
    assert daemon.manager.listed == 1  # twenty viewers at once: one read
    assert documents[0]["lineages"][0]["name"] == "example.com"
    assert documents[0]["healthy"] is True
    await source.document()
    assert daemon.manager.listed == 1  # still fresh
    now[0] += FRESH_FOR
    await source.document()
    assert daemon.manager.listed == 2
