"""certherd's AcmeClient against acme2certifier: directory, issuance, profiles, ARI, sync facade.

acme2certifier 0.46 differs from Pebble in ways a client must cope with, and these tests hold
certherd to them without working around them: an extra random directory key; profiles checked
but not echoed in the order; ``replaces`` accepted and ignored; ARI with a Retry-After of a
day; ``newAuthz`` listed but answered 404; validation run inside the challenge POST and a
synchronous finalize. EAB is in test_a2c_eab.py, revocation in test_a2c_revocation.py.

Its validator fetches http-01 from ``127.0.0.1:80`` (every name resolves to 127.0.0.1), so the
standalone solver listens there: these tests run as root, as CI does.
"""

from __future__ import annotations

import random
import re

import pytest
from a2c_helpers import (
    CONTACT,
    PostRecorder,
    http_solver,
    issue,
    issuing_ca,
    new_client,
    registered,
    san_values,
    unique_name,
)
from cryptography import x509
from tests.servers.acme2certifier import DEFAULT_PROFILES, Acme2CertifierServer

from certherd.acme import jws
from certherd.acme.messages import Identifier, Status
from certherd.acme.sync import SyncAcmeClient
from certherd.crypto.ari import certificate_id, pick_in_window
from certherd.crypto.keys import generate_key
from certherd.errors import (
    ConfigError,
    FeatureUnsupportedError,
    InvalidProfileError,
    MalformedError,
    ProblemError,
)
from certherd.manager.obtain import obtain_certificate
from certherd.testing.pki import MiniCA

pytestmark = pytest.mark.integration

KNOWN_DIRECTORY_KEYS = frozenset(
    {"newNonce", "newAccount", "newOrder", "newAuthz", "revokeCert", "keyChange", "meta"}
    | {"renewalInfo"}  # RFC 9773 §4
)


# -- directory (RFC 8555 §7.1.1, draft-ietf-acme-profiles §3, RFC 9773 §4) ---------------


async def test_directory_parses_profiles_and_renewal_info(
    acme2certifier: Acme2CertifierServer,
) -> None:
    async with new_client(acme2certifier) as client:
        directory = await client.directory()

    assert dict(directory.meta.profiles) == dict(DEFAULT_PROFILES)
    assert directory.meta.profiles["shortlived"] == "https://certherd.test/profiles/shortlived"
    assert directory.renewal_info == f"{acme2certifier.base_url}/acme/renewal-info"
    assert directory.new_authz == f"{acme2certifier.base_url}/acme/new-authz"
    assert directory.new_order.startswith(f"{acme2certifier.base_url}/")
    assert directory.meta.external_account_required is False


async def test_unknown_directory_key_is_kept_in_raw(acme2certifier: Acme2CertifierServer) -> None:
    async with new_client(acme2certifier) as client:
        directory = await client.directory()

    # acme2certifier adds one random key (as Boulder does) so clients keep unknown ones.
    extra = set(directory.raw) - KNOWN_DIRECTORY_KEYS
    assert len(extra) == 1, directory.raw
    (key,) = extra
    assert re.fullmatch(r"[0-9a-f]{32}", key)
    assert str(directory.raw[key]).startswith("https://community.letsencrypt.org/")
    # Unknown meta fields are kept as well.
    assert directory.meta.raw["name"] == "acme2certifier"


# -- issuance (RFC 8555 §7.4, §8.3; RFC 8738 IP identifiers; profiles) ------------------


async def test_issues_for_two_dns_names_over_http01(acme2certifier: Acme2CertifierServer) -> None:
    names = [unique_name("first"), unique_name("second")]
    async with registered(acme2certifier) as client:
        before = len(client.transport.trace)
        issued, solver = await issue(client, names)
        sent = list(client.transport.trace)[before:]

    leaf = issued.chain.leaf
    assert issued.order.status is Status.VALID
    assert set(issued.order.identifiers) == {Identifier.dns(name) for name in names}
    assert san_values(leaf) == set(names)
    assert solver.requests_served >= 2  # the real validator fetched each token
    # acme2certifier validates inside the challenge POST (answering "valid") and finalizes
    # synchronously: the client must not poll the authorizations or the order.
    assert sent.count(("POST", "challenge http-01")) == 2
    assert sent.count(("POST", "authorization")) == 2  # the initial fetch of each, no poll
    assert sent.count(("POST", "order")) == 0
    assert sent.count(("POST", "finalize")) == 1
    leaf.verify_directly_issued_by(issuing_ca(acme2certifier))
    # acme2certifier puts the first name in the subject CN.
    common_names = leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    assert [attribute.value for attribute in common_names] == [names[0]]


async def test_issues_for_an_ip_identifier_with_the_shortlived_profile(
    acme2certifier: Acme2CertifierServer,
) -> None:
    recorder = PostRecorder()
    async with registered(acme2certifier, recorder) as client:
        directory = await client.directory()
        issued, solver = await issue(client, ["127.0.0.1"], profile="shortlived")

    assert issued.order.status is Status.VALID
    assert issued.order.identifiers == (Identifier.ip("127.0.0.1"),)
    assert san_values(issued.chain.leaf) == {"127.0.0.1"}
    assert solver.requests_served >= 1
    (sent,) = recorder.to(directory.new_order)
    assert sent.payload["profile"] == "shortlived"
    assert sent.payload["identifiers"] == [{"type": "ip", "value": "127.0.0.1"}]
    # acme2certifier 0.46 checks the profile but does not echo it in the order.
    assert issued.order.profile is None
    assert "profile" not in issued.order.raw


