"""certherd.toml checked against one typed schema on load (issue 10, item 1): every wrong
type, unknown key or bad solver option is one line naming the file, the line and the key
path, before anything else happens."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from certherd.challenges.spec import SecretRef, SolverSpec
from certherd.config import load_config_file
from certherd.errors import ConfigError

HEAD = """\
[defaults]
server = "https://acme.test/directory"
email = "ops@example.com"
agree_tos = true
solver = "http"
"""


def write(tmp_path: Path, text: str, head: str = HEAD) -> Path:
    path = tmp_path / "certherd.toml"
    path.write_text(head + textwrap.dedent(text))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config_file(path)
    message = str(caught.value)
    assert "\n" not in message, "one line"
    assert "Traceback" not in message
    return message


def line_of(path: Path, text: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


@pytest.mark.parametrize(
    ("setting", "key_path", "wanted"),
    [
        ('preferred_chain = ["a"]', "certificate[0].preferred_chain", "a string"),
        ("email = 3", "certificate[0].email", "a string"),
        ("ca_bundle = 1", "certificate[0].ca_bundle", "a string"),
        ('reuse_key = "no"', "certificate[0].reuse_key", "true or false"),
        ("profile = 7", "certificate[0].profile", "a string"),
        ('key_type = "rsa1024"', "certificate[0].key_type", "ec256"),
        ("pre_hooks = 5", "certificate[0].pre_hooks", "a string or a list of strings"),
    ],
)
def test_a_wrong_type_in_a_certificate(
    tmp_path: Path, setting: str, key_path: str, wanted: str
) -> None:
    path = write(tmp_path, f'\n[[certificate]]\ndomains = ["a.example"]\n{setting}\n')
    message = error_of(path)
    assert message.startswith(f"{path}:{line_of(path, setting)}: {key_path}"), message
    assert wanted in message, message


@pytest.mark.parametrize("where", ["defaults", "certificate"])
@pytest.mark.parametrize("email", ["ops", "ops@example", "a@b.c, d@e.f", "two words@example.com"])
def test_an_email_that_is_not_an_address(tmp_path: Path, where: str, email: str) -> None:
    setting = f"email = {email!r}".replace("'", '"')
    if where == "defaults":
        text = f'[defaults]\n{setting}\n\n[[certificate]]\ndomains = ["a.example"]\n'
    else:
        text = f'[[certificate]]\ndomains = ["a.example"]\n{setting}\n'
    path = write(tmp_path, text, head="")
    message = error_of(path)
    key = "defaults.email" if where == "defaults" else "certificate[0].email"
    assert message.startswith(f"{path}:{line_of(path, setting)}: {key}: "), message
    assert "write NAME@DOMAIN" in message


def test_a_quoted_boolean_in_the_defaults_is_not_true(tmp_path: Path) -> None:
    path = write(tmp_path, '[defaults]\nagree_tos = "false"\n', head="")
    message = error_of(path)
    assert message.startswith(f"{path}:2: defaults.agree_tos must be true or false"), message


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "certherd.toml"
    path.write_bytes(b'[defaults]\nemail = "ops@example.com"\n# caf\xe9\n')
    message = error_of(path)
    assert message.startswith(f"{path}:3: not UTF-8 text"), message
    assert "0xe9" in message
    assert "UTF-8" in message


def test_an_unknown_solver_option_points_at_it(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[certificate]]
        domains = ["a.example"]
        solver = "http"
        solver_options = { lisen = "127.0.0.1:8080" }
        """,
    )
    message = error_of(path)
    assert message.startswith(
        f"{path}:{line_of(path, 'lisen')}: certificate[0].solver_options.lisen: "
        "unknown setting 'lisen' of the http solver: use one of listen"
    ), message


def test_an_unknown_option_in_a_multi_line_solver_list(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[certificate]]
        domains = ["a.example", "*.a.example"]
        solvers = [
          { kind = "http", listen = "8080" },
          { kind = "dns", provider = "rfc2136", servr = "192.0.2.1" },
        ]
        """,
    )
    message = error_of(path)
    assert message.startswith(
        f"{path}:{line_of(path, 'servr')}: certificate[0].solvers[1].servr: unknown setting "
        "'servr' of the rfc2136 DNS provider"
    ), message
    assert "server" in message


def test_a_bad_option_value_of_a_dns_provider(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[certificate]]
        domains = ["a.example"]
        solver = "dns"
        solver_options = { provider = "rfc2136", server = "192.0.2.1", port = "fifty-three" }
        """,
    )
    message = error_of(path)
    assert "certificate[0].solver_options.port must be a whole number" in message, message


def test_an_unknown_solver_kind_points_at_the_solver(tmp_path: Path) -> None:
    path = write(tmp_path, '\n[[certificate]]\ndomains = ["a.example"]\nsolver = "htp"\n')
    message = error_of(path)
    assert message.startswith(f"{path}:{line_of(path, 'htp')}: certificate[0].solver"), message
    assert "use one of http, webroot, tls-alpn, dns, hook" in message


def test_an_unknown_dns_provider(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[certificate]]
        domains = ["a.example"]
        solver = "dns"
        solver_options = { provider = "rfc2163" }
        """,
    )
    message = error_of(path)
    assert f"{path}:{line_of(path, 'rfc2163')}: certificate[0].solver_options.provider" in message
    assert "'rfc2163'" in message


def test_a_bad_listen_address(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[certificate]]
        domains = ["a.example"]
        solver_options = { listen = "127.0.0.1:http" }
        """,
    )
    message = error_of(path)
    assert "certificate[0].solver_options" in message
    assert "the port must be a number from 1 to 65535" in message


