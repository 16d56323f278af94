"""The blocking facade ``SyncAcmeClient`` against a real Pebble, from plain (non-async) tests."""

from __future__ import annotations

import threading

import pytest
from acme_helpers import count, http_solver, unique_name

from certherd.acme.certificates import RevocationReason
from certherd.acme.messages import Status
from certherd.acme.sync import SyncAcmeClient
from certherd.crypto.certs import describe_certificate
from certherd.crypto.keys import generate_key
from certherd.errors import AccountDoesNotExistError, FeatureUnsupportedError
from certherd.manager.obtain import obtain_certificate
from certherd.testing.pebble import PebbleServer

pytestmark = pytest.mark.integration


def _sync_client(pebble: PebbleServer, **options: object) -> SyncAcmeClient:
    return SyncAcmeClient(
        pebble.directory_url, generate_key(), ca_bundle=str(pebble.ca_bundle), **options
    )


def test_sync_register_order_issue_and_list(pebble: PebbleServer) -> None:
    names = [unique_name("sync-a"), unique_name("sync-b")]
    with _sync_client(pebble) as client:
        account = client.register(contact=["sync@certherd.test"], agree_tos=True)
        assert client.account_url == account.url
        pending = client.new_order([unique_name("sync-pending")])
        issued = client.run(obtain_certificate(client.async_client, names, [http_solver(pebble)]))
        listed = client.list_orders()
        fetched = client.fetch_order(issued.order.url)
        client.revoke(issued.chain.leaf, reason=RevocationReason.SUPERSEDED)
        with pytest.raises(FeatureUnsupportedError):
            client.renewal_info(issued.chain.leaf)
        trace = list(client.async_client.transport.trace)
    assert account.status is Status.VALID
    assert account.contact == ("mailto:sync@certherd.test",)
    assert pending.status is Status.PENDING
    assert sorted(describe_certificate(issued.chain.leaf).dns_names) == sorted(names)
    assert sorted(listed) == sorted([pending.url, issued.order.url])
    assert fetched.status is Status.VALID
    assert pebble.cert_status(issued.chain.leaf.serial_number)["Status"] == "Revoked"
    assert count(trace, "GET", "directory") == 1
    assert count(trace, "HEAD", "newNonce") >= 1


def test_sync_errors_are_raised_in_the_caller(pebble: PebbleServer) -> None:
    with _sync_client(pebble) as client, pytest.raises(AccountDoesNotExistError):
        client.find_account()


def test_sync_close_stops_the_background_thread(pebble: PebbleServer) -> None:
    before = {t.ident for t in threading.enumerate() if t.name == "certherd-acme"}
    client = _sync_client(pebble)
    client.register(agree_tos=True)
    assert client.fetch_account().url == client.account_url
    running = {t.ident for t in threading.enumerate() if t.name == "certherd-acme"} - before
    client.close()
    client.close()  # a second close is harmless
    after = {t.ident for t in threading.enumerate() if t.name == "certherd-acme"} - before
    assert len(running) == 1
    assert after == set()


def test_sync_calls_from_several_threads(pebble: PebbleServer) -> None:
    with _sync_client(pebble) as client:
        client.register(agree_tos=True)
        results: list[str] = []
        errors: list[BaseException] = []

        def order() -> None:
            try:
                results.append(client.new_order([unique_name("thread")]).url)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=order) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        listed = client.list_orders()
    assert errors == []
    assert len(set(results)) == 4
    assert set(results) <= set(listed)
