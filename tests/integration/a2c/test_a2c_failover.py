"""Fail-over between a certificate's CAs against real servers: Pebble and acme2certifier
side by side, one lineage listing both (each CA with its own account and roots).

- the first CA down (a relay in front of Pebble, stopped): the lineage is obtained from
  the second, the state records it, ``show`` says so; the relay started again, the next
  renewal (forced) is back on the first CA;
- the first CA answering 429 rateLimited to newOrder (the unit tests' hostile server,
  behind a real HTTP listener): the second issues;
- a validation failure on our side (nothing serves the challenge): no fail-over, the
  second CA is never asked.

Both CAs validate http-01 on 127.0.0.1:80 (Pebble is started with that port), so these run
as root, in the test's own network namespace, as CI does.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click.testing
import pytest
from a2c_helpers import CONTACT, unique_name
from cryptography import x509
from tests.servers.acme2certifier import Acme2CertifierServer
from tests.servers.relay import HostileHttpServer, TcpRelay
from tests.unit.fakes import PEM_CHAIN, HostileAcmeServer, Reply, problem

from certherd.app import Certherd, Event
from certherd.challenges.options import solver_from_table
from certherd.challenges.spec import SecretRef
from certherd.errors import (
    AuthorizationFailedError,
    CaFailoverError,
    CertherdError,
    ConfigError,
    UnsafeResponseError,
)
from certherd.settings import CaSettings, EabSettings, LineageSettings, NotifyTarget
from certherd.testing.pebble import PebbleServer

pytestmark = pytest.mark.integration

EMAIL = CONTACT.removeprefix("mailto:")
HTTP_80 = [{"kind": "http", "listen": "80"}]


@pytest.fixture(scope="module")
def pebble(pebble_factory: Callable[..., PebbleServer]) -> PebbleServer:
    """Pebble validating http-01 on port 80, where acme2certifier validates too."""
    return pebble_factory(http_port=80, nonce_reject_percent=0, authz_reuse_percent=0)


@pytest.fixture
def relay(pebble: PebbleServer) -> Iterator[TcpRelay]:
    """Pebble's listener behind a relay the test can stop (the CA is down) and start."""
    parts = urlsplit(pebble.directory_url)
    relay = TcpRelay((str(parts.hostname), int(parts.port or 443))).start()
    yield relay
    relay.stop()


def through(relay: TcpRelay, pebble: PebbleServer) -> str:
    """Pebble's directory URL through ``relay`` (the other URLs go to Pebble itself)."""
    parts = urlsplit(pebble.directory_url)
    return parts._replace(netloc=f"{parts.hostname}:{relay.port}").geturl()


@pytest.fixture
def hostile() -> Iterator[tuple[HostileAcmeServer, HostileHttpServer]]:
    """The scripted hostile ACME server of the unit tests on a real loopback listener."""
    listener = HostileHttpServer(None)
    script = HostileAcmeServer(base_url=listener.base_url)
    listener.handler = script
    listener.start()
    yield script, listener
    listener.stop()
    assert not listener.errors, listener.errors  # its protocol checks held


