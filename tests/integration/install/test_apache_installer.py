"""The Apache installer against a real Apache (Debian's, its /etc/apache2 copied into a
temporary server root): a vhost outside Debian's sites layout gets its TLS copy through
an Include after it, a name another vhost already serves over TLS is refused with
nothing changed, http-01 answers through a vhost that rewrites everything to HTTPS, a
change Apache refuses is undone, and uninstall gives back the original bytes. Pebble
comes in in the e2e tests (tests/e2e/test_cli_apache.py); here certificates come from a
small CA of the test's.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from tests.servers.apache import ApacheRoot
from tests.servers.fixtures import start_or_fail
from tests.servers.net import LOOPBACK, ServerStartError, free_port

from certherd.errors import ConfigError, InstallError
from certherd.install.apache.installer import ApacheInstaller
from certherd.testing.pki import MiniCA

MAIN_VHOST = """
# a vhost in the main config, outside sites-enabled/
<VirtualHost *:{port}>
    ServerName main.apache.test
    DocumentRoot {html}
</VirtualHost>
"""
MOVED = """<VirtualHost *:{port}>
    ServerName moved.apache.test
    RewriteEngine on
    RewriteRule ^ https://%{HTTP_HOST}%{REQUEST_URI} [R=301,L]
</VirtualHost>
"""


@pytest.fixture
def apache(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApacheRoot]:
    try:
        root = ApacheRoot()
    except ServerStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    monkeypatch.setenv("APACHE_STATE_DIRECTORY", str(root.state))
    yield root
    root.stop()


def fill(root: ApacheRoot, text: str) -> str:
    return text.replace("{port}", str(root.http_port)).replace("{html}", str(root.root / "html"))


def certificate(folder: Path, names: list[str]) -> tuple[Path, Path]:
    folder.mkdir(exist_ok=True)
    return MiniCA.create("test CA").write_server_files(folder, "cert", names)


def serial(path: Path) -> int:
    return x509.load_pem_x509_certificates(path.read_bytes())[0].serial_number


async def test_a_vhost_outside_sites_enabled_gets_an_include_after_it(
    apache: ApacheRoot,
) -> None:
    main = apache.root / "apache2.conf"
    main.write_text(main.read_text() + fill(apache, MAIN_VHOST))
    before = apache.snapshot()
    start_or_fail(apache)
    cert, key = certificate(apache.root / "live", ["main.apache.test"])
    installer = ApacheInstaller(apache.root, https_port=free_port())
    await installer.install("main", ["main.apache.test"], cert, key)
    text = main.read_text()
    assert text.endswith(
        "</VirtualHost>\n# certherd: TLS copy of this vhost\n"
        f'Include "{apache.root}/main-certherd.conf"\n'
    )
    served = await asyncio.to_thread(
        apache.served_certificate, installer.https_port, "main.apache.test"
    )
    assert served is not None
    assert served.serial_number == serial(cert)
    pid = apache.master_pid
    assert await installer.uninstall("main") is True
    assert apache.snapshot() == before
    assert await installer.uninstall("main") is False
    assert apache.master_pid == pid


async def test_a_name_served_over_tls_by_another_vhost_is_refused(apache: ApacheRoot) -> None:
    cert, key = certificate(apache.root / "theirs", ["shop.apache.test"])
    https_port = free_port()
    (apache.root / "mods-enabled" / "ssl.load").symlink_to("../mods-available/ssl.load")
    (apache.root / "mods-enabled" / "ssl.conf").symlink_to("../mods-available/ssl.conf")
    (apache.root / "mods-enabled" / "socache_shmcb.load").symlink_to(
        "../mods-available/socache_shmcb.load"
    )
    apache.site(
        "shop",
        fill(apache, "<VirtualHost *:{port}>\n    ServerName shop.apache.test\n</VirtualHost>\n")
        + f"Listen {https_port}\n<VirtualHost *:{https_port}>\n    ServerName shop.apache.test\n"
        f'    SSLEngine on\n    SSLCertificateFile "{cert}"\n    SSLCertificateKeyFile "{key}"\n'
        "</VirtualHost>\n",
    )
    before = apache.snapshot()
    start_or_fail(apache)
    installer = ApacheInstaller(apache.root, https_port=https_port)
    mine, my_key = certificate(apache.root / "live", ["shop.apache.test"])
    with pytest.raises(ConfigError, match=r"shop.conf:5 already serves shop.apache.test over TLS"):
        await installer.install("shop", ["shop.apache.test"], mine, my_key)
    with pytest.raises(ConfigError, match="already serves"):
        await installer.check("shop", ["shop.apache.test"])
    assert apache.snapshot() == before


async def test_http01_answers_through_a_vhost_that_rewrites_to_https(
    apache: ApacheRoot,
) -> None:
    (apache.root / "mods-enabled" / "rewrite.load").symlink_to("../mods-available/rewrite.load")
    apache.site("moved", fill(apache, MOVED))
    before = apache.snapshot()
    start_or_fail(apache)
    installer = ApacheInstaller(apache.root)
    url = f"http://{LOOPBACK}:{apache.http_port}/.well-known/acme-challenge/tok-en_1"
    headers = {"Host": "moved.apache.test"}
    async with httpx.AsyncClient(trust_env=False) as client:
        assert (await client.get(url, headers=headers)).status_code == 301
        vhosts = await installer.prepare_http01(["moved.apache.test"])
        assert [v.names[0] for v in vhosts] == ["moved.apache.test"]
        answer = installer.challenge_root / ".well-known" / "acme-challenge" / "tok-en_1"
        answer.parent.mkdir(parents=True, exist_ok=True)
        answer.parent.chmod(0o755)
        answer.write_text("tok-en_1.thumbprint")
        answer.chmod(0o644)
        got = await client.get(url, headers=headers)
        assert (got.status_code, got.text) == (200, "tok-en_1.thumbprint")
        assert got.headers["content-type"].startswith("text/plain")
        await installer.finish_http01()
        assert (await client.get(url, headers=headers)).status_code == 301
    assert apache.snapshot() == before


async def test_a_change_apache_refuses_is_undone_with_its_message(apache: ApacheRoot) -> None:
    vhost = "<VirtualHost *:{port}>\n    ServerName shop.apache.test\n</VirtualHost>\n"
    apache.site("shop", fill(apache, vhost))
    before = apache.snapshot()
    start_or_fail(apache)
    installer = ApacheInstaller(apache.root, https_port=free_port())
    missing = apache.root / "live" / "nothing.pem"
    with pytest.raises(InstallError, match=r"previous bytes again: .*nothing\.pem") as refused:
        await installer.install("shop", ["shop.apache.test"], missing, missing)
    assert "\n" not in str(refused.value)
    assert apache.snapshot() == before  # a2enmod's links taken away again too
    assert not list(apache.root.rglob("*-certherd.conf"))


async def test_http01_reaches_an_ip_based_vhost_that_takes_the_connection(
    apache: ApacheRoot,
) -> None:
    """Apache gives a connection to 127.0.0.1 to the vhosts of that exact address first
    (name matching only among them): the challenge must answer there too, not only in
    the ``*`` vhost whose ServerName matches."""
    apache.site(
        "both",
        fill(
            apache,
            "<VirtualHost 127.0.0.1:{port}>\n    ServerName internal.apache.test\n"
            "</VirtualHost>\n<VirtualHost *:{port}>\n    ServerName ip.apache.test\n"
            "</VirtualHost>\n",
        ),
    )
    before = apache.snapshot()
    start_or_fail(apache)
    installer = ApacheInstaller(apache.root)
    url = f"http://{LOOPBACK}:{apache.http_port}/.well-known/acme-challenge/t0k"
    headers = {"Host": "ip.apache.test"}
    await installer.prepare_http01(["ip.apache.test"])
    answer = installer.challenge_root / ".well-known" / "acme-challenge" / "t0k"
    answer.parent.mkdir(parents=True, exist_ok=True)
    answer.parent.chmod(0o755)
    answer.write_text("t0k.thumbprint")
    answer.chmod(0o644)
    async with httpx.AsyncClient(trust_env=False) as client:
        got = await client.get(url, headers=headers)
    assert (got.status_code, got.text) == (200, "t0k.thumbprint")
    await installer.finish_http01()
    assert apache.snapshot() == before


async def test_beside_debians_default_ssl_site(apache: ApacheRoot) -> None:
    """Debian's own default-ssl.conf enabled (``*:443``, no ServerName) on the
    port ports.conf opens when mod_ssl loads: certherd's copy joins it on that port
    without a Listen of its own, serves its name by SNI, and default-ssl still serves
    every other name; uninstall leaves both files and every link as they were."""
    theirs, their_key = certificate(apache.root / "snakeoil", ["localhost"])
    default_ssl = apache.root / "sites-available" / "default-ssl.conf"
    text = default_ssl.read_text().replace("*:443", f"*:{apache.ssl_port}")
    text = text.replace("/etc/ssl/certs/ssl-cert-snakeoil.pem", str(theirs))
    default_ssl.write_text(text.replace("/etc/ssl/private/ssl-cert-snakeoil.key", str(their_key)))
    (apache.root / "sites-enabled" / "default-ssl.conf").symlink_to(
        "../sites-available/default-ssl.conf"
    )
    for name in ("ssl.load", "ssl.conf", "socache_shmcb.load"):
        (apache.root / "mods-enabled" / name).symlink_to(f"../mods-available/{name}")
    vhost = "<VirtualHost *:{port}>\n    ServerName shop.apache.test\n</VirtualHost>\n"
    apache.site("shop", fill(apache, vhost))
    before = apache.snapshot()
    start_or_fail(apache)
    installer = ApacheInstaller(apache.root, https_port=apache.ssl_port)
    cert, key = certificate(apache.root / "live", ["shop.apache.test"])
    await installer.install("shop", ["shop.apache.test"], cert, key)
    copy = (apache.root / "sites-available" / "shop-certherd.conf").read_text()
    assert "Listen" not in copy
    assert f"<VirtualHost *:{apache.ssl_port}>" in copy
    mine = await asyncio.to_thread(apache.served_certificate, apache.ssl_port, "shop.apache.test")
    other = await asyncio.to_thread(apache.served_certificate, apache.ssl_port, "else.test")
    assert mine is not None
    assert mine.serial_number == serial(cert)
    assert other is not None
    assert other.serial_number == serial(theirs)
    assert await installer.uninstall("shop") is True
    assert apache.snapshot() == before


def _https_get(address: str, port: int, name: str) -> tuple[int, bytes]:
    """GET / over TLS from ``address`` with SNI and Host ``name`` (unverified): the
    serial of the certificate served and the answer."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((address, port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number, answer


