"""Everything from the CA is untrusted: tokens, certificates, list pages, statuses.

Hostile values are refused with UnsafeResponseError (or CertificateMismatchError for
an issued certificate that is not what was ordered); values that are merely new (an
unknown challenge type, an unknown directory field) are kept, not rejected (RFC 8555
§7.1.1: "Clients MUST ignore unknown fields").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from fakes import START, FakeClock, HostileAcmeServer, Reply, TestCA, always, csr_names

from certherd.acme.messages import Challenge, Identifier, Status
from certherd.challenges import ChallengeTask, check_token
from certherd.errors import (
    CertherdError,
    CertificateMismatchError,
    UnsafeResponseError,
)
from certherd.manager import obtain_certificate

GOOD_TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"  # RFC 8555 §8.3

# -- challenge tokens (RFC 8555 §8.3: base64url; CVE-2023-38198) ----------------------------

HOSTILE_TOKENS = {
    "dot-dot-slash": "../../../../etc/passwd",
    "dot-dot-padded": "..aaaaaaaaaaaaaaaaaaaaaa..",
    "slash": "aaaaaaaaaaaa/bbbbbbbbbbbb",
    "backslash": "aaaaaaaaaaaa\\bbbbbbbbbbbb",
    "space": "aaaaaaaaaaaa bbbbbbbbbbbb",
    "command-substitution": "$(touch${IFS}/tmp/pwned)aaaa",
    "backticks": "`id`aaaaaaaaaaaaaaaaaaaa",
    "semicolon": "aaaaaaaaaaaa;rm -rf ~;bbbb",
    "pipe-and-redirect": "aaaaaaaa|bbbbbbbb>cccccccc",
    "quote": "aaaaaaaaaaaa'bbbbbbbbbbbb\"",
    "percent-encoded": "%2e%2e%2faaaaaaaaaaaaaaaa",
    "base64-padding": "aaaaaaaaaaaaaaaaaaaaaa==",
    "base64-plus": "aaaaaaaaaaa+bbbbbbbbbbbb",
    "nul": "aaaaaaaaaaaa\x00bbbbbbbbbbbb",
    "trailing-newline": "aaaaaaaaaaaaaaaaaaaaaaaa\n",
    "leading-newline": "\naaaaaaaaaaaaaaaaaaaaaaaa",
    "non-ascii": "aaaaaaaaaaaaaaaaaaaaaaaé",
    "empty": "",
    "too-short": "abc",
    "overlong": "a" * 513,
}


@pytest.mark.parametrize("token", HOSTILE_TOKENS.values(), ids=HOSTILE_TOKENS.keys())
def test_check_token_refuses_hostile_tokens(token: str) -> None:
    with pytest.raises(UnsafeResponseError, match="not base64url"):
        check_token(token)


def test_check_token_refuses_none() -> None:
    with pytest.raises(UnsafeResponseError):
        check_token(None)


def test_check_token_message_escapes_the_token() -> None:
    with pytest.raises(UnsafeResponseError) as caught:
        check_token("\x1b[2J" + "a" * 30)
    assert "\x1b" not in str(caught.value)


@pytest.mark.parametrize("token", [GOOD_TOKEN, "A" * 16, "a-b_" * 128])
def test_check_token_accepts_base64url(token: str) -> None:
    assert check_token(token) == token


def test_challenge_task_token_is_checked() -> None:
    challenge = Challenge(
        url="https://ca.test/chall/1", type="http-01", status=Status.PENDING, token="../x" * 8
    )
    task = ChallengeTask(Identifier.dns("example.test"), challenge, "")
    with pytest.raises(UnsafeResponseError):
        _ = task.token


class RecordingSolver:
    """An http-01 solver that presents nothing but records what it was asked."""

    challenge_type = "http-01"

    def __init__(self) -> None:
        self.presented: list[str] = []
        self.cleaned: list[object] = []

    def supports(self, identifier: Identifier) -> bool:
        return True

    async def present(self, task: ChallengeTask) -> object:
        self.presented.append(task.token)
        return task.token

    async def cleanup(self, handle: object) -> None:
        self.cleaned.append(handle)


async def test_hostile_token_in_an_order_is_never_presented_nor_answered() -> None:
    server = HostileAcmeServer()
    server.authorization_status = "pending"
    server.challenge_token = lambda index: "../../../../../../root/.ssh/authorized_keys"
    solver = RecordingSolver()
    async with server.client() as client:
        with pytest.raises(UnsafeResponseError, match="not base64url"):
            await obtain_certificate(client, ["example.test"], [solver])
    assert solver.presented == []
    assert not server.requests_to("/chall/1"), "the challenge was not answered"
    assert not server.requests_to("/finalize/1")


async def test_good_token_is_presented_answered_and_cleaned_up() -> None:
    # The control for the test above: the same order with a plain token goes through.
    server = HostileAcmeServer()
    server.authorization_status = "pending"
    solver = RecordingSolver()
    async with server.client() as client:
        issued = await obtain_certificate(client, ["example.test"], [solver])
    assert solver.presented == [server.challenge_token(1)]
    assert solver.cleaned == solver.presented
    assert issued.reused_authorizations == 0


# -- issued certificates that do not match the order ------------------------------------------


async def test_honest_certificate_is_accepted() -> None:
    # The control for the mismatch tests below: they fail for the reason they name.
    server = HostileAcmeServer()
    async with server.client() as client:
        issued = await obtain_certificate(client, ["example.test", "www.example.test"], [])
    assert issued.reused_authorizations == 2
    assert issued.chain.leaf.public_key() == issued.key.public_key()
    san = issued.chain.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert set(san.value.get_values_for_type(x509.DNSName)) == {
        "example.test",
        "www.example.test",
    }


def _other_key() -> ec.EllipticCurvePublicKey:
    return ec.generate_private_key(ec.SECP256R1()).public_key()


def _for_other_names(server: HostileAcmeServer, csr: x509.CertificateSigningRequest) -> bytes:
    return server.ca.pem(server.ca.leaf(csr.public_key(), ["attacker.test"]))


def _with_an_extra_name(server: HostileAcmeServer, csr: x509.CertificateSigningRequest) -> bytes:
    return server.ca.pem(server.ca.leaf(csr.public_key(), [*csr_names(csr), "attacker.test"]))


def _for_another_key(server: HostileAcmeServer, csr: x509.CertificateSigningRequest) -> bytes:
    return server.ca.pem(server.ca.leaf(_other_key(), csr_names(csr)))


def _expired(server: HostileAcmeServer, csr: x509.CertificateSigningRequest) -> bytes:
    leaf = server.ca.leaf(
        csr.public_key(),
        csr_names(csr),
        not_before=START - dt.timedelta(days=90),
        not_after=START - dt.timedelta(days=1),
    )
    return server.ca.pem(leaf)


def _not_yet_valid(server: HostileAcmeServer, csr: x509.CertificateSigningRequest) -> bytes:
    leaf = server.ca.leaf(csr.public_key(), csr_names(csr), not_before=START + dt.timedelta(days=1))
    return server.ca.pem(leaf)


def _signed_by_an_impostor(server: HostileAcmeServer, csr: x509.CertificateSigningRequest) -> bytes:
    # Same issuer name as the intermediate, another key: the signature cannot verify.
    impostor = ec.generate_private_key(ec.SECP256R1())
    return server.ca.pem(server.ca.leaf(csr.public_key(), csr_names(csr), signer=impostor))


def _followed_by_a_stranger(
    server: HostileAcmeServer, csr: x509.CertificateSigningRequest
) -> bytes:
    stranger = TestCA("Stranger")
    return server.ca.pem(server.ca.leaf(csr.public_key(), csr_names(csr)), stranger.intermediate)


def _intermediate_under_a_foreign_root(
    server: HostileAcmeServer, csr: x509.CertificateSigningRequest
) -> bytes:
    twin = TestCA()  # the same names, other keys
    leaf = server.ca.leaf(csr.public_key(), csr_names(csr))
    return server.ca.pem(leaf, server.ca.intermediate, twin.root)


MakeChain = Callable[[HostileAcmeServer, x509.CertificateSigningRequest], bytes]
MISMATCHES: dict[str, tuple[MakeChain, str]] = {
    "other-names": (_for_other_names, "names differ"),
    "extra-name": (_with_an_extra_name, "unexpected dns:attacker.test"),
    "other-public-key": (_for_another_key, "different public key"),
    "expired": (_expired, "expired"),
    "not-yet-valid": (_not_yet_valid, "not valid yet"),
    "impostor-signature": (_signed_by_an_impostor, "signature does not verify"),
    "stranger-in-chain": (_followed_by_a_stranger, "issuer name"),
    "broken-upper-link": (_intermediate_under_a_foreign_root, "certificate 2 of the chain"),
}


@pytest.mark.parametrize(("make", "reason"), MISMATCHES.values(), ids=MISMATCHES.keys())
async def test_certificate_not_matching_the_order_is_refused(make: MakeChain, reason: str) -> None:
    server = HostileAcmeServer()
    server.issue = lambda csr: make(server, csr)
    async with server.client(clock=FakeClock()) as client:
        with pytest.raises(CertificateMismatchError, match=reason):
            await obtain_certificate(client, ["example.test"], [])
    assert server.requests_to("/cert/1"), "the certificate was downloaded, then refused"


async def test_unreadable_certificate_is_an_error_not_a_crash() -> None:
    server = HostileAcmeServer()
    server.issue = lambda csr: (
        b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
    )
    async with server.client() as client:
        with pytest.raises(CertherdError):
            await obtain_certificate(client, ["example.test"], [])


# -- order lists, statuses, unknown fields --------------------------------------------------


def _page(server: HostileAcmeServer, order: str, next_page: str | None) -> Reply:
    headers = {"Link": f'<{next_page}>;rel="next"'} if next_page else {}
    return Reply(body={"orders": [server.url(order)]}, headers=headers)


async def test_order_list_pages_that_loop_are_refused() -> None:
    server = HostileAcmeServer()
    server.hooks["/orders/1"] = always(_page(server, "/order/1", "/orders/2"))  # relative
    server.hooks["/orders/2"] = always(_page(server, "/order/2", server.url("/orders/1")))
    found: list[str] = []
    async with server.client() as client:

        async def collect() -> None:
            async for url in client.list_orders(server.url("/orders/1")):
                found.append(url)

        with pytest.raises(UnsafeResponseError, match="loop"):
            await collect()
    assert found == [server.url("/order/1"), server.url("/order/2")]
    assert len(server.requests_to("/orders/1")) == 1


async def test_order_list_page_linking_to_itself_is_refused() -> None:
    server = HostileAcmeServer()
    server.hooks["/orders/1"] = always(_page(server, "/order/1", server.url("/orders/1")))
    async with server.client() as client:
        with pytest.raises(UnsafeResponseError, match="loop"):
            _ = [url async for url in client.list_orders(server.url("/orders/1"))]


async def test_order_list_follows_pages_to_the_end() -> None:
    server = HostileAcmeServer()
    server.hooks["/orders/1"] = always(_page(server, "/order/1", server.url("/orders/2")))
    server.hooks["/orders/2"] = always(_page(server, "/order/2", None))
    async with server.client() as client:
        found = [url async for url in client.list_orders(server.url("/orders/1"))]
    assert found == [server.url("/order/1"), server.url("/order/2")]


@pytest.mark.parametrize("status", ["frobnicating", "VALID", "", None, 3, "\x1b[2Jvalid"])
async def test_unknown_order_status_is_refused(status: object) -> None:
    server = HostileAcmeServer()
    server.hooks["/order/1"] = always(
        Reply(
            body={
                "status": status,
                "identifiers": [],
                "authorizations": [],
                "finalize": server.url("/finalize/1"),
            }
        )
    )
    async with server.client() as client:
        with pytest.raises(UnsafeResponseError, match="unknown order status") as caught:
            await client.fetch_order(server.url("/order/1"))
    assert "\x1b" not in str(caught.value)


async def test_unknown_challenge_types_and_fields_are_kept() -> None:
    server = HostileAcmeServer()
    server.hooks["/authz/1"] = always(
        Reply(
            body={
                "identifier": {"type": "dns", "value": "example.test"},
                "status": "pending",
                "x-vendor-hint": {"shard": 7},
                "challenges": [
                    {
                        "type": "dns-account-01",
                        "url": server.url("/chall/9"),
                        "status": "pending",
                        "token": GOOD_TOKEN,
                        "accountLabel": "_ujmmovf2vn55tgye",
                    },
                    {
                        "type": "http-01",
                        "url": server.url("/chall/1"),
                        "status": "pending",
                        "token": GOOD_TOKEN,
                    },
                ],
            }
        )
    )
    async with server.client() as client:
        authorization = await client.fetch_authorization(server.url("/authz/1"))
    assert [c.type for c in authorization.challenges] == ["dns-account-01", "http-01"]
    unknown = authorization.challenge("dns-account-01")
    assert unknown is not None
    assert unknown.raw["accountLabel"] == "_ujmmovf2vn55tgye"
    assert authorization.raw["x-vendor-hint"] == {"shard": 7}


async def test_unknown_directory_fields_are_kept() -> None:
    server = HostileAcmeServer()
    random_key = "fa8b347d3849421ebc4b234205418805"
    server.directory[random_key] = (
        "https://community.letsencrypt.org/t/adding-random-entries-to-the-directory/33417"
    )
    server.directory["newThing"] = {"nested": True}
    server.directory["meta"]["home"] = "https://github.com/grindsa/acme2certifier"
    async with server.client() as client:
        directory = await client.directory()
    assert directory.raw[random_key].startswith("https://community.letsencrypt.org/")
    assert directory.raw["newThing"] == {"nested": True}
    assert directory.meta.raw["home"] == "https://github.com/grindsa/acme2certifier"
