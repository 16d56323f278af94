"""Accounts against a real Pebble: create, find, update, key rollover, deactivate, EAB, key types.

RFC 8555 §7.3 (accounts), §7.3.4 (External Account Binding), §7.3.5 (key change),
§7.3.6 (deactivation), §6.2 (JWS algorithms).
"""

from __future__ import annotations

import secrets

import pytest
from acme_helpers import (
    ACME_ERROR,
    PebbleFactory,
    free_http_port,
    http_solver,
    new_client,
    registered,
    unique_name,
)

from certherd.acme import jws
from certherd.acme.jws import ExternalAccountBinding
from certherd.acme.messages import Status
from certherd.crypto.encoding import b64url
from certherd.crypto.keys import KeyType, generate_key, public_key_equal
from certherd.errors import (
    AccountDoesNotExistError,
    ConfigError,
    InvalidContactError,
    MalformedError,
    ProblemError,
    UnauthorizedError,
    UnsupportedContactError,
)
from certherd.manager.obtain import obtain_certificate
from certherd.testing.pebble import PebbleServer

pytestmark = pytest.mark.integration

EAB_KID = "kid-certherd"
EAB_KEY = b64url(secrets.token_bytes(32))


@pytest.fixture(scope="module")
def eab_pebble(pebble_factory: PebbleFactory) -> PebbleServer:
    """A Pebble that requires External Account Binding with one known kid."""
    return pebble_factory(eab_keys={EAB_KID: EAB_KEY}, http_port=free_http_port())


# -- create and find (RFC 8555 §7.3, §7.3.1) ----------------------------------------


async def test_register_with_contacts_and_terms(pebble: PebbleServer) -> None:
    async with new_client(pebble) as client:
        account = await client.register(
            contact=["admin@certherd.test", "mailto:ops@certherd.test"], agree_tos=True
        )
        assert client.account_url == account.url
        fetched = await client.fetch_account()
    assert account.url.startswith(pebble.directory_url.removesuffix("/dir") + "/")
    assert account.status is Status.VALID
    # A bare address became a mailto: URI (RFC 8555 §7.3).
    assert account.contact == ("mailto:admin@certherd.test", "mailto:ops@certherd.test")
    assert fetched.contact == account.contact
    assert fetched.url == account.url
    assert account.orders is not None
    # Pebble echoes the account key (as a JWK) but not termsOfServiceAgreed.
    assert account.raw["key"] == jws.jwk_for(client.account_key)
    assert account.terms_of_service_agreed is None


async def test_register_without_agreeing_to_the_terms(pebble: PebbleServer) -> None:
    """Pebble 2.4 answers with the pre-RFC type ``agreementRequired``; it is kept as sent."""
    async with new_client(pebble) as client:
        with pytest.raises(ProblemError, match="terms of service") as caught:
            await client.register(agree_tos=False)
        assert client.account_url is None
    assert type(caught.value) is ProblemError  # no subclass: RFC 8555 has no such type
    assert caught.value.type == ACME_ERROR + "agreementRequired"
    assert caught.value.status == 403


@pytest.mark.parametrize(
    ("contact", "error", "urn"),
    [
        ("tel:+15555550100", UnsupportedContactError, "unsupportedContact"),
        ("mailto:not an address", InvalidContactError, "invalidContact"),
    ],
)
async def test_register_with_a_refused_contact(
    pebble: PebbleServer, contact: str, error: type[ProblemError], urn: str
) -> None:
    async with new_client(pebble) as client:
        with pytest.raises(error) as caught:
            await client.register(contact=[contact], agree_tos=True)
    assert caught.value.type == ACME_ERROR + urn
    assert caught.value.status == 400


async def test_register_again_with_the_same_key_returns_the_same_account(
    pebble: PebbleServer,
) -> None:
    key = generate_key()
    async with registered(pebble, key) as first:
        url = first.account_url
    async with new_client(pebble, key) as second:
        account = await second.register(agree_tos=True)
    assert account.url == url


