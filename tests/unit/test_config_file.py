"""certherd.toml: a good file is read with its defaults applied; every mistake is reported
as ``<file>:<line>: <what is wrong>: <how to fix it>``, pointing at the offending line."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from certherd.challenges.spec import SolverSpec
from certherd.config import CA_PRESETS, load_config_file
from certherd.errors import ConfigError
from certherd.settings import HookSettings, LineageSettings

GOOD = """\
# certherd.toml for the web servers
[defaults]
email = "ops@example.com"
agree_tos = true
ca = "letsencrypt-staging"
solver = "webroot"
solver_options = { path = "/var/www/html" }
deploy_hooks = ["systemctl reload nginx"]
failure_hooks = ["/usr/local/bin/page-oncall"]

[[certificate]]
domains = ["Example.COM", " www.example.com "]

[[certificate]]
name = "api"
domains = "api.example.com"
key_type = "rsa2048"
server = "https://acme.internal/directory"
reuse_key = true
pre_hooks = "echo pre"
solvers = [
  { kind = "dns", provider = "rfc2136", names = ["*.api.example.com"] },
  { kind = "http", listen = 8080 },
]

[[certificate]]
domains = ["*.shop.example"]
ca = "letsencrypt"
account = "shop"
solver = "dns"
solver_options = { provider = "exec", command = "/usr/local/bin/dns-hook" }
deploy_hooks = []
failure_hooks = ["mail -s shop ops@example.com", "logger shop"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "certherd.toml"
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config_file(path)
    message = str(caught.value)
    assert "\n" not in message, "one line"
    return message


def line_of(path: Path, text: str, occurrence: int = 0) -> int:
    """The number of the ``occurrence``-th line of the file starting with ``text``."""
    numbers = [
        n
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if line.strip().startswith(text)
    ]
    return numbers[occurrence]


def assert_points_at(message: str, path: Path, line: int, *fixes: str) -> None:
    assert message.startswith(f"{path}:{line}: "), message
    for fix in fixes:
        assert fix in message, message


# -- a good file ----------------------------------------------------------------------


def test_a_good_file_is_read_with_its_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    config = load_config_file(path)
    assert config.path == path
    first, api, shop = config.certificates
    assert first == LineageSettings(
        name="example.com",
        names=("example.com", "www.example.com"),
        directory_url=CA_PRESETS["letsencrypt-staging"].directory_url,
        solvers=(SolverSpec("webroot", {"path": "/var/www/html"}),),
        email="ops@example.com",
        agree_tos=True,
        hooks=HookSettings(
            deploy=("systemctl reload nginx",), failure=("/usr/local/bin/page-oncall",)
        ),
    )
    assert first.eab is None
    assert api.name == "api"
    assert api.hooks.failure == ("/usr/local/bin/page-oncall",), "the default applies"
    assert api.names == ("api.example.com",)
    assert api.directory_url == "https://acme.internal/directory", "server beats the default ca"
    assert api.key_type == "rsa2048"
    assert api.reuse_key is True
    assert api.hooks.pre == ("echo pre",)
    assert api.solvers == (
        SolverSpec("dns", {"provider": "rfc2136"}, ("*.api.example.com",)),
        SolverSpec("http", {"listen": "8080"}),
    )
    assert shop.name == "_.shop.example"  # a wildcard-first lineage (issue 9 item 9)
    assert shop.directory_url == CA_PRESETS["letsencrypt"].directory_url
    assert shop.account == "shop"
    assert shop.solvers == (
        SolverSpec("dns", {"provider": "exec", "command": "/usr/local/bin/dns-hook"}),
    )
    assert shop.hooks.deploy == (), "an empty list overrides the default"
    assert shop.hooks.failure == ("mail -s shop ops@example.com", "logger shop")
    assert shop.key_type == "ec256"
    assert shop.email == "ops@example.com"


def test_a_minimal_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[certificate]]
        domains = ["example.org"]
        solver = "http"
        """,
    )
    (certificate,) = load_config_file(path).certificates
    assert certificate.directory_url == CA_PRESETS["letsencrypt"].directory_url
    assert certificate.solvers == (SolverSpec("http"),)
    assert certificate.account == "default"


def test_a_file_without_certificates_is_fine(tmp_path: Path) -> None:
    path = write(tmp_path, '[defaults]\nemail = "ops@example.com"\n')
    assert load_config_file(path).certificates == ()


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "certherd.toml"
    assert error_of(path).startswith(f"cannot read {path}: ")


# -- mistakes -------------------------------------------------------------------------


def test_an_unknown_key_in_a_certificate(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [defaults]
        solver = "http"

        [[certificate]]
        domains = ["a.example"]

        [[certificate]]
        domain = ["b.example"]
        """,
    )
    message = error_of(path)
    assert_points_at(message, path, line_of(path, "domain ="), "'domain'", "use one of", "domains")