def test_a_bad_default_solver_option_points_at_the_default(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        solver_options = { path = "/var/www" }

        [[certificate]]
        domains = ["a.example"]
        """,
    )
    message = error_of(path)
    line = line_of(path, "solver_options")
    assert message.startswith(f"{path}:{line}: defaults.solver_options.path: unknown setting"), (
        message
    )


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('colour = "blue"\n', "colour"),
        ('\n[[certificate]]\ndomains = ["a.example"]\ndomain = "b.example"\n', "domain"),
    ],
)
def test_unknown_keys_at_the_top_and_in_a_certificate(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "certherd.toml"
    path.write_text(text + HEAD)
    message = error_of(path)
    assert message.startswith(f"{path}:{line_of(path, key + ' =')}: "), message
    assert repr(key) in message


def test_secrets_in_the_file_are_recorded_as_coming_from_it(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[certificate]]
        domains = ["a.example"]
        solver = "dns"
        solver_options = { provider = "rfc2136", server = "192.0.2.1", key_name = "k", key_secret = "c2VjcmV0" }

        [[certificate]]
        domains = ["b.example"]
        solver = "dns"
        solver_options = { provider = "rfc2136", server = "192.0.2.1", key_name = "k", key_secret = { env = "TSIG_SECRET" } }
        """,  # noqa: E501
    )
    path.chmod(0o600)
    first, second = load_config_file(path).certificates
    (spec,) = first.solvers
    assert spec.secrets == {"key_secret": SecretRef("config", str(path))}
    assert spec.options["key_secret"] == "c2VjcmV0", "in memory, the value"
    assert "c2VjcmV0" not in repr(spec)
    assert spec.to_json()["options"]["key_secret"] == {"config": str(path)}
    (referenced,) = second.solvers
    assert referenced.secrets == {"key_secret": SecretRef("env", "TSIG_SECRET")}
    assert "key_secret" not in referenced.options
    assert load_config_file(path).warnings == ()
    path.chmod(0o644)
    (warning,) = load_config_file(path).warnings
    assert "certificate[0].solver_options.key_secret" in warning
    assert "chmod 600" in warning
    assert "c2VjcmV0" not in warning


def test_a_reference_is_only_for_a_secret(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[certificate]]
        domains = ["a.example"]
        solver = "dns"
        solver_options = { provider = "rfc2136", server = { env = "DNS_SERVER" } }
        """,
    )
    message = error_of(path)
    assert "certificate[0].solver_options.server is not a secret setting" in message, message


def test_lexicon_options_are_checked_against_the_provider(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[certificate]]
        domains = ["a.example"]
        solver = "dns"
        solver_options = { provider = "lexicon:localzone", filenam = "/tmp/zone" }
        """,
    )
    message = error_of(path)
    assert "certificate[0].solver_options.filenam: unknown setting of lexicon provider" in message
    assert "filename" in message


def test_lexicon_credentials_are_secrets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[certificate]]
        domains = ["a.example"]
        solver = "dns"
        solver_options = { provider = "lexicon:localzone", filename = "/tmp/zone" }
        """,
    )
    (spec,) = load_config_file(path).certificates[0].solvers
    assert spec.secrets == {}, "a zone file name is no secret"
    from certherd.challenges.options import solver_spec
    from certherd.dns.lexicon import LexiconProvider

    # localzone takes no credentials; a provider that lexicon cannot describe gets every
    # option, and the credential-like ones are secrets.
    assert LexiconProvider.check_settings({"auth_token": "t", "ttl": "60"}, strict=True) == {
        "auth_token"
    }

    with pytest.raises(ConfigError, match="auth_token: unknown setting of lexicon provider"):
        solver_spec("dns", {"provider": "lexicon:localzone", "auth_token": "t"})


def test_the_loaded_specs_equal_what_is_stored(tmp_path: Path) -> None:
    """A spec read back from a lineage's settings equals the one from the file, so
    ``renew`` does not rewrite every settings file on every run."""
    path = write(
        tmp_path,
        """
        [[certificate]]
        domains = ["a.example"]
        solver = "dns"
        solver_options = { provider = "rfc2136", server = "192.0.2.1", key_secret = "c2VjcmV0", propagation_timeout = 30 }
        """,  # noqa: E501
    )
    (spec,) = load_config_file(path).certificates[0].solvers
    again = SolverSpec.from_json(spec.to_json(reveal=True))
    assert again == spec
    assert "key_secret" not in again.options, "a reference, not a copy"
    assert again.resolve({}, configured=spec).options == spec.options


def test_the_readme_example_is_valid(tmp_path: Path) -> None:
    readme = Path(__file__).parents[2] / "README.md"
    example = readme.read_text().split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "certherd.toml"
    path.write_text(example)
    path.chmod(0o600)
    config = load_config_file(path)
    assert [c.name for c in config.certificates] == ["example.com", "wild"]
    dns = config.certificates[1].solvers[1]
    assert dns.secrets == {"key_secret": SecretRef("file", "/etc/certherd/tsig.secret")}


def test_a_bad_domain_names_its_key_path(tmp_path: Path) -> None:
    path = write(tmp_path, '\n[[certificate]]\ndomains = ["a.example", "a b.example"]\n')
    message = error_of(path)
    assert message.startswith(f"{path}:{line_of(path, 'a b')}: certificate[0].domains: "), message
    assert "'a b.example'" in message
