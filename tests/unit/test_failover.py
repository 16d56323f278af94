"""Fail-over between a certificate's CAs: which failures move on to the next CA (the CA's
own trouble, or its refusal) and which stay (ours to fix); the ordered list of CAs as
certherd.toml, the flags of ``issue`` and the stored settings give it."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from test_settings import EAB_KEY, from_flags

from certherd.challenges.spec import SecretRef
from certherd.config import CA_PRESETS, load_config_file
from certherd.errors import (
    AuthorizationFailedError,
    CertherdError,
    ConfigError,
    DeadlineExceededError,
    HookError,
    OrderFailedError,
    PollDeferredError,
    PollTimeoutError,
    Problem,
    ProblemError,
    RetryLimitError,
    SolverError,
    StorageError,
    TransportError,
    UnsafeResponseError,
)
from certherd.manager.accounts import ca_options_all
from certherd.manager.failover import fails_over
from certherd.settings import CaSettings, EabSettings, LineageSettings

URN = "urn:ietf:params:acme:error:"
LE = CA_PRESETS["letsencrypt"].directory_url
ZEROSSL = CA_PRESETS["zerossl"].directory_url


def problem(kind: str, status: int = 400) -> ProblemError:
    return ProblemError.from_problem(Problem(type=URN + kind, detail="said", status=status))


def failed_challenge(kind: str) -> CertherdError:
    """A challenge that failed with the CA's problem ``kind`` (as complete_order raises)."""
    return AuthorizationFailedError.for_authorization(
        Problem(type=URN + kind, detail="the CA said so", status=403),
        authorization_url="https://ca.test/authz/1",
        identifier={"type": "dns", "value": "a.test"},
    )


# -- what fails over --------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        TransportError("newOrder to https://ca.test failed after 3 attempt(s): ConnectError"),
        DeadlineExceededError("got no complete answer within 30s", seconds=30),
        RetryLimitError("the CA rejected 5 nonces in a row"),
        UnsafeResponseError("the CA sent an unacceptable URL"),
        problem("serverInternal", 500),
        ProblemError.from_problem(Problem(type="about:blank", status=503)),
        problem("rateLimited", 429),
        problem("rejectedIdentifier"),
        problem("unsupportedIdentifier"),
        problem("invalidProfile"),
        problem("userActionRequired", 403),
        problem("externalAccountRequired", 403),
        failed_challenge("caa"),
        failed_challenge("rejectedIdentifier"),
    ],
    ids=lambda e: type(e).__name__ + ":" + str(getattr(e, "type", "")).rsplit(":", 1)[-1],
)
def test_the_cas_trouble_or_refusal_fails_over(error: CertherdError) -> None:
    assert fails_over(error)


def test_a_ca_requiring_eab_we_lack_fails_over_only_at_account_creation() -> None:
    lacking = ConfigError(
        "this CA requires External Account Binding: give {eab_kid} and {eab_hmac_key}",
        settings=("eab_kid", "eab_hmac_key"),
    )
    assert fails_over(lacking, creating_account=True)
    assert not fails_over(lacking)


def test_unauthorized_fails_over_only_while_the_account_is_created() -> None:
    refused = problem("unauthorized", 403)
    assert fails_over(refused, creating_account=True)  # an EAB this CA does not take
    assert not fails_over(refused)  # later: it is about us (a challenge, an order)


# -- what does not ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        failed_challenge("connection"),
        failed_challenge("incorrectResponse"),
        failed_challenge("dns"),
        failed_challenge("tls"),
        failed_challenge("unauthorized"),
        OrderFailedError("order https://ca.test/order/1 ended invalid"),
        problem("badCSR"),
        problem("malformed"),
        problem("accountDoesNotExist"),
        PollTimeoutError("the order stayed processing", url="https://ca.test/order/1"),
        ConfigError("no account yet: set {agree_tos}", settings=("agree_tos",)),
        SolverError("cannot bind 127.0.0.1:80"),
        HookError("the pre hook failed"),
        StorageError("disk full"),
        CertherdError("something else"),
    ],
    ids=lambda e: type(e).__name__ + ":" + str(getattr(e, "type", "")).rsplit(":", 1)[-1],
)
def test_our_side_does_not_fail_over(error: CertherdError) -> None:
    assert not fails_over(error)
    assert not fails_over(error, creating_account=isinstance(error, ConfigError))


def test_an_order_the_ca_asked_to_wait_for_stays_at_that_ca() -> None:
    import datetime as dt

    deferred = PollDeferredError(
        "later", url="https://ca.test/order/1", retry_at=dt.datetime.now(dt.UTC)
    )
    assert not fails_over(deferred)