def test_an_unknown_key_named_like_part_of_another(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[certificate]]
        domains = ["a.example"]
        solver = "http"
        deploy_hooks = ["true"]

        [[certificate]]
        domains = ["b.example"]
        solver = "http"
        hooks = ["true"]
        """,
    )
    assert_points_at(error_of(path), path, line_of(path, "hooks ="), "'hooks'", "deploy_hooks")


def test_an_unknown_key_in_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, '[defaults]\nca = "letsencrypt"\nmail = "ops@example.com"\n')
    assert_points_at(error_of(path), path, 3, "'mail'", "[defaults]", "email")


def test_an_unknown_section(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [defaults]
        solver = "http"

        [[certificates]]
        domains = ["a.example"]
        """,
    )
    message = error_of(path)
    assert_points_at(message, path, 5, "'certificates'", "[defaults] and [[certificate]]")


def test_a_certificate_without_domains(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[certificate]]
        domains = ["a.example"]
        solver = "http"

        [[certificate]]
        name = "b"
        solver = "http"
        """,
    )
    message = error_of(path)
    assert_points_at(message, path, line_of(path, "[[certificate]]", 1), "domains = [")


def test_empty_domains(tmp_path: Path) -> None:
    path = write(tmp_path, '[[certificate]]\nsolver = "http"\ndomains = []\n')
    assert_points_at(error_of(path), path, 3, "at least one name")


def test_domains_of_the_wrong_type(tmp_path: Path) -> None:
    path = write(tmp_path, '[[certificate]]\nsolver = "http"\ndomains = [1, 2]\n')
    assert_points_at(error_of(path), path, 3, "domains must be a string or a list of strings")


def test_a_bad_name_in_domains_is_named_with_its_line(tmp_path: Path) -> None:
    # Issue 10 item 3: only the first name used to be looked at (as the lineage name);
    # the others reached the CA.
    path = write(
        tmp_path, '[[certificate]]\nsolver = "http"\ndomains = ["ok.example", "a b.example"]\n'
    )
    assert_points_at(error_of(path), path, 3, "'a b.example' is not a valid DNS name")


def test_domains_are_the_names_the_ca_sees(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[certificate]]\nsolver = "http"\n'
        'domains = ["Dot.example.", "dot.example", "bücher.example", "0::1"]\n',
    )
    (entry,) = load_config_file(path).certificates
    assert entry.names == ("dot.example", "xn--bcher-kva.example", "::1")


def test_a_bad_key_type(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [defaults]
        key_type = "ec384"
        solver = "http"

        [[certificate]]
        domains = ["a.example"]
        key_type = "rsa4096"

        [[certificate]]
        domains = ["b.example"]
        key_type = "rsa1024"
        """,
    )
    message = error_of(path)
    assert_points_at(message, path, line_of(path, 'key_type = "rsa1024"'), "'rsa1024'", "ec256")


def test_a_bad_default_key_type_points_at_the_default(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [defaults]
        solver = "http"
        key_type = "dsa"

        [[certificate]]
        domains = ["a.example"]
        """,
    )
    assert_points_at(error_of(path), path, 4, "'dsa'", "use one of")


def test_two_certificates_with_one_lineage(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [defaults]
        solver = "http"

        [[certificate]]
        domains = ["example.com"]

        [[certificate]]
        domains = ["*.example.com"]

        [[certificate]]
        domains = ["Example.com.", "www.example.com"]
        """,
    )
    message = error_of(path)
    assert_points_at(
        message, path, line_of(path, "[[certificate]]", 2), "'example.com'", 'name = "..."'
    )