async def test_find_existing_account_by_key(pebble: PebbleServer) -> None:
    key = generate_key()
    async with registered(pebble, key) as client:
        url = client.account_url
    async with new_client(pebble, key) as finder:
        assert finder.account_url is None
        account = await finder.find_account()
        assert finder.account_url == url
        # The found URL works as the kid for later requests.
        assert (await finder.fetch_account()).url == url
    assert account.url == url
    assert account.contact == ("mailto:tests@certherd.test",)


async def test_find_account_for_an_unknown_key(pebble: PebbleServer) -> None:
    async with new_client(pebble) as client:
        with pytest.raises(AccountDoesNotExistError) as caught:
            await client.find_account()
        assert client.account_url is None
    assert caught.value.type == ACME_ERROR + "accountDoesNotExist"
    assert caught.value.status == 400


# -- update, key rollover, deactivation (RFC 8555 §7.3.2, §7.3.5, §7.3.6) ---------


async def test_update_contacts(pebble: PebbleServer) -> None:
    async with registered(pebble) as client:
        updated = await client.update_account(["new@certherd.test", "mailto:two@certherd.test"])
        fetched = await client.fetch_account()
        assert updated.url == client.account_url
    expected = ("mailto:new@certherd.test", "mailto:two@certherd.test")
    assert updated.contact == expected
    assert fetched.contact == expected


async def test_update_contacts_to_none(pebble: PebbleServer) -> None:
    async with registered(pebble) as client:
        assert (await client.fetch_account()).contact == ("mailto:tests@certherd.test",)
        cleared = await client.update_account([])
        fetched = await client.fetch_account()
    assert cleared.contact == ()
    assert fetched.contact == ()


async def test_key_rollover(pebble: PebbleServer) -> None:
    old_key = generate_key(KeyType.EC256)
    new_key = generate_key(KeyType.EC384)
    async with registered(pebble, old_key) as client:
        url = client.account_url
        account = await client.change_key(new_key)
        assert client.account_key is new_key
        assert account.url == url
        assert account.raw["key"] == jws.jwk_for(new_key)
        # The account still orders and issues under the new key.
        issued = await obtain_certificate(client, [unique_name("rollover")], [http_solver(pebble)])
    assert issued.order.status is Status.VALID

    async with new_client(pebble, old_key) as old:
        with pytest.raises(AccountDoesNotExistError):
            await old.find_account()
    async with new_client(pebble, new_key) as new:
        assert (await new.find_account()).url == url


async def test_key_rollover_to_the_same_key_is_refused(pebble: PebbleServer) -> None:
    key = generate_key()
    async with registered(pebble, key) as client:
        with pytest.raises(MalformedError, match="identical"):
            await client.change_key(key)
        assert client.account_key is key
        assert (await client.fetch_account()).status is Status.VALID


async def test_key_rollover_to_another_accounts_key_is_refused(pebble: PebbleServer) -> None:
    """RFC 8555 §7.3.5 asks for 409 Conflict; Pebble 2.4 answers 500 serverInternal."""
    taken = generate_key()
    async with registered(pebble, taken) as other:
        other_url = other.account_url
    old_key = generate_key()
    async with registered(pebble, old_key) as client:
        url = client.account_url
        with pytest.raises(ProblemError, match="already in use") as caught:
            await client.change_key(taken)
        assert client.account_key is old_key
    assert caught.value.status in (409, 500)
    async with new_client(pebble, old_key) as finder:
        assert (await finder.find_account()).url == url
    async with new_client(pebble, taken) as finder:
        assert (await finder.find_account()).url == other_url


