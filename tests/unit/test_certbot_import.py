"""Importing a Certbot directory: the ConfigObj parser, JWK keys, the settings mapping,
and the import into a real filesystem storage, on hand-written Certbot directories."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from certherd.cli.main import main
from certherd.crypto.encoding import b64url
from certherd.crypto.keys import public_key_equal
from certherd.errors import ConfigError, CryptoError
from certherd.manager.accounts import CaOptions, load_account
from certherd.manager.lineage import LineageState
from certherd.migrate.certbot_import import (
    import_certbot,
    key_from_jwk,
    parse_conf,
    read_lineage,
)
from certherd.settings import LineageSettings
from certherd.storage.filesystem import FilesystemStorage

SERVER = "https://acme.example.test/directory"
ACCOUNT_URL = "https://acme.example.test/acct/17"
ACCOUNT_ID = "0123456789abcdef0123456789abcdef"
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)

# -- the parser ---------------------------------------------------------------------------

CERTBOT_WEBROOT = """\
version = 5.8.0
archive_dir = /etc/letsencrypt/archive/web.test
cert = /etc/letsencrypt/live/web.test/cert.pem
[renewalparams]
reuse_key = True
pre_hook = 'echo "pre  hook" '
webroot_path = /var/www/html,
renew_hook = echo deployed >> /tmp/deploy.log
[[webroot_map]]
web.test = /var/www/html
www.web.test = /srv/www
"""


def test_parse_the_format_certbot_writes() -> None:
    data = parse_conf(CERTBOT_WEBROOT)
    assert data["version"] == "5.8.0"
    params = data["renewalparams"]
    assert params["reuse_key"] == "True"
    assert params["pre_hook"] == 'echo "pre  hook" '
    assert params["webroot_path"] == ["/var/www/html"]
    assert params["renew_hook"] == "echo deployed >> /tmp/deploy.log"
    assert params["webroot_map"] == {"web.test": "/var/www/html", "www.web.test": "/srv/www"}


def test_parse_comments_quotes_lists_and_nesting() -> None:
    text = """
# a comment
   # an indented comment