async def test_unknown_profile_is_refused_before_new_order(
    acme2certifier: Acme2CertifierServer,
) -> None:
    recorder = PostRecorder()
    async with registered(acme2certifier, recorder) as client:
        directory = await client.directory()
        before = len(client.transport.trace)
        with pytest.raises(ConfigError) as caught:
            await client.new_order([unique_name()], profile="longlived")
        after = len(client.transport.trace)

    message = str(caught.value)
    assert "'longlived'" in message
    assert "classic" in message
    assert "shortlived" in message
    assert after == before  # no request at all: not even a nonce
    assert recorder.to(directory.new_order) == []


async def test_server_refusal_of_a_profile_is_an_invalid_profile_error(
    acme2certifier: Acme2CertifierServer,
) -> None:
    # AcmeClient.new_order never sends a profile the directory does not list, so the
    # server's own check is reached through the public wire layer the client is built on.
    async with registered(acme2certifier) as client:
        directory = await client.directory()
        account_url = client.account_url
        assert account_url is not None
        payload = {"identifiers": [{"type": "dns", "value": unique_name()}], "profile": "nope"}

        def body(nonce: str) -> dict[str, str]:
            return jws.sign(
                client.account_key, payload, url=directory.new_order, nonce=nonce, kid=account_url
            )

        with pytest.raises(InvalidProfileError) as caught:
            await client.transport.post(directory.new_order, body, "newOrder")

    assert caught.value.type == "urn:ietf:params:acme:error:invalidProfile"
    assert caught.value.url == directory.new_order
    assert caught.value.detail  # str() carries the CA's detail
    assert caught.value.detail in str(caught.value)


async def test_new_authorization_404_means_unsupported(
    acme2certifier: Acme2CertifierServer,
) -> None:
    async with registered(acme2certifier) as client:
        with pytest.raises(FeatureUnsupportedError, match=r"does not serve it \(404\)") as caught:
            await client.new_authorization(unique_name("preauth"))

    # The listed newAuthz URL is not routed: the 404 problem is kept as the cause.
    cause = caught.value.__cause__
    assert isinstance(cause, ProblemError)
    assert cause.problem.status == 404


# -- ARI (RFC 9773) -----------------------------------------------------------------------


async def test_renewal_info_window_lies_within_the_certificate_validity(
    acme2certifier: Acme2CertifierServer,
) -> None:
    async with registered(acme2certifier) as client:
        issued, _ = await issue(client, [unique_name("ari")])
        leaf = issued.chain.leaf
        info = await client.renewal_info(leaf)

    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    assert not_before <= info.start < info.end <= not_after
    assert info.retry_after == 86400
    assert "suggestedWindow" in info.raw
    for seed in range(20):
        picked = pick_in_window(info.start, info.end, random.Random(seed))
        assert info.start <= picked < info.end
    assert info.start <= pick_in_window(info.start, info.end) < info.end


async def test_renewal_info_for_a_certificate_it_never_issued_is_malformed(
    acme2certifier: Acme2CertifierServer,
) -> None:
    _, stranger = MiniCA.create("certherd stranger CA").issue_server([unique_name()], [])
    async with new_client(acme2certifier) as client:
        with pytest.raises(MalformedError) as caught:
            await client.renewal_info(stranger)

    assert caught.value.url.endswith("/" + certificate_id(stranger))
    # A well-formed certID it does not know: 404 with type malformed ("certificate not found").
    assert caught.value.problem.status == 404


async def test_renewal_order_carries_replaces(acme2certifier: Acme2CertifierServer) -> None:
    recorder = PostRecorder()
    names = [unique_name("renew")]
    async with registered(acme2certifier, recorder) as client:
        directory = await client.directory()
        old, _ = await issue(client, names)
        old_id = certificate_id(old.chain.leaf)
        new, _ = await issue(client, names, replaces=old_id)

    first, second = recorder.to(directory.new_order)
    assert "replaces" not in first.payload
    assert second.payload["replaces"] == old_id
    assert new.order.status is Status.VALID
    assert new.order.url != old.order.url
    assert new.chain.leaf.serial_number != old.chain.leaf.serial_number
    assert san_values(new.chain.leaf) == set(names)
    # acme2certifier 0.46 accepts `replaces` and ignores it: the order does not echo it.
    assert new.order.replaces is None


# -- the blocking facade ------------------------------------------------------------------


def test_sync_client_issues_a_certificate(acme2certifier: Acme2CertifierServer) -> None:
    names = [unique_name("sync")]
    solver = http_solver()
    with SyncAcmeClient(
        acme2certifier.directory_url, generate_key(), ca_bundle=str(acme2certifier.ca_bundle)
    ) as client:
        account = client.register(contact=[CONTACT], agree_tos=True)
        issued = client.run(obtain_certificate(client.async_client, names, [solver]))
        info = client.renewal_info(issued.chain.leaf)

    assert account.status is Status.VALID
    assert issued.order.status is Status.VALID
    assert san_values(issued.chain.leaf) == set(names)
    assert solver.requests_served >= 1
    assert issued.chain.leaf.not_valid_before_utc <= info.start < info.end
    assert info.end <= issued.chain.leaf.not_valid_after_utc