async def test_deactivate_account(pebble: PebbleServer) -> None:
    key = generate_key()
    async with registered(pebble, key) as client:
        account = await client.deactivate_account()
        assert account.status is Status.DEACTIVATED
        # Pebble answers every later request with 403 unauthorized.
        with pytest.raises(UnauthorizedError, match="deactivated") as fetch:
            await client.fetch_account()
        with pytest.raises(UnauthorizedError, match="deactivated"):
            await client.new_order([unique_name("deactivated")])
    assert fetch.value.status == 403
    assert fetch.value.type == ACME_ERROR + "unauthorized"
    async with new_client(pebble, key) as finder:
        # onlyReturnExisting finds it but refuses it: "exists but is deactivated".
        with pytest.raises(UnauthorizedError, match="deactivated"):
            await finder.find_account()
        with pytest.raises(UnauthorizedError, match="deactivated"):
            await finder.register(agree_tos=True)


# -- External Account Binding (RFC 8555 §7.3.4) ---------------------------------------


async def test_eab_directory_says_external_account_required(eab_pebble: PebbleServer) -> None:
    async with new_client(eab_pebble) as client:
        directory = await client.directory()
    assert directory.meta.external_account_required is True
    assert directory.meta.raw["externalAccountRequired"] is True


async def test_eab_required_but_missing_is_a_config_error(eab_pebble: PebbleServer) -> None:
    async with new_client(eab_pebble) as client:
        with pytest.raises(ConfigError, match="External Account Binding") as caught:
            await client.register(agree_tos=True)
        # Named as settings a program sets (the CLI prints its flags: test_cli_setting_names).
        assert caught.value.settings == ("eab_kid", "eab_hmac_key")
        assert "--" not in str(caught.value)
        # Refused before anything was signed and sent.
        assert [method for method, _ in client.transport.trace] == ["GET"]
        assert client.account_url is None


async def test_eab_with_the_right_key_registers(eab_pebble: PebbleServer) -> None:
    key = generate_key()
    async with new_client(eab_pebble, key) as client:
        eab = ExternalAccountBinding.from_b64url(EAB_KID, EAB_KEY)
        account = await client.register(agree_tos=True, eab=eab)
        assert account.status is Status.VALID
        issued = await obtain_certificate(client, [unique_name("eab")], [http_solver(eab_pebble)])
    assert issued.order.status is Status.VALID
    assert "externalAccountBinding" in account.raw
    assert EAB_KEY not in repr(eab)
    async with new_client(eab_pebble, key) as finder:
        # Finding an existing account needs no binding.
        assert (await finder.find_account()).url == account.url


@pytest.mark.parametrize(
    ("kid", "mac_key", "why"),
    [
        (EAB_KID, b64url(b"a wrong HMAC key, 32 bytes long!"), "JWS verification error"),
        ("kid-unknown", EAB_KEY, "not known"),
    ],
    ids=["wrong-key", "unknown-kid"],
)
async def test_eab_refused_by_the_ca(
    eab_pebble: PebbleServer, kid: str, mac_key: str, why: str
) -> None:
    async with new_client(eab_pebble) as client:
        with pytest.raises(ProblemError, match=why) as caught:
            await client.register(
                agree_tos=True, eab=ExternalAccountBinding.from_b64url(kid, mac_key)
            )
        assert client.account_url is None
    # Pebble 2.4 answers a bad binding with 403 unauthorized.
    assert isinstance(caught.value, UnauthorizedError)
    assert caught.value.status == 403


# -- account key types (RFC 8555 §6.2) ------------------------------------------------


@pytest.mark.parametrize(
    ("key_type", "alg"),
    [
        (KeyType.EC256, "ES256"),
        (KeyType.EC384, "ES384"),
        (KeyType.RSA2048, "RS256"),
        (KeyType.RSA4096, "RS256"),
    ],
)
async def test_account_key_types_register_and_issue(
    pebble: PebbleServer, key_type: KeyType, alg: str
) -> None:
    key = generate_key(key_type)
    assert jws.algorithm_for(key) == alg
    async with registered(pebble, key) as client:
        account = await client.fetch_account()
        issued = await obtain_certificate(
            client, [unique_name(key_type.value)], [http_solver(pebble)]
        )
    assert account.raw["key"] == jws.jwk_for(key)
    assert public_key_equal(issued.chain.leaf.public_key(), issued.key.public_key())