plain = value   # an inline comment
quoted = "a, b # not a comment"
single = 'it''s'
empty =
empty_quoted = ""
list = a, "b, c", 'd'
one = a,
none = ,
"quoted key" = x
multi = '''first
second'''
[renewalparams]
key = 1
[[webroot_map]]
a.test = /a
[ other ]  # comment after a section
key = 2
"""
    data = parse_conf(text.replace("'it''s'", '"it\'s"'))
    assert data["plain"] == "value"
    assert data["quoted"] == "a, b # not a comment"
    assert data["single"] == "it's"
    assert data["empty"] == ""
    assert data["empty_quoted"] == ""
    assert data["list"] == ["a", "b, c", "d"]
    assert data["one"] == ["a"]
    assert data["none"] == []
    assert data["quoted key"] == "x"
    assert data["multi"] == "first\nsecond"
    assert data["renewalparams"] == {"key": "1", "webroot_map": {"a.test": "/a"}}
    assert data["other"] == {"key": "2"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[orphan]]\nkey = 1\n", "line 1: bad section header"),
        ("[a]]\n", "bad section header"),
        ("ok = 1\njust words\n", "line 2: expected KEY = VALUE"),
        ('key = "unbalanced\n', "cannot read the value"),
        ("key = '''never closed\nmore\n", "unterminated"),
        ('key = "a" trailing\n', "cannot read the value"),
    ],
)
def test_parse_refuses_what_configobj_refuses(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_conf(text, "renewal/x.conf")
    assert "renewal/x.conf" in str(caught.value)


# -- JWK account keys ---------------------------------------------------------------------


def _number(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def jwk_of(key: Any) -> dict[str, str]:
    """A private JWK as josepy (Certbot) writes it."""
    if isinstance(key, rsa.RSAPrivateKey):
        n = key.private_numbers()
        return {
            "kty": "RSA",
            "n": _number(n.public_numbers.n),
            "e": _number(n.public_numbers.e),
            "d": _number(n.d),
            "p": _number(n.p),
            "q": _number(n.q),
            "dp": _number(n.dmp1),
            "dq": _number(n.dmq1),
            "qi": _number(n.iqmp),
        }
    numbers = key.private_numbers()
    size = (key.curve.key_size + 7) // 8
    return {
        "kty": "EC",
        "crv": {"secp256r1": "P-256", "secp384r1": "P-384"}[key.curve.name],
        "x": b64url(numbers.public_numbers.x.to_bytes(size, "big")),
        "y": b64url(numbers.public_numbers.y.to_bytes(size, "big")),
        "d": b64url(numbers.private_value.to_bytes(size, "big")),
    }


RSA_KEY = rsa.generate_private_key(65537, 2048)


@pytest.mark.parametrize(
    "key",
    [RSA_KEY, ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP384R1())],
)
def test_jwk_to_key(key: Any) -> None:
    loaded = key_from_jwk(jwk_of(key))
    assert public_key_equal(loaded.public_key(), key.public_key())


def test_jwk_rsa_without_prime_factors() -> None:
    jwk = {k: v for k, v in jwk_of(RSA_KEY).items() if k in ("kty", "n", "e", "d")}
    assert public_key_equal(key_from_jwk(jwk).public_key(), RSA_KEY.public_key())


@pytest.mark.parametrize(
    ("jwk", "message"),
    [
        ({"kty": "oct", "k": "AAAA"}, "unsupported JWK key type"),
        ({"kty": "EC", "crv": "P-521", "d": "AAAA"}, "unsupported JWK curve"),
        ({"kty": "RSA", "n": "AQAB"}, "not a usable JWK"),
        ({"kty": "RSA", "n": "!!", "e": "AQAB", "d": "AQAB"}, "base64url"),
        ([1, 2], "not a usable JWK"),
    ],
)
def test_jwk_refused(jwk: Any, message: str) -> None:
    with pytest.raises(CryptoError, match=message):
        key_from_jwk(jwk)


def test_jwk_with_a_foreign_public_point_is_refused() -> None:
    jwk = jwk_of(ec.generate_private_key(ec.SECP256R1()))
    jwk["x"] = jwk_of(ec.generate_private_key(ec.SECP256R1()))["x"]
    with pytest.raises(CryptoError, match="does not match"):
        key_from_jwk(jwk)


# -- hand-made Certbot directories --------------------------------------------------------

_CA_KEY = ec.generate_private_key(ec.SECP256R1())
_CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Unit Test CA")])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_version(names: list[str], key: Any, days: int = 90) -> dict[str, bytes]:
    """cert, chain, fullchain and privkey of one version, signed by the unit test CA."""
    start = NOW - dt.timedelta(days=1)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(_CA_NAME)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(_CA_KEY, hashes.SHA256())
    )
    ca = (
        x509.CertificateBuilder()
        .subject_name(_CA_NAME)
        .issuer_name(_CA_NAME)
        .public_key(_CA_KEY.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=3650))
        .sign(_CA_KEY, hashes.SHA256())
    )
    return {
        "cert.pem": _pem(leaf),
        "chain.pem": _pem(ca),
        "fullchain.pem": _pem(leaf) + _pem(ca),
        "privkey.pem": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    }


class CertbotDir:
    """Writes a Certbot configuration directory the way Certbot lays it out."""

    def __init__(self, root: Path, account_key: Any = RSA_KEY) -> None:
        self.root = root
        (root / "renewal").mkdir(parents=True)
        for kind in ("pre", "post", "deploy"):
            (root / "renewal-hooks" / kind).mkdir(parents=True)
        account = root / "accounts" / "acme.example.test" / "directory" / ACCOUNT_ID
        account.mkdir(parents=True)
        (account / "private_key.json").write_text(json.dumps(jwk_of(account_key)))
        (account / "regr.json").write_text(json.dumps({"body": {}, "uri": ACCOUNT_URL}))
        (account / "meta.json").write_text('{"creation_host": "unit"}')

    def lineage(
        self,
        name: str,
        params: str,
        *,
        names: list[str] | None = None,
        versions: int = 2,
        live: int | None = None,
        key_type: str = "ec",
    ) -> list[dict[str, bytes]]:
        archive, live_dir = self.root / "archive" / name, self.root / "live" / name
        archive.mkdir(parents=True)
        live_dir.mkdir(parents=True)
        made = []
        for version in range(1, versions + 1):
            key = (
                ec.generate_private_key(ec.SECP256R1())
                if key_type == "ec"
                else rsa.generate_private_key(65537, 2048)
            )
            files = make_version(names or [name], key)
            for file, data in files.items():
                (archive / file.replace(".pem", f"{version}.pem")).write_bytes(data)
            made.append(files)
        for file in ("cert", "chain", "fullchain", "privkey"):
            os.symlink(
                f"../../archive/{name}/{file}{live or versions}.pem", live_dir / f"{file}.pem"
            )
        (self.root / "renewal" / f"{name}.conf").write_text(
            f"version = 5.8.0\narchive_dir = {archive}\ncert = {live_dir}/cert.pem\n"
            f"privkey = {live_dir}/privkey.pem\n[renewalparams]\naccount = {ACCOUNT_ID}\n"
            f"server = {SERVER}\n{params}"
        )
        return made

    def read(self, name: str, hook_dir: Path | None = None) -> Any:
        return read_lineage(
            self.root, self.root / "renewal" / f"{name}.conf", hook_dir=hook_dir, now=NOW
        )

    def snapshot(self) -> dict[str, str]:
        """Every path with its mode, link target or content hash: to prove nothing changed."""
        seen = {}
        for path in sorted(self.root.rglob("*")):
            mode = oct(path.lstat().st_mode)
            if path.is_symlink():
                seen[str(path)] = f"{mode} -> {os.readlink(path)}"
            elif path.is_file():
                seen[str(path)] = f"{mode} {hashlib.sha256(path.read_bytes()).hexdigest()}"
            else:
                seen[str(path)] = mode
        return seen


@pytest.fixture
def certbot(tmp_path: Path) -> CertbotDir:
    return CertbotDir(tmp_path / "letsencrypt")


# -- the mapping --------------------------------------------------------------------------


def test_standalone_maps_to_the_builtin_http_server(certbot: CertbotDir) -> None:
    certbot.lineage(
        "x.test",
        "authenticator = standalone\nhttp01_port = 8080\nhttp01_address = 127.0.0.1\n"
        "key_type = ecdsa\n",
        names=["x.test", "www.x.test"],
    )
    lineage = certbot.read("x.test")
    settings = lineage.settings
    assert settings.names == ("x.test", "www.x.test")
    assert [(s.kind, s.options, s.names) for s in settings.solvers] == [
        ("http", {"listen": "127.0.0.1:8080"}, ())
    ]
    assert settings.directory_url == SERVER
    assert settings.key_type == "ec256"
    assert settings.reuse_key is False
    assert lineage.live_version == 2
    assert sorted(lineage.versions) == [1, 2]
    assert lineage.account.url == ACCOUNT_URL
    assert lineage.warnings == ()


@pytest.mark.parametrize(
    ("params", "listen"),
    [
        ("authenticator = standalone\n", "80"),
        ("authenticator = standalone\nhttp01_address = ::1\nhttp01_port = 81\n", "[::1]:81"),
    ],
)
def test_standalone_defaults_and_ipv6(certbot: CertbotDir, params: str, listen: str) -> None:
    certbot.lineage("x.test", params)
    assert certbot.read("x.test").settings.solvers[0].options == {"listen": listen}


def test_webroot_map_gives_one_solver_per_folder(certbot: CertbotDir) -> None:
    certbot.lineage(
        "w.test",
        "authenticator = webroot\nwebroot_path = /var/www/a, /var/www/b,\n"
        "[[webroot_map]]\nw.test = /var/www/a\nb.w.test = /var/www/b\n",
        names=["w.test", "b.w.test", "c.w.test"],
    )
    solvers = certbot.read("w.test").settings.solvers
    assert [(s.kind, s.options["path"], s.names) for s in solvers] == [
        ("webroot", "/var/www/a", ("w.test",)),
        ("webroot", "/var/www/b", ("b.w.test",)),
        ("webroot", "/var/www/a", ()),  # c.w.test is not in the map: the first webroot_path
    ]


def test_webroot_with_one_folder_needs_no_names(certbot: CertbotDir) -> None:
    certbot.lineage(
        "w.test",
        "authenticator = webroot\nwebroot_path = /var/www/a,\n"
        "[[webroot_map]]\nw.test = /var/www/a\n",
    )
    solvers = certbot.read("w.test").settings.solvers
    assert [(s.kind, s.options, s.names) for s in solvers] == [
        ("webroot", {"path": "/var/www/a"}, ())
    ]


def test_nginx_maps_to_the_nginx_solver_and_installer(certbot: CertbotDir) -> None:
    """Issue 13: Certbot's nginx authenticator and installer become certherd's (same
    server root and control binary), and the warning says how to move the TLS lines."""
    certbot.lineage(
        "n.test",
        "authenticator = nginx\ninstaller = nginx\nnginx_server_root = /srv/nginx\n",
    )
    lineage = certbot.read("n.test")
    (solver,) = lineage.settings.solvers
    assert (solver.kind, solver.options) == ("nginx", {"server_root": "/srv/nginx", "ctl": "nginx"})
    installer = lineage.settings.installer
    assert installer is not None
    assert installer.kind == "nginx"
    assert dict(installer.options)["server_root"] == "/srv/nginx"
    text = " ".join(lineage.warnings)
    assert "certherd install n.test`" in text
    assert "no certherd equivalent" not in text


def test_apache_maps_to_the_apache_solver_and_installer(certbot: CertbotDir) -> None:
    """Issue 13: Certbot's apache authenticator and installer become certherd's (same
    server root and control script), and the warning says how to move the TLS vhosts."""
    certbot.lineage(
        "a.test",
        "authenticator = apache\ninstaller = apache\napache_server_root = /srv/apache2\n"
        "apache_ctl = /usr/local/sbin/apachectl\n",
    )
    certbot.lineage("b.test", "authenticator = apache\ninstaller = apache\n")
    lineage = certbot.read("a.test")
    (solver,) = lineage.settings.solvers
    assert (solver.kind, solver.options) == (
        "apache",
        {"server_root": "/srv/apache2", "ctl": "/usr/local/sbin/apachectl"},
    )
    installer = lineage.settings.installer
    assert installer is not None
    assert installer.kind == "apache"
    assert dict(installer.options)["server_root"] == "/srv/apache2"
    assert dict(installer.options)["ctl"] == "/usr/local/sbin/apachectl"
    text = " ".join(lineage.warnings)
    assert "certherd install a.test`" in text
    assert "-le-ssl.conf" in text
    assert "no certherd equivalent" not in text
    defaults = certbot.read("b.test").settings
    assert defaults.solvers[0].options == {"server_root": "/etc/apache2", "ctl": "apache2ctl"}
    assert defaults.installer is not None
    assert dict(defaults.installer.options)["ctl"] == "apache2ctl"


def test_dns_plugins_map_to_lexicon_providers(certbot: CertbotDir) -> None:
    certbot.lineage(
        "d.test",
        "authenticator = dns-cloudflare\ndns_cloudflare_credentials = /root/cf.ini\n"
        "dns_cloudflare_propagation_seconds = 300\n",
    )
    certbot.lineage("g.test", "authenticator = certbot-dns-google:dns-google\n")
    cloudflare = certbot.read("d.test")
    assert cloudflare.settings.solvers[0].kind == "dns"
    assert cloudflare.settings.solvers[0].options == {
        "provider": "lexicon:cloudflare",
        "propagation_timeout": "300",
    }
    assert any("/root/cf.ini" in w and "LEXICON_CLOUDFLARE_" in w for w in cloudflare.warnings)
    google = certbot.read("g.test").settings.solvers[0]
    assert google.options == {"provider": "lexicon:googleclouddns"}


def test_rfc2136_takes_everything_but_the_secret(certbot: CertbotDir, tmp_path: Path) -> None:
    credentials = tmp_path / "rfc2136.ini"
    credentials.write_text(
        "# Certbot's rfc2136 credentials\ndns_rfc2136_server = 192.0.2.1\n"
        "dns_rfc2136_port = 5353\ndns_rfc2136_name = certbot.\n"
        "dns_rfc2136_secret = c2VjcmV0\ndns_rfc2136_algorithm = HMAC-SHA512\n"
    )
    certbot.lineage(
        "r.test", f"authenticator = dns-rfc2136\ndns_rfc2136_credentials = {credentials}\n"
    )
    lineage = certbot.read("r.test")
    assert lineage.settings.solvers[0].options == {
        "provider": "rfc2136",
        "server": "192.0.2.1",
        "port": "5353",
        "key_name": "certbot.",
        "algorithm": "hmac-sha512",
    }
    assert "c2VjcmV0" not in lineage.settings.to_json().decode()
    assert any("CERTHERD_RFC2136_KEY_SECRET" in w for w in lineage.warnings)


def test_rfc2136_without_readable_credentials(certbot: CertbotDir, tmp_path: Path) -> None:
    certbot.lineage(
        "r.test", f"authenticator = dns-rfc2136\ndns_rfc2136_credentials = {tmp_path}/gone.ini\n"
    )
    lineage = certbot.read("r.test")
    assert lineage.settings.solvers[0].options == {"provider": "rfc2136"}
    assert any("gone.ini is missing: set CERTHERD_RFC2136_SERVER" in w for w in lineage.warnings)


def test_manual_hooks_run_through_an_adapter(certbot: CertbotDir, tmp_path: Path) -> None:
    log = tmp_path / "hook.log"
    auth = (
        f'echo "auth $CERTBOT_DOMAIN $CERTBOT_VALIDATION $CERTBOT_ALL_DOMAINS" >> {log}; echo id-7'
    )
    cleanup = f'echo "cleanup $CERTBOT_DOMAIN $CERTBOT_AUTH_OUTPUT" >> {log}'
    certbot.lineage(
        "m.test",
        f"authenticator = manual\npref_challs = dns-01,\nmanual_auth_hook = '{auth}'\n"
        f"manual_cleanup_hook = '{cleanup}'\n",
        names=["m.test", "*.m.test"],
    )
    hook_dir = tmp_path / "hooks"
    lineage = certbot.read("m.test", hook_dir)
    script = hook_dir / "certbot-manual-m.test.sh"
    assert [(s.kind, s.options, s.names) for s in lineage.settings.solvers] == [
        ("hook", {"challenge": "dns-01", "command": str(script), "timeout": "600"}, ())
    ]
    hook_dir.mkdir()
    script.write_text(lineage.scripts[script])
    script.chmod(0o700)
    env = {
        "PATH": os.environ["PATH"],
        "CERTHERD_CHALLENGE_TYPE": "dns-01",
        "CERTHERD_IDENTIFIER": "*.m.test",
        "CERTHERD_TOKEN": "tok",
        "CERTHERD_KEY_AUTHORIZATION": "tok.thumb",
        "CERTHERD_DNS_VALUE": "dnsvalue",
    }
    for action in ("present", "cleanup"):
        subprocess.run([str(script), action], env=env, check=True, timeout=10)
    assert log.read_text().splitlines() == [
        "auth m.test dnsvalue m.test,*.m.test",
        "cleanup m.test id-7",
    ]
    assert list(hook_dir.iterdir()) == [script]  # the saved output is gone


def test_manual_http_with_a_wildcard_uses_dns_for_it(certbot: CertbotDir, tmp_path: Path) -> None:
    certbot.lineage(
        "m.test",
        "authenticator = manual\nmanual_auth_hook = /bin/true\n",
        names=["m.test", "*.m.test"],
    )
    solvers = certbot.read("m.test", tmp_path).settings.solvers
    assert [(s.options["challenge"], s.names) for s in solvers] == [
        ("dns-01", ("*.m.test",)),
        ("http-01", ()),
    ]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("authenticator = manual\n", "without manual_auth_hook"),
        ("authenticator = null\n", "authenticator 'null'"),
        ("authenticator = certbot-plugin-exotic:exotic\n", "certherd has no equivalent"),
        ("key_type = ecdsa\n", "no authenticator"),
        ("authenticator = dns-nosuchdnshost\n", "no provider 'nosuchdnshost'"),
        ("authenticator = standalone\nhttp01_port = eighty\n", "not a port number"),
        ("authenticator = webroot\n", "webroot: no folder for x.test"),
    ],
)
def test_what_cannot_be_mapped_fails(
    certbot: CertbotDir, tmp_path: Path, params: str, message: str
) -> None:
    certbot.lineage("x.test", params, versions=1)
    with pytest.raises(ConfigError, match=message):
        certbot.read("x.test", tmp_path)


@pytest.mark.parametrize(
    ("params", "key_type", "expected", "warned"),
    [
        ("key_type = ecdsa\nelliptic_curve = secp384r1\n", "ec", "ec384", False),
        ("key_type = ecdsa\nelliptic_curve = secp521r1\n", "ec", "ec384", True),
        ("key_type = ecdsa\nelliptic_curve = prime256v1\n", "ec", "ec256", False),
        ("key_type = rsa\nrsa_key_size = 8192\n", "rsa", "rsa4096", True),
        ("key_type = dsa\nrsa_key_size = 2048\n", "rsa", "rsa2048", True),
        ("key_type = rsa\nrsa_key_size = 3072\n", "rsa", "rsa3072", False),
        ("rsa_key_size = 2560\n", "rsa", "rsa3072", True),
        ("", "ec", "ec256", False),  # older Certbot: the live key tells
        ("", "rsa", "rsa2048", False),
    ],
)
def test_key_types(
    certbot: CertbotDir, params: str, key_type: str, expected: str, warned: bool
) -> None:
    certbot.lineage("k.test", "authenticator = standalone\n" + params, key_type=key_type)
    lineage = certbot.read("k.test")
    assert lineage.settings.key_type == expected
    assert bool(lineage.warnings) is warned


def test_hooks_chain_and_profile(certbot: CertbotDir) -> None:
    for kind, program in (("pre", "10-stop"), ("deploy", "reload"), ("deploy", "old~")):
        path = certbot.root / "renewal-hooks" / kind / program
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    (certbot.root / "renewal-hooks" / "post" / "not-executable").write_text("x")
    certbot.lineage(
        "h.test",
        "authenticator = standalone\npre_hook = systemctl stop nginx\n"
        'post_hook = "systemctl start nginx, apache"\nrenew_hook = /usr/local/bin/push\n'
        "preferred_chain = ISRG Root X1\nreuse_key = True\nrequired_profile = tlsserver\n"
        "must_staple = True\n",
    )
    lineage = certbot.read("h.test")
    hooks = lineage.settings.hooks
    hook_dir = certbot.root / "renewal-hooks"
    assert hooks.pre == (str(hook_dir / "pre" / "10-stop"), "systemctl stop nginx")
    assert hooks.post == ("systemctl start nginx, apache",)
    assert hooks.deploy == (str(hook_dir / "deploy" / "reload"), "/usr/local/bin/push")
    assert lineage.settings.preferred_chain == "ISRG Root X1"
    assert lineage.settings.reuse_key is True
    assert lineage.settings.profile == "tlsserver"
    assert any("must-staple" in w for w in lineage.warnings)
    assert any("directory hooks" in w for w in lineage.warnings)


def test_a_moved_certbot_dir_is_found_where_it_is(certbot: CertbotDir, tmp_path: Path) -> None:
    certbot.lineage("x.test", "authenticator = standalone\n")
    moved = tmp_path / "copy"
    certbot.root.rename(moved)  # the renewal file still names the old absolute paths
    lineage = read_lineage(moved, moved / "renewal" / "x.test.conf", now=NOW)
    assert lineage.live_version == 2


def test_acme_v1_servers_move_to_v2(certbot: CertbotDir) -> None:
    certbot.lineage("x.test", "authenticator = standalone\n")
    conf = certbot.root / "renewal" / "x.test.conf"
    conf.write_text(
        conf.read_text().replace(SERVER, "https://acme-v01.api.letsencrypt.org/directory")
    )
    lineage = certbot.read("x.test")  # the account is found by its id wherever it is
    assert lineage.settings.directory_url == "https://acme-v02.api.letsencrypt.org/directory"
    assert lineage.account.url == ACCOUNT_URL


def test_missing_files_are_named(certbot: CertbotDir) -> None:
    certbot.lineage("x.test", "authenticator = standalone\n")
    for link in (certbot.root / "live" / "x.test").iterdir():
        link.unlink()
    with pytest.raises(ConfigError, match=r"live/x.test/cert.pem is missing"):
        certbot.read("x.test")


def test_an_older_live_version_and_an_incomplete_one(certbot: CertbotDir) -> None:
    certbot.lineage("x.test", "authenticator = standalone\n", versions=3, live=2)
    (certbot.root / "archive" / "x.test" / "chain3.pem").unlink()
    lineage = certbot.read("x.test")
    assert lineage.live_version == 2
    assert sorted(lineage.versions) == [1, 2]
    assert any("version 3 is incomplete" in w for w in lineage.warnings)


# -- the import ---------------------------------------------------------------------------


async def test_import_writes_versions_live_state_settings_and_account(
    certbot: CertbotDir, tmp_path: Path
) -> None:
    made = certbot.lineage(
        "x.test", "authenticator = standalone\nkey_type = ecdsa\n", names=["x.test", "www.x.test"]
    )
    certbot.lineage("broken.test", "authenticator = standalone\n")
    (certbot.root / "archive" / "broken.test" / "privkey2.pem").write_text("garbage")
    before = certbot.snapshot()
    storage = FilesystemStorage(tmp_path / "certherd")

    results = await import_certbot(certbot.root, storage, ca_bundle="/ca.pem", now=NOW)

    assert certbot.snapshot() == before  # Certbot's directory is only read
    by_name = {r.lineage: r for r in results}
    assert by_name["broken.test"].status == "failed"
    assert "privkey2.pem is not a usable private key" in by_name["broken.test"].reason
    imported = by_name["x.test"]
    assert imported.status == "imported"
    assert imported.versions == (1, 2)
    assert imported.account == "default"
    live = tmp_path / "certherd" / "live" / "x.test"
    for file, data in made[1].items():
        assert (live / file).read_bytes() == data
        assert os.readlink(live / file) == f"../../archive/x.test/{file[:-4]}2.pem"
    assert (tmp_path / "certherd" / "archive" / "x.test" / "cert1.pem").read_bytes() == made[0][
        "cert.pem"
    ]
    assert (
        tmp_path / "certherd" / "archive" / "x.test" / "privkey1.pem"
    ).stat().st_mode & 0o077 == 0
    settings = await LineageSettings.load(storage, "x.test")
    assert settings.account == "default"
    assert settings.ca_bundle == "/ca.pem"
    state = await LineageState.load(storage, "x.test")
    leaf = x509.load_pem_x509_certificate(made[1]["cert.pem"])
    assert state.version == 2
    assert state.serial == format(leaf.serial_number, "x")
    assert state.not_after == leaf.not_valid_after_utc
    assert state.next_check is not None
    account = await load_account(storage, CaOptions(SERVER))
    assert account.url == ACCOUNT_URL
    assert public_key_equal(account.key.public_key(), RSA_KEY.public_key())


async def test_import_again_skips_replace_reimports(certbot: CertbotDir, tmp_path: Path) -> None:
    certbot.lineage("x.test", "authenticator = standalone\n", versions=1)
    storage = FilesystemStorage(tmp_path / "certherd")
    assert [r.status for r in await import_certbot(certbot.root, storage, now=NOW)] == ["imported"]
    # certherd renewed it meanwhile: version 2 is certherd's own.
    for file in ("cert", "chain", "fullchain", "privkey"):
        await storage.write(f"archive/x.test/{file}2.pem", b"certherd's")

    again = await import_certbot(certbot.root, storage, now=NOW)
    assert [(r.status, r.reason) for r in again] == [("skipped", "certherd has it already")]

    replaced = await import_certbot(certbot.root, storage, replace=True, now=NOW)
    assert [r.status for r in replaced] == ["imported"]
    assert await storage.list("archive/x.test") == [
        f"archive/x.test/{file}1.pem" for file in ("cert", "chain", "fullchain", "privkey")
    ]


async def test_dry_run_writes_nothing(certbot: CertbotDir, tmp_path: Path) -> None:
    certbot.lineage("x.test", "authenticator = standalone\n")
    storage = FilesystemStorage(tmp_path / "certherd")
    results = await import_certbot(certbot.root, storage, dry_run=True, now=NOW)
    assert [(r.status, r.versions, r.account_url) for r in results] == [
        ("would-import", (1, 2), ACCOUNT_URL)
    ]
    assert not (tmp_path / "certherd").exists()


async def test_a_different_default_account_is_kept(certbot: CertbotDir, tmp_path: Path) -> None:
    from certherd.manager.accounts import AccountRecord, save_account

    storage = FilesystemStorage(tmp_path / "certherd")
    mine = ec.generate_private_key(ec.SECP256R1())
    await save_account(
        storage, CaOptions(SERVER), AccountRecord(mine, "https://acme.example.test/acct/1")
    )
    certbot.lineage("x.test", "authenticator = standalone\n")
    [result] = await import_certbot(certbot.root, storage, now=NOW)
    assert result.account == f"certbot-{ACCOUNT_ID[:16]}"
    assert (await load_account(storage, CaOptions(SERVER))).url.endswith("/acct/1")
    imported = await load_account(storage, CaOptions(SERVER, account=result.account))
    assert imported.url == ACCOUNT_URL


async def test_not_a_certbot_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a Certbot configuration directory"):
        await import_certbot(tmp_path, FilesystemStorage(tmp_path / "c"))


# -- the command --------------------------------------------------------------------------


def test_command_json_and_exit_codes(
    certbot: CertbotDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    certbot.lineage("x.test", "authenticator = standalone\n")
    certbot.lineage("bad.test", "authenticator = exotic\n")
    config = tmp_path / "certherd"
    with pytest.raises(SystemExit) as exited:
        main(["--config-dir", str(config), "--json", "import-certbot", str(certbot.root)])
    assert exited.value.code == 1
    document = json.loads(capsys.readouterr().out)
    assert (document["imported"], document["failed"], document["skipped"]) == (1, 1, 0)
    by_name = {d["lineage"]: d for d in document["lineages"]}
    assert by_name["x.test"]["live_version"] == 2
    assert by_name["x.test"]["solvers"] == [
        {"kind": "http", "names": [], "options": {"listen": "80"}}
    ]
    assert "authenticator 'exotic'" in by_name["bad.test"]["reason"]

    with pytest.raises(SystemExit) as exited:
        main(["--config-dir", str(config), "import-certbot", str(tmp_path / "nowhere")])
    assert exited.value.code == 2
    assert "not a Certbot configuration directory" in capsys.readouterr().err


def test_command_human_output(
    certbot: CertbotDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    certbot.lineage("n.test", "authenticator = standalone\ninstaller = lighttpd\n", versions=1)
    main(["--config-dir", str(tmp_path / "c"), "import-certbot", "--dry-run", str(certbot.root)])
    out, err = capsys.readouterr()
    assert "would-import" in out  # the result on stdout, warnings on stderr
    assert "Certbot's lighttpd installer reloaded the server" in " ".join(err.split())


async def test_a_certbot_dir_another_user_can_change_is_not_imported(
    certbot: CertbotDir, tmp_path: Path
) -> None:
    """Its hooks would run as root: a Certbot dir others can write is refused, unread."""
    assert os.geteuid() == 0, "this test gives a folder to nobody: run the suite as root"
    certbot.lineage("x.test", "authenticator = standalone\ndeploy_hook = /bin/true\n")
    storage = FilesystemStorage(tmp_path / "certherd")
    os.chown(certbot.root / "renewal", 65534, 65534)  # nobody could swap x.test.conf
    with pytest.raises(
        ConfigError,
        match=r"not importing from .*renewal \(owner nobody, mode 0755\) belongs to another user",
    ):
        await import_certbot(certbot.root, storage, now=NOW)
    os.chown(certbot.root / "renewal", 0, 0)
    (certbot.root).chmod(0o777)
    with pytest.raises(ConfigError, match=r"is writable by group or others") as caught:
        await import_certbot(certbot.root, storage, now=NOW)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "certherd").exists()

    # A renewal file another user may write is that lineage's failure, the rest go on.
    certbot.root.chmod(0o755)
    certbot.lineage("y.test", "authenticator = standalone\n")
    os.chown(certbot.root / "renewal" / "x.test.conf", 65534, 65534)
    results = {r.lineage: r for r in await import_certbot(certbot.root, storage, now=NOW)}
    assert results["x.test"].status == "failed"
    assert "a file another user can change" in results["x.test"].reason
    assert results["y.test"].status == "imported"


def test_certbot_haproxy_installer_maps_to_the_haproxy_installer(certbot: CertbotDir) -> None:
    """certbot-haproxy (greenhost's plugin; Certbot has none) wrote DOMAIN.pem into its
    crt dir and restarted HAProxy: the lineage keeps that crt dir, now hot-swapped."""
    certbot.lineage(
        "h.test",
        "authenticator = standalone\ninstaller = haproxy-installer\n"
        "haproxy_installer_haproxy_crt_dir = /srv/haproxy/crt/\n",
    )
    lineage = certbot.read("h.test")
    installer = lineage.settings.installer
    assert installer is not None
    assert installer.kind == "haproxy"
    assert dict(installer.options) == {
        "config": "/etc/haproxy/haproxy.cfg",
        "crt_dir": "/srv/haproxy/crt",
        "ctl": "haproxy",
        "https_port": "443",
        "socket": "",
    }
    text = " ".join(lineage.warnings)
    assert "/srv/haproxy/crt/h.test.pem" in text
    assert "systemctl reload" not in text
    certbot.lineage(
        "o.test", "authenticator = standalone\ninstaller = certbot-haproxy:haproxy-installer\n"
    )
    other = certbot.read("o.test").settings.installer
    assert other is not None
    assert dict(other.options)["crt_dir"] == "/etc/ssl/crt"
