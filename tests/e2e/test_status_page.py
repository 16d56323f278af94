"""The status page of ``certherd run`` in a real browser (issue 14, item 3).

A daemon runs on certificates obtained from Pebble (two fine, one whose issuance failed
at the challenge), and headless Chromium (Debian's ``chromium``, driven by Playwright
with its ``executable_path``: no browser download) loads ``/`` from the daemon's metrics
listener: every certificate is listed with its names, CA, expiry and next renewal; the
failed one comes first, marked, with its error; the filter and the search narrow the
list; the timeline is drawn; no request leaves for another host. The screenshot goes to
docs/status-page.png when ``CERTHERD_SCREENSHOT`` is set (how the committed one was made).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e_helpers import forget_authorizations, wait_until
from e2e_runner import Certherd, PebbleFactory, Running
from playwright.sync_api import Browser
from tests.servers.net import free_port

from certherd.testing.pebble import PebbleServer

CHROMIUM = "/usr/bin/chromium"
LIFETIME = 90 * 86400
"""Let's Encrypt's lifetime: renewals planned at day 60, as users see them."""
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def fresh_authz(pebble_factory: PebbleFactory) -> PebbleServer:
    """A Pebble that never reuses an authorization: every renewal proves its names again."""
    return pebble_factory(authz_reuse_percent=0, certificate_validity_seconds=LIFETIME)


@pytest.fixture
def certherd(fresh_authz: PebbleServer, tmp_path: Path) -> Iterator[Certherd]:
    scratch = tmp_path / "runs"
    scratch.mkdir()
    runner = Certherd(tmp_path / "config", fresh_authz, scratch)
    yield runner
    runner.stop_all()


@pytest.fixture(scope="module")
def chromium_path() -> str:
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if found is None:
        pytest.fail("the status page tests need Chromium: apt-get install chromium")
    return found


@pytest.fixture
def browser(chromium_path: str) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # As root Chromium needs --no-sandbox (its sandbox refuses to run as root).
        # /dev/shm is small in containers: Chromium then uses /tmp for shared memory.
        args = ["--disable-dev-shm-usage", *(["--no-sandbox"] if os.geteuid() == 0 else [])]
        launched = playwright.chromium.launch(executable_path=chromium_path, args=args)
        try:
            yield launched
        finally:
            launched.close()


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _daemon(certherd: Certherd, *extra: str) -> tuple[str, Running]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    running = certherd.start("run", "--metrics", f"127.0.0.1:{port}", *extra)
    wait_until(lambda: _up(f"{base}/healthz"), 20, "the daemon's /healthz")
    return base, running


def _obtain(certherd: Certherd) -> None:
    """Three lineages from Pebble; broken.test's renewal then fails (its http-01 port is
    taken), as a renewal does when a web server took the port the solver needs."""
    for names in (("good-one.test", "www.good-one.test"), ("good-two.test",), ("broken.test",)):
        certherd.issue(*names)
    # (else Pebble may reuse broken.test's valid authorization: the renewal would pass)
    # (in a thread: Playwright's sync API keeps an event loop running in this one)
    server = certherd.server
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        thread.submit(
            forget_authorizations, certherd.config_dir, server.directory_url, server.ca_bundle
        ).result()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", certherd.server.options.http_port))
        squatter.listen()
        failed = certherd("renew", "--force", "broken.test", check=False)
    assert failed.code == 1, failed.describe()


def test_the_page_shows_every_certificate_and_the_failed_one_stands_out(
    certherd: Certherd, browser: Browser
) -> None:
    _obtain(certherd)
    base, running = _daemon(certherd)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))

    response = page.goto(f"{base}/")
    assert response.status == 200
    assert "default-src 'none'" in response.headers["content-security-policy"]
    page.wait_for_selector("body[data-loaded=true]", timeout=15000)

    rows = page.locator("#rows tr")
    assert rows.count() == 3
    names = [rows.nth(i).get_attribute("data-name") for i in range(3)]
    assert names[0] == "broken.test", names  # the failed one first
    assert sorted(names[1:]) == ["good-one.test", "good-two.test"]

    broken = page.locator('#rows tr[data-name="broken.test"]')
    assert broken.get_attribute("class") == "cond-failing"
    assert broken.locator(".badge").inner_text() == "failing"
    assert "address already in use" in broken.locator("td.error").inner_text()
    # It stands out: a red row, not the fine rows' background.
    fine = page.locator('#rows tr[data-name="good-one.test"]')
    broken_colour = broken.evaluate("row => getComputedStyle(row).backgroundColor")
    fine_colour = fine.evaluate("row => getComputedStyle(row).backgroundColor")
    assert broken_colour != fine_colour
    assert "need(s) attention" in page.locator("#summary").inner_text()

    good = fine.inner_text()
    assert "www.good-one.test" in good  # every name
    assert "localhost" in good or "127.0.0.1" in good  # the CA (Pebble's host)
    assert "UTC" in fine.locator("td.expiry").inner_text()
    reason = fine.locator("td.reason").inner_text()
    assert "not due until" in reason or "renewal window" in reason, reason  # and why
    assert fine.locator(".badge").inner_text() == "fine"

    # The timeline: bars for expiries and renewals, and the "now" line.
    assert page.locator("#timeline svg rect.bar-expiry").count() >= 1
    assert page.locator("#timeline svg rect.bar-renewal").count() >= 1
    assert page.locator("#timeline svg line.now").count() == 1

    if os.environ.get("CERTHERD_SCREENSHOT"):
        page.screenshot(path=str(DOCS / "status-page.png"), full_page=True)

    page.select_option("#filter", "failing")
    assert [rows.nth(i).get_attribute("data-name") for i in range(rows.count())] == ["broken.test"]
    page.select_option("#filter", "all")
    page.fill("#search", "www.good")
    assert [rows.nth(i).get_attribute("data-name") for i in range(rows.count())] == [
        "good-one.test"
    ]
    assert page.locator("#count").inner_text() == "1 of 3 shown"
    # A link can carry both: /?show=...&q=...
    page.goto(f"{base}/?show=attention&q=broken")
    page.wait_for_selector("body[data-loaded=true]", timeout=15000)
    assert page.locator("#rows tr").count() == 1
    assert page.locator("#rows tr").first.get_attribute("data-name") == "broken.test"

    assert errors == []
    assert requests
    assert all(url.startswith(f"{base}/") for url in requests), requests
    running.process.send_signal(signal.SIGTERM)
    assert running.wait(timeout=15).code == 0


def test_ca_text_is_shown_as_text_never_run(certherd: Certherd, browser: Browser) -> None:
    """A lineage name or CA error carrying markup (a hostile CA's problem detail) is
    written into the page as text: no element is made from it, no script runs."""
    certherd.issue("good-one.test")
    base, running = _daemon(certherd)
    answer = httpx.get(f"{base}/status.json", trust_env=False)
    # Compressed for a client that takes it (httpx asks, as browsers do).
    assert answer.headers["content-encoding"] in ("gzip", "deflate")
    real = answer.json()
    hostile = '<img src=x onerror="window.pwned=1">'
    row = {**real["lineages"][0], "condition": "failing", "failures": 1, "last_error": hostile}
    forged = json.dumps({**real, "lineages": [{**row, "names": [hostile]}]})
    page = browser.new_page()
    page.route(
        f"{base}/status.json",
        lambda route: route.fulfill(status=200, content_type="application/json", body=forged),
    )
    page.goto(f"{base}/")
    page.wait_for_selector("body[data-loaded=true]", timeout=15000)
    error = page.locator('#rows tr[data-name="good-one.test"] td.error')
    assert error.inner_text() == hostile
    assert page.locator("#rows img").count() == 0
    assert page.evaluate("window.pwned") is None
    running.process.send_signal(signal.SIGTERM)
    assert running.wait(timeout=15).code == 0


def test_basic_auth_from_a_file(certherd: Certherd, browser: Browser, tmp_path: Path) -> None:
    users = tmp_path / "status-users"
    users.write_text("# who may look\nops:correct horse battery\n")
    users.chmod(0o644)
    listen = f"127.0.0.1:{free_port()}"
    refused = certherd("run", "--metrics", listen, "--metrics-auth", str(users), check=False)
    assert refused.code == 2, refused.describe()
    errors = refused.stderr.strip().splitlines()
    assert len(errors) == 1, refused.stderr  # one line, nothing started or stopped
    assert "chmod 600" in errors[0], errors
    assert "--metrics-auth" in errors[0], errors
    users.chmod(0o600)
    alone = certherd("run", "--metrics-auth", str(users), check=False)
    assert alone.code == 2, alone.describe()
    assert "give --metrics too" in alone.stderr

    certherd.issue("good-one.test")
    base, running = _daemon(certherd, "--metrics-auth", str(users))
    for path in ("/", "/status.json", "/metrics"):
        answer = httpx.get(f"{base}{path}", trust_env=False)
        assert answer.status_code == 401, path
        assert answer.headers["www-authenticate"].startswith("Basic ")
        assert "good-one.test" not in answer.text
        wrong = httpx.get(f"{base}{path}", auth=("ops", "wrong"), trust_env=False)
        assert wrong.status_code == 401, path
    assert httpx.get(f"{base}/healthz", trust_env=False).status_code == 200  # probes stay open
    metrics = httpx.get(f"{base}/metrics", auth=("ops", "correct horse battery"), trust_env=False)
    assert metrics.status_code == 200

    context = browser.new_context(
        http_credentials={"username": "ops", "password": "correct horse battery"}
    )
    page = context.new_page()
    page.goto(f"{base}/")
    page.wait_for_selector("body[data-loaded=true]", timeout=15000)
    assert page.locator('#rows tr[data-name="good-one.test"]').count() == 1
    context.close()
    running.process.send_signal(signal.SIGTERM)
    assert running.wait(timeout=15).code == 0