def _apache_vhosts(apache: ApacheRoot) -> str:
    """Apache's own account of its vhosts: ``apache2ctl -S`` (DUMP_VHOSTS)."""
    done = subprocess.run(
        ["apache2ctl", "-S"],
        env={**os.environ, "APACHE_CONFDIR": str(apache.root)},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout


async def test_each_address_serving_a_name_gets_its_tls_copy_on_that_address(
    apache: ApacheRoot,
) -> None:
    """A name two IP-based vhosts serve, each its own content on its own address: each
    gets a TLS copy on its own address and the HTTPS port (Apache's own ``-S`` says so:
    no ``*`` copy), and HTTPS on each address answers with that address's content."""
    plain = free_port()
    html = apache.root / "html"
    for where in ("two", "three"):
        (html / where).mkdir()
        (html / where / "index.html").write_text(f"from {where}\n")
    apache.site(
        "addresses",
        f"Listen 127.0.0.2:{plain}\nListen 127.0.0.3:{plain}\n"
        f"<VirtualHost 127.0.0.2:{plain}>\n    ServerName addr.apache.test\n"
        f"    DocumentRoot {html}/two\n</VirtualHost>\n"
        f"<VirtualHost 127.0.0.3:{plain}>\n    ServerName addr.apache.test\n"
        f"    DocumentRoot {html}/three\n</VirtualHost>\n",
    )
    before = apache.snapshot()
    start_or_fail(apache)
    https = free_port()
    installer = ApacheInstaller(apache.root, https_port=https)
    cert, key = certificate(apache.root / "live", ["addr.apache.test"])
    await installer.install("addr", ["addr.apache.test"], cert, key)
    vhosts = _apache_vhosts(apache)
    for address in ("127.0.0.2", "127.0.0.3"):
        line = (
            rf"^{re.escape(address)}:{https}\s+addr\.apache\.test \(\S+/addr-certherd\.conf:\d+\)$"
        )
        assert re.search(line, vhosts, re.MULTILINE), vhosts
    assert f"*:{https}" not in vhosts
    for address, where in (("127.0.0.2", "two"), ("127.0.0.3", "three")):
        served, answer = await asyncio.to_thread(_https_get, address, https, "addr.apache.test")
        assert served == serial(cert)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
        assert answer.endswith(f"from {where}\n".encode())
    assert await installer.uninstall("addr") is True
    assert apache.snapshot() == before


async def test_a_request_right_after_a_renewal_sees_the_new_certificate(
    apache: ApacheRoot, tmp_path: Path
) -> None:
    """``after_renewal`` returns once the graceful restart took: the very next TLS
    connection, with no wait, gets the new certificate (five renewals in a row), and
    the parent is the same process throughout."""
    apache.site("shop", fill(apache, "<VirtualHost *:{port}>\n    ServerName shop.apache.test\n"
                                     "</VirtualHost>\n"))  # fmt: skip
    start_or_fail(apache)
    parent = apache.master_pid
    https = free_port()
    installer = ApacheInstaller(apache.root, https_port=https)
    live = apache.root / "live"
    cert, key = certificate(live, ["shop.apache.test"])
    await installer.install("shop", ["shop.apache.test"], cert, key)
    for round in range(5):
        new_cert, new_key = certificate(tmp_path / f"v{round}", ["shop.apache.test"])
        for new, path in ((new_key, key), (new_cert, cert)):  # as live/ links switch
            staged = path.with_name(f".{path.name}.new")
            staged.write_bytes(new.read_bytes())
            os.replace(staged, path)
        await installer.after_renewal("shop", cert, key)
        served = apache.served_certificate(https, "shop.apache.test")  # at once
        assert served is not None
        assert served.serial_number == serial(new_cert), f"renewal {round + 1}"
    assert apache.master_pid == parent


async def test_uninstall_takes_out_every_include_of_a_file(apache: ApacheRoot) -> None:
    """A vhost outside sites-enabled installed with ``redirect``: its file gets both of
    certherd's includes, the redirect inside the vhost and the TLS copy after it (the
    redirect's edit was made on the file's first bytes and overwrote the other: no TLS
    at all, and nothing said so), and uninstall takes both out again."""
    main = apache.root / "apache2.conf"
    main.write_text(main.read_text() + fill(apache, MAIN_VHOST))
    before = apache.snapshot()
    start_or_fail(apache)
    cert, key = certificate(apache.root / "live", ["main.apache.test"])
    installer = ApacheInstaller(apache.root, https_port=free_port(), redirect=True)
    await installer.install("main", ["main.apache.test"], cert, key)
    text = main.read_text()
    assert f'Include "{apache.root}/main-certherd.conf"' in text
    assert f'Include "{installer.redirect_conf("main")}"' in text
    served = await asyncio.to_thread(
        apache.served_certificate, installer.https_port, "main.apache.test"
    )
    assert served is not None  # the TLS copy is read: HTTPS is served
    assert served.serial_number == serial(cert)
    assert await installer.uninstall("main") is True
    assert apache.snapshot() == before