class JsonReceiver:
    """A local HTTP receiver of apprise's ``json://`` notifications."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        got = self.posts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hooks"


@pytest.fixture
def receiver() -> Iterator[JsonReceiver]:
    got = JsonReceiver()
    threading.Thread(target=got.server.serve_forever, daemon=True).start()
    yield got
    got.server.shutdown()
    got.server.server_close()


@pytest.fixture
async def certherd(tmp_path: Path) -> AsyncIterator[tuple[Certherd, list[Event]]]:
    events: list[Event] = []
    async with Certherd(tmp_path / "config", on_event=events.append) as entry:
        yield entry, events


def a2c_ca(a2c: Acme2CertifierServer) -> CaSettings:
    return CaSettings(a2c.directory_url, ca_bundle=str(a2c.ca_bundle), email=EMAIL, agree_tos=True)


def issue_now(script: HostileAcmeServer) -> Callable[[x509.CertificateSigningRequest], bytes]:
    """The hostile server's CA issuing valid certificates for the CSR's names, now."""

    def issue(csr: x509.CertificateSigningRequest) -> bytes:
        names = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        now = dt.datetime.now(dt.UTC)
        leaf = script.ca.leaf(
            csr.public_key(),  # type: ignore[arg-type]
            names.value.get_values_for_type(x509.DNSName),
            not_before=now - dt.timedelta(hours=1),
            not_after=now + dt.timedelta(days=90),
        )
        return script.ca.pem(leaf)

    return issue


def failovers(events: list[Event]) -> list[str]:
    return [e.text for e in events if e.text.startswith("fail-over")]


def show(config_dir: Path, name: str, *options: str) -> Any:
    from certherd.cli.main import cli

    args = ["--config-dir", str(config_dir), "show", name, *options]
    result = click.testing.CliRunner().invoke(cli, args, prog_name="certherd")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if "--json" in options else result.stdout


async def test_the_first_ca_down_then_back(
    certherd: tuple[Certherd, list[Event]],
    tmp_path: Path,
    pebble: PebbleServer,
    relay: TcpRelay,
    acme2certifier: Acme2CertifierServer,
) -> None:
    entry, events = certherd
    first = through(relay, pebble)
    name = unique_name("failover")
    relay.stop()  # the first CA is down
    outcome = await entry.issue(
        [name],
        solvers=HTTP_80,
        directory_url=first,
        ca_bundle=str(pebble.ca_bundle),
        email=EMAIL,
        agree_tos=True,
        fallback_cas=[a2c_ca(acme2certifier)],
    )
    assert outcome.action == "issued", outcome
    settings, state = await entry.load(name)
    assert state.issued_by == acme2certifier.directory_url
    assert "Pebble" not in str(state.issuer)  # acme2certifier's own CA signed it
    told = failovers(events)
    assert len(told) == 2, told  # the step, then "issued by" (also to notify targets)
    assert first in told[0]
    assert acme2certifier.directory_url in told[-1]

    # show lists both CAs in order and names the one that issued.
    document = await asyncio.to_thread(show, tmp_path / "config", settings.name, "--json")
    assert [ca["directory_url"] for ca in document["cas"]] == [
        first,
        acme2certifier.directory_url,
    ]
    assert document["issued_by"] == acme2certifier.directory_url
    text = await asyncio.to_thread(show, tmp_path / "config", settings.name)
    marked = [line for line in text.splitlines() if "issued the live certificate" in line]
    assert len(marked) == 1
    assert acme2certifier.directory_url in marked[0]

    # The first CA is back: the next renewal goes to it again.
    relay.start()
    events.clear()
    (renewed,) = await entry.renew([settings.name], force=True)
    assert renewed.action == "renewed", renewed
    _, state = await entry.load(settings.name)
    assert state.issued_by == first
    assert "Pebble" in str(state.issuer)
    assert failovers(events) == []


async def test_the_first_ca_rate_limiting_fails_over(
    certherd: tuple[Certherd, list[Event]],
    pebble: PebbleServer,
    hostile: tuple[HostileAcmeServer, HostileHttpServer],
    receiver: JsonReceiver,
) -> None:
    entry, events = certherd
    script, listener = hostile
    script.hooks["/new-order"] = lambda seen: problem(
        "rateLimited",
        "too many certificates already issued for this exact set of identifiers",
        status=429,
        headers={"Retry-After": "86400"},
    )
    first = CaSettings(
        listener.base_url + "/directory", allow_http=True, email=EMAIL, agree_tos=True
    )
    second = CaSettings(pebble.directory_url, ca_bundle=str(pebble.ca_bundle), agree_tos=True)
    name = unique_name("ratelimited")
    settings = LineageSettings(
        name=name,
        names=(name,),
        directory_url=first.directory_url,
        solvers=(solver_from_table(HTTP_80[0]),),
        notify=(NotifyTarget(SecretRef("value"), receiver.url),),
    ).with_cas([first, second])  # a plain-HTTP CA (allow_http): only the settings say it
    outcome = await entry.issue_lineage(settings)
    assert outcome.action == "issued", outcome
    _, state = await entry.load(outcome.lineage)
    assert state.issued_by == pebble.directory_url
    assert len(script.requests_to("/new-order", "POST")) == 1  # asked once, refused
    told = failovers(events)
    assert len(told) == 2, told
    assert "too many certificates" in told[0]
    (post,) = receiver.posts  # the notify targets hear of it (apprise, json://)
    assert "fail-over" in post["title"]
    assert "too many certificates" in post["message"]
    assert pebble.directory_url in post["message"]


async def test_a_challenge_not_served_does_not_fail_over(
    certherd: tuple[Certherd, list[Event]],
    tmp_path: Path,
    pebble: PebbleServer,
    hostile: tuple[HostileAcmeServer, HostileHttpServer],
) -> None:
    entry, events = certherd
    script, listener = hostile
    webroot = tmp_path / "webroot"  # nothing serves it: the CA cannot reach our answer
    webroot.mkdir()
    second = CaSettings(
        listener.base_url + "/directory", allow_http=True, email=EMAIL, agree_tos=True
    )
    with pytest.raises(CertherdError) as caught:
        await entry.issue(
            [unique_name("unserved")],
            solvers=[{"kind": "webroot", "path": str(webroot)}],
            directory_url=pebble.directory_url,
            ca_bundle=str(pebble.ca_bundle),
            agree_tos=True,
            fallback_cas=[second],
        )
    assert isinstance(caught.value, AuthorizationFailedError), repr(caught.value)
    assert not isinstance(caught.value, CaFailoverError)
    assert script.seen == []  # the second CA was never asked: one CA, one order
    assert failovers(events) == []


async def test_replaces_and_renewal_info_go_only_to_the_ca_that_issued(
    certherd: tuple[Certherd, list[Event]],
    pebble: PebbleServer,
    relay: TcpRelay,
    hostile: tuple[HostileAcmeServer, HostileHttpServer],
) -> None:
    entry, _ = certherd
    script, listener = hostile
    script.directory["renewalInfo"] = script.url("/renewal-info")  # it speaks RFC 9773
    script.issue = issue_now(script)
    name = unique_name("replaces")
    first = CaSettings(through(relay, pebble), ca_bundle=str(pebble.ca_bundle), agree_tos=True)
    second = CaSettings(listener.base_url + "/directory", allow_http=True, agree_tos=True)
    settings = LineageSettings(
        name=name, names=(name,), directory_url="", solvers=(solver_from_table(HTTP_80[0]),)
    ).with_cas([first, second])
    assert (await entry.issue_lineage(settings)).action == "issued"
    _, state = await entry.load(name)
    assert state.issued_by == first.directory_url
    assert state.certificate_id is not None

    relay.stop()  # the first CA is down: the second renews, without naming Pebble's certificate
    (renewed,) = await entry.renew([name], force=True)
    assert renewed.action == "renewed", renewed
    _, state = await entry.load(name)
    assert state.issued_by == second.directory_url
    (order,) = script.requests_to("/new-order", "POST")
    assert "replaces" not in order.payload  # RFC 9773 §5: a certificate of the CA asked
    assert not [s for s in script.seen if s.path.startswith("/renewal-info")]

    # Its own certificate now: renewal info is asked of it, and `replaces` names it.
    (again,) = await entry.renew([name], force=True)
    assert again.action == "renewed", again
    assert [s for s in script.seen if s.path.startswith("/renewal-info")]
    orders = script.requests_to("/new-order", "POST")
    assert orders[-1].payload.get("replaces") == state.certificate_id


@pytest.mark.parametrize("binding", ["wrong key", "none"])
async def test_eab_refused_by_the_first_ca_fails_over(
    certherd: tuple[Certherd, list[Event]],
    pebble: PebbleServer,
    acme2certifier_eab: Acme2CertifierServer,
    binding: str,
) -> None:
    entry, events = certherd
    kid = next(iter(acme2certifier_eab.eab))
    eab = None
    if binding == "wrong key":  # a key the CA does not accept: unauthorized (RFC 8555 §7.3.4)
        eab = EabSettings(kid, SecretRef("value"), "d3Jvbmcta2V5LW9mLXRoZS10ZXN0LXdyb25nLWtleQ")
    first = replace(a2c_ca(acme2certifier_eab), eab=eab)
    second = CaSettings(pebble.directory_url, ca_bundle=str(pebble.ca_bundle), agree_tos=True)
    name = unique_name("eab")
    settings = LineageSettings(
        name=name, names=(name,), directory_url="", solvers=(solver_from_table(HTTP_80[0]),)
    ).with_cas([first, second])
    outcome = await entry.issue_lineage(settings)
    assert outcome.action == "issued", outcome
    _, state = await entry.load(name)
    assert state.issued_by == pebble.directory_url
    told = failovers(events)
    assert len(told) == 2, told
    assert acme2certifier_eab.directory_url in told[0]


async def test_a_config_error_at_the_next_ca_stays_a_config_error(
    certherd: tuple[Certherd, list[Event]],
    pebble: PebbleServer,
    relay: TcpRelay,
    acme2certifier: Acme2CertifierServer,
) -> None:
    entry, events = certherd
    relay.stop()  # the first CA is down; the second lacks agree_tos: the user's to fix (exit 2)
    first = CaSettings(through(relay, pebble), ca_bundle=str(pebble.ca_bundle), agree_tos=True)
    second = replace(a2c_ca(acme2certifier), agree_tos=False)
    name = unique_name("config")
    settings = LineageSettings(
        name=name, names=(name,), directory_url="", solvers=(solver_from_table(HTTP_80[0]),)
    ).with_cas([first, second])
    with pytest.raises(ConfigError, match="agree_tos"):
        await entry.issue_lineage(settings)
    assert len(failovers(events)) == 1  # what the first CA did is told as a step


async def test_a_certificate_stored_before_a_later_step_failed_is_not_ordered_elsewhere(
    certherd: tuple[Certherd, list[Event]],
    pebble: PebbleServer,
    hostile: tuple[HostileAcmeServer, HostileHttpServer],
) -> None:
    entry, events = certherd
    script, listener = hostile
    script.issue = issue_now(script)

    def certificate(seen: Any) -> Reply:
        assert script.csr is not None
        link = f'<{script.url("/cert/alt")}>;rel="alternate"'
        return Reply(200, script.issue(script.csr), {"Link": link}, PEM_CHAIN)

    script.hooks["/cert/1"] = certificate  # issued and stored; then its alternate is garbage
    script.hooks["/cert/alt"] = lambda seen: Reply(200, b"not a chain", {}, PEM_CHAIN)
    first = CaSettings(listener.base_url + "/directory", allow_http=True, agree_tos=True)
    second = CaSettings(pebble.directory_url, ca_bundle=str(pebble.ca_bundle), agree_tos=True)
    name = unique_name("stored")
    settings = LineageSettings(
        name=name,
        names=(name,),
        directory_url="",
        solvers=(solver_from_table(HTTP_80[0]),),
        preferred_chain="Another Root",
    ).with_cas([first, second])
    with pytest.raises(UnsafeResponseError):
        await entry.issue_lineage(settings)
    assert failovers(events) == []  # not ordered again at the second CA

    outcome = await entry.issue_lineage(settings)  # again: the stored version made live
    assert outcome.action == "issued", outcome
    assert "no new order" in outcome.reason
    assert len(script.requests_to("/new-order", "POST")) == 1
    _, state = await entry.load(name)
    assert state.issued_by == first.directory_url