def test_two_certificates_with_one_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[certificate]]
        name = "web"
        domains = ["a.example"]
        solver = "http"

        [[certificate]]
        name = "web"
        domains = ["b.example"]
        solver = "http"
        """,
    )
    assert_points_at(error_of(path), path, line_of(path, "[[certificate]]", 1), "'web'")


def test_a_name_that_is_not_usable(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[certificate]]
        domains = ["a.example"]
        solver = "http"
        name = "../etc"
        """,
    )
    assert_points_at(error_of(path), path, line_of(path, "name ="), "'../etc'", "use letters")


def test_both_server_and_ca(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [defaults]
        solver = "http"
        ca_bundle = "/etc/ssl/internal.pem"

        [[certificate]]
        domains = ["a.example"]

        [[certificate]]
        domains = ["b.example"]
        server = "https://acme.internal/directory"
        ca = "letsencrypt"
        """,
    )
    message = error_of(path)
    assert_points_at(message, path, line_of(path, "server ="), "server", "ca", "not both")
    assert "--server" not in message, "a file has keys, not options"


def test_an_unknown_ca(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[certificate]]
        domains = ["a.example"]
        solver = "http"
        ca = "letsencrpyt"
        """,
    )
    message = error_of(path)
    assert_points_at(message, path, 5, "'letsencrpyt'", "letsencrypt-staging", "server")


def test_an_unknown_default_ca_points_at_the_default(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [defaults]
        solver = "http"
        ca = "nope"

        [[certificate]]
        domains = ["a.example"]
        ca = "letsencrypt"

        [[certificate]]
        domains = ["b.example"]
        """,
    )
    assert_points_at(error_of(path), path, 4, "'nope'", "use one of")


def test_defaults_with_both_server_and_ca(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [defaults]
        solver = "http"
        ca = "letsencrypt"
        server = "https://acme.internal/directory"

        [[certificate]]
        domains = ["a.example"]
        """,
    )
    assert_points_at(error_of(path), path, 5, "not both")


def test_inherited_hooks_of_the_wrong_type_point_at_the_default(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [defaults]
        solver = "http"
        deploy_hooks = [["nested"]]

        [[certificate]]
        domains = ["a.example"]
        pre_hooks = ["true"]
        """,
    )
    assert_points_at(error_of(path), path, 4, "deploy_hooks must be a string or a list")


def test_no_solver(tmp_path: Path) -> None:
    path = write(tmp_path, '\n[[certificate]]\ndomains = ["a.example"]\n')
    assert_points_at(error_of(path), path, 2, 'solver = "http"')


def test_a_solver_without_a_kind(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[certificate]]
        domains = ["a.example"]
        solvers = [{ provider = "rfc2136" }]
        """,
    )
    assert_points_at(error_of(path), path, 4, 'kind = "http"')


def test_bad_toml(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[certificate]]
        domains = ["a.example"]
        solver "http"
        """,
    )
    message = error_of(path)
    assert_points_at(message, path, 4, "not valid TOML")
    assert re.search(r"fix", message), message


def test_a_table_where_certificates_belong(tmp_path: Path) -> None:
    path = write(tmp_path, '[certificate]\ndomains = ["a.example"]\n')
    assert_points_at(error_of(path), path, 1, "[[certificate]]")


def test_defaults_that_are_not_a_table(tmp_path: Path) -> None:
    path = write(tmp_path, 'defaults = "letsencrypt"\n')
    assert_points_at(error_of(path), path, 1, "must be a table", "[defaults] section")


def test_hooks_reach_the_lineage_settings_and_survive_a_round_trip(tmp_path: Path) -> None:
    settings = load_config_file(write(tmp_path, GOOD)).certificates[2]
    assert settings.hooks == HookSettings(
        pre=(), post=(), deploy=(), failure=("mail -s shop ops@example.com", "logger shop")
    )
    assert LineageSettings.from_json(settings.to_json(), "test") == settings