# -- the list in certherd.toml -----------------------------------------------------------


def load(tmp_path: Path, text: str) -> tuple[LineageSettings, ...]:
    path = tmp_path / "certherd.toml"
    path.write_text(textwrap.dedent(text))
    path.chmod(0o600)
    return load_config_file(path).certificates


def config_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return str(caught.value)


def test_a_list_of_cas_each_with_its_own_account_details(tmp_path: Path) -> None:
    INTERNAL = 'ca_bundle = "/etc/internal.pem", account = "internal", '  # noqa: N806
    INTERNAL += 'email = "pki@example.com", '  # noqa: N806
    INTERNAL += f'eab_kid = "kid-i", eab_hmac_key = "{EAB_KEY}"'  # noqa: N806
    (settings,) = load(
        tmp_path,
        f"""
        [defaults]
        email = "ops@example.com"
        agree_tos = true
        solver = "http"

        [[certificate]]
        domains = ["example.com"]
        ca_bundle = "/etc/ssl/certs/ca-certificates.crt"
        ca = [
          "letsencrypt",
          {{ ca = "zerossl", eab_kid = "kid-z", eab_hmac_key_file = "/etc/certherd/z.key" }},
          {{ server = "https://acme.internal/directory", {INTERNAL} }},
        ]
        """,
    )
    first, zerossl, internal = settings.cas
    assert (first.directory_url, first.eab) == (LE, None)
    assert first.ca_bundle == "/etc/ssl/certs/ca-certificates.crt"
    assert settings.directory_url == LE  # the first CA is the lineage's own CA fields
    assert zerossl == CaSettings(
        ZEROSSL,
        ca_bundle="/etc/ssl/certs/ca-certificates.crt",
        email="ops@example.com",
        agree_tos=True,
        eab=EabSettings("kid-z", SecretRef("file", "/etc/certherd/z.key")),
    )
    assert internal.directory_url == "https://acme.internal/directory"
    assert (internal.account, internal.ca_bundle) == ("internal", "/etc/internal.pem")
    assert (internal.email, internal.agree_tos) == ("pki@example.com", True)
    assert internal.eab is not None
    assert internal.eab.kid == "kid-i"
    # Each CA becomes its own CaOptions: its own account, bundle and binding.
    options = ca_options_all(settings, environ={})
    assert [o.directory_url for o in options] == [c.directory_url for c in settings.cas]
    assert options[0].binding() is None
    binding = options[2].binding()
    assert binding is not None
    assert binding.kid == "kid-i"


def test_the_array_of_tables_form(tmp_path: Path) -> None:
    (settings,) = load(
        tmp_path,
        """
        [[certificate]]
        domains = "example.com"
        solver = "http"

        [[certificate.ca]]
        server = "https://one.test/directory"

        [[certificate.ca]]
        ca = "letsencrypt"
        account = "second"
        """,
    )
    assert [(c.directory_url, c.account) for c in settings.cas] == [
        ("https://one.test/directory", "default"),
        (LE, "second"),
    ]


def test_one_ca_is_read_as_before(tmp_path: Path) -> None:
    single, listed = load(
        tmp_path,
        """
        [defaults]
        solver = "http"
        [[certificate]]
        domains = "a.example"
        ca = "zerossl"
        eab_kid = "kid"
        eab_hmac_key_file = "/k"
        [[certificate]]
        domains = "b.example"
        ca = ["zerossl"]
        eab_kid = "kid"
        eab_hmac_key_file = "/k"
        """,
    )
    assert single.fallback_cas == ()
    assert listed.fallback_cas == ()
    assert single.eab == listed.eab == EabSettings("kid", SecretRef("file", "/k"))
    assert single.directory_url == listed.directory_url == ZEROSSL


def test_the_defaults_eab_goes_to_the_defaults_ca_in_a_list(tmp_path: Path) -> None:
    (settings,) = load(
        tmp_path,
        """
        [defaults]
        solver = "http"
        ca = "zerossl"
        eab_kid = "kid"
        eab_hmac_key_file = "/k"
        [[certificate]]
        domains = "a.example"
        ca = ["letsencrypt", "zerossl"]
        """,
    )
    assert [c.eab for c in settings.cas] == [None, EabSettings("kid", SecretRef("file", "/k"))]


