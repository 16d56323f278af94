"""``issue --notify-env`` / ``--notify-file`` (issue 14 item 2) as a user runs them: the
URL is kept as a reference (never on the command line, never shown), a failed order is
posted to a local HTTP receiver once per interval, and ``show`` says where the URL
comes from."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import json_receiver
from e2e_runner import Certherd, PebbleFactory

TOKEN = "tok3n-of-the-webhook-0123"


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """apprise's json:// posts, as received."""
    with json_receiver(f"hooks/{TOKEN}") as received:
        yield received


def test_a_failed_issue_is_posted_once_and_the_url_never_shown(
    pebble_factory: PebbleFactory, receiver: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    # No authorization reused: the forced reissue below must prove the name again.
    scratch = tmp_path / "runs"
    scratch.mkdir()
    certherd = Certherd(tmp_path / "config", pebble_factory(authz_reuse_percent=0), scratch)
    url, posts = receiver
    env = {"CERTHERD_TEST_NOTIFY": url}
    notify = ["--notify-env", "CERTHERD_TEST_NOTIFY"]
    # Failing first: the account holds no valid authorization a CA could reuse.
    failing = ["--solver-hook", "http-01=/bin/false", *certherd.ca, *notify]
    for _ in range(2):  # the second failure within the interval is not told again
        result = certherd("issue", "-d", "127.0.0.1", *failing, env=env, check=False)
        assert result.code == 1, result.describe()
        assert TOKEN not in result.stdout + result.stderr
    [post] = posts
    assert post["title"] == "certherd: renewal failed: 127.0.0.1"
    assert "/bin/false" in post["message"]

    certherd(
        "--json", "issue", "-d", "127.0.0.1", *certherd.http, *certherd.ca, *notify,
        "--notify-timeout", "7.5", env=env,
    )  # fmt: skip
    shown = certherd("--json", "show", "127.0.0.1", env=env)
    assert shown.json()["notify"] == [{"env": "CERTHERD_TEST_NOTIFY"}]
    assert shown.json()["notify_timeout"] == 7.5
    assert TOKEN not in shown.stdout
    human = certherd("show", "127.0.0.1", env=env).stdout
    assert "from the environment variable CERTHERD_TEST_NOTIFY" in human
    # The first success after the failures (the order they left was recorded) is told.
    assert [p["title"] for p in posts] == [
        "certherd: renewal failed: 127.0.0.1",
        "certherd: renewal recovered: 127.0.0.1",
    ]


def test_a_notify_timeout_out_of_range_is_one_line(certherd: Certherd) -> None:
    result = certherd(
        "issue", "-d", "range.test", *certherd.http, *certherd.ca, "--notify-timeout", "0",
        check=False,
    )  # fmt: skip
    assert result.code == 2, result.describe()
    assert "--notify-timeout" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_notify_file_that_cannot_be_read_is_refused_before_any_order(
    certherd: Certherd, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.url"
    args = ["--notify-file", str(missing)]
    result = certherd("issue", "-d", "127.0.0.1", *certherd.http, *certherd.ca, *args, check=False)
    assert result.code == 2, result.describe()
    assert f"notify URL comes from the file {missing}, which cannot be read" in result.stderr