@pytest.mark.parametrize(
    ("ca", "wanted"),
    [
        ('["letsencrypt", "nosuchca"]', "unknown CA 'nosuchca'"),
        ("[]", "ca is empty"),
        ('["letsencrypt", "letsencrypt"]', "is listed twice"),
        ('[{ eab_kid = "k" }]', 'give ca = "NAME" or server = "URL"'),
        ('[{ ca = "zerossl", server = "https://x.test/d" }]', 'give ca = "NAME" or server'),
        ('[{ server = "ftp://x.test/d" }]', "server must be a directory URL"),
        ('[{ ca = "zerossl", colour = "blue" }]', "colour"),
        ('[{ ca = "zerossl", eab_kid = "k" }]', "set eab_hmac_key_file"),
    ],
)
def test_mistakes_in_the_list_are_one_line_at_their_line(
    tmp_path: Path, ca: str, wanted: str
) -> None:
    message = config_error(
        tmp_path,
        f"""
        [[certificate]]
        domains = "a.example"
        solver = "http"
        ca = {ca}
        """,
    )
    assert "\n" not in message
    assert wanted in message, message
    assert message.startswith(f"{tmp_path / 'certherd.toml'}:"), message


def test_a_flat_eab_with_several_cas_must_say_its_ca(tmp_path: Path) -> None:
    message = config_error(
        tmp_path,
        """
        [[certificate]]
        domains = "a.example"
        solver = "http"
        ca = ["letsencrypt", "zerossl"]
        eab_kid = "kid"
        eab_hmac_key_file = "/k"
        """,
    )
    assert "belongs to one of them" in message
    assert "that CA's table" in message


# -- stored settings ---------------------------------------------------------------------


def test_the_list_is_stored_and_read_back_with_keys_by_reference_only(tmp_path: Path) -> None:
    settings = LineageSettings(
        name="a.example",
        names=("a.example",),
        directory_url=LE,
        solvers=(),
        fallback_cas=(
            CaSettings(ZEROSSL, eab=EabSettings("kid", SecretRef("config", "/c"), EAB_KEY)),
            CaSettings("https://acme.internal/directory", account="internal"),
        ),
    )
    again = LineageSettings.from_json(settings.to_json(), "renewal/a.example.json")
    assert again == settings
    assert [c.directory_url for c in again.cas] == [
        LE,
        ZEROSSL,
        "https://acme.internal/directory",
    ]
    shown = json.dumps(settings.shown())
    assert EAB_KEY not in shown  # every CA's EAB key given as a value is redacted


def test_settings_stored_with_one_ca_load_unchanged() -> None:
    old = {
        "name": "old.example",
        "names": ["old.example"],
        "directory_url": LE,
        "solvers": [],
        "email": "ops@example.com",
        "agree_tos": True,
        "schema": 1,
    }
    settings = LineageSettings.from_json(json.dumps(old).encode(), "renewal/old.example.json")
    assert settings.fallback_cas == ()
    assert settings.cas == (CaSettings(LE, email="ops@example.com", agree_tos=True),)


# -- the flags of issue ------------------------------------------------------------------


def test_repeated_ca_flags_give_the_list_in_order() -> None:
    settings = from_flags(
        "-d", "a.example", "--http", "--ca", "zerossl", "--ca", "https://acme.test/dir",
        "--ca", "letsencrypt", "--email", "ops@example.com", "--agree-tos",
    )  # fmt: skip
    assert [c.directory_url for c in settings.cas] == [ZEROSSL, "https://acme.test/dir", LE]
    assert all(c.email == "ops@example.com" and c.agree_tos for c in settings.cas)
    servers = from_flags(
        "-d", "a.example", "--http", "--server", "https://one.test/d", "--server",
        "https://two.test/d",
    )  # fmt: skip
    assert [c.directory_url for c in servers.cas] == ["https://one.test/d", "https://two.test/d"]


@pytest.mark.parametrize(
    ("flags", "wanted"),
    [
        (("--ca", "letsencrypt", "--server", "https://x.test/d"), "not both"),
        (("--ca", "letsencrypt", "--ca", "letsencrypt"), "given twice"),
        (("--ca", "nosuchca", "--ca", "letsencrypt"), "unknown CA 'nosuchca'"),
    ],
)
def test_flag_mistakes_are_usage_errors(flags: tuple[str, ...], wanted: str) -> None:
    with pytest.raises(ConfigError, match=wanted):
        from_flags("-d", "a.example", "--http", *flags)


def test_an_eab_flag_with_several_cas_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "eab.key"
    key.write_text(EAB_KEY)
    with pytest.raises(ConfigError, match="belongs to one CA"):
        from_flags(
            "-d", "a.example", "--http", "--ca", "letsencrypt", "--ca", "zerossl",
            "--eab-kid", "kid", "--eab-hmac-key-file", str(key),
        )  # fmt: skip
