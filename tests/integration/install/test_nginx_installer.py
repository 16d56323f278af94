"""The nginx installer against a real nginx (Debian's) in a temporary server root:
TLS per matched server block, http-01 through the running server, refusals that change
nothing, and uninstall giving back the original bytes. Pebble comes in in the e2e tests
(tests/e2e/test_cli_nginx.py); here certificates come from a small CA of the test's.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from tests.servers.fixtures import start_or_fail
from tests.servers.net import LOOPBACK, free_port
from tests.servers.nginx import NginxRoot

from certherd.errors import ConfigError, InstallError
from certherd.install.nginx.installer import NginxInstaller
from certherd.testing.pki import MiniCA

SITES = """# the user's sites
server {
    listen 127.0.0.1:{port};
    server_name shop.example.test;   # the shop
    root {html};
    location / { try_files $uri $uri/ =404; }
}
server { listen 127.0.0.1:{port}; server_name *.blog.example.test; root {html}; }
server {
    listen 127.0.0.1:{port};
    server_name moved.example.test;   # everything to HTTPS, as many sites do
    return 301 https://$host$request_uri;
}
server {
    listen 127.0.0.1:{port} default_server;
    server_name _;
    return 404;
}
"""


def sites(root: NginxRoot) -> str:
    text = SITES.replace("{port}", str(root.http_port))
    return text.replace("{html}", str(root.root / "html"))


def certificate(folder: Path, names: list[str]) -> tuple[Path, Path]:
    folder.mkdir(exist_ok=True)
    return MiniCA.create("test CA").write_server_files(folder, "cert", names)


def installer(root: NginxRoot, **options: object) -> NginxInstaller:
    return NginxInstaller(root.root, https_port=free_port(), **options)  # type: ignore[arg-type]


async def test_install_serves_each_name_and_uninstall_restores_bytes(
    nginx_root: NginxRoot,
) -> None:
    nginx_root.site("default", sites(nginx_root))
    before = nginx_root.snapshot()
    start_or_fail(nginx_root)
    names = ["shop.example.test", "a.blog.example.test"]
    cert, key = certificate(nginx_root.root / "live", names)
    nginx = installer(nginx_root)
    blocks = await nginx.install("shop", names, cert, key)
    assert len(blocks) == 2
    for name in names:
        served = await asyncio.to_thread(nginx_root.served_certificate, nginx.https_port, name)
        assert served is not None
        assert served.serial_number == _serial(cert)
    pid = nginx_root.master_pid
    assert nginx_root.snapshot() != before
    assert await nginx.uninstall("shop") is True
    assert nginx_root.snapshot() == before
    assert not list(nginx.owned.glob("tls-*"))
    assert await nginx.uninstall("shop") is False
    assert nginx_root.master_pid == pid


async def test_config_failing_its_test_is_refused_and_nothing_changes(
    nginx_root: NginxRoot,
) -> None:
    nginx_root.site("default", sites(nginx_root))
    start_or_fail(nginx_root)
    # Broken after nginx started: the running nginx keeps the config it has.
    broken = nginx_root.site("broken", "server { listen 127.0.0.1:1; bogus_directive on; }\n")
    before = nginx_root.snapshot()
    cert, key = certificate(nginx_root.root / "live", ["shop.example.test"])
    nginx = installer(nginx_root)
    with pytest.raises(InstallError, match="bogus_directive") as refused:
        await nginx.install("shop", ["shop.example.test"], cert, key)
    assert "changes nothing" in str(refused.value)
    with pytest.raises(InstallError, match="bogus_directive"):
        await nginx.prepare_http01(["shop.example.test"])
    assert nginx_root.snapshot() == before
    assert broken.read_text().startswith("server")
    assert not list(nginx.owned.glob("*.conf"))


async def test_change_nginx_refuses_is_undone_byte_for_byte(nginx_root: NginxRoot) -> None:
    nginx_root.site("default", sites(nginx_root))
    before = nginx_root.snapshot()
    start_or_fail(nginx_root)
    missing = nginx_root.root / "live" / "nothing.pem"
    nginx = installer(nginx_root)
    with pytest.raises(InstallError, match=r"previous bytes again: .*nothing\.pem"):
        await nginx.install("shop", ["shop.example.test"], missing, missing)
    assert nginx_root.snapshot() == before
    assert not nginx.tls_conf("shop").exists()
    # ... and the nginx that runs still serves the site.
    async with httpx.AsyncClient(trust_env=False) as client:
        answer = await client.get(
            f"http://{LOOPBACK}:{nginx_root.http_port}/",
            headers={"Host": "shop.example.test"},
        )
    assert answer.status_code == 200


async def test_name_without_server_block_is_refused(nginx_root: NginxRoot) -> None:
    nginx_root.site("default", sites(nginx_root))
    before = nginx_root.snapshot()
    start_or_fail(nginx_root)
    cert, key = certificate(nginx_root.root / "live", ["nobody.example.test"])
    with pytest.raises(ConfigError, match=r"server_name nobody\.example\.test"):
        await installer(nginx_root).install("nobody", ["nobody.example.test"], cert, key)
    assert nginx_root.snapshot() == before


async def test_http01_answered_through_nginx_then_removed(nginx_root: NginxRoot) -> None:
    nginx_root.site("default", sites(nginx_root))
    before = nginx_root.snapshot()
    start_or_fail(nginx_root)
    nginx = installer(nginx_root)
    url = f"http://{LOOPBACK}:{nginx_root.http_port}/.well-known/acme-challenge/tok"
    hosts = ["shop.example.test", "x.blog.example.test", "moved.example.test"]
    await nginx.prepare_http01(hosts)
    folder = nginx.challenge_root / ".well-known" / "acme-challenge"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tok").write_text("tok.thumbprint")
    async with httpx.AsyncClient(trust_env=False) as client:
        for host in hosts:
            answer = await client.get(url, headers={"Host": host})
            assert (answer.status_code, answer.text) == (200, "tok.thumbprint")
        await nginx.finish_http01()
        answer = await client.get(url, headers={"Host": "shop.example.test"})
        assert answer.status_code == 404
        answer = await client.get(url, headers={"Host": "moved.example.test"})
        assert answer.status_code == 301
    assert nginx_root.snapshot() == before
    assert not nginx.challenge_conf.exists()


async def test_redirect_spares_the_challenge_path(nginx_root: NginxRoot) -> None:
    nginx_root.site("default", sites(nginx_root))
    start_or_fail(nginx_root)
    cert, key = certificate(nginx_root.root / "live", ["shop.example.test"])
    nginx = installer(nginx_root, redirect=True)
    await nginx.install("shop", ["shop.example.test"], cert, key)
    await nginx.prepare_http01(["shop.example.test"])
    base = f"http://{LOOPBACK}:{nginx_root.http_port}"
    async with httpx.AsyncClient(trust_env=False) as client:
        page = await client.get(f"{base}/a?b=1", headers={"Host": "shop.example.test"})
        assert page.status_code == 301
        assert page.headers["location"] == (f"https://shop.example.test:{nginx.https_port}/a?b=1")
        challenge = await client.get(
            f"{base}/.well-known/acme-challenge/none", headers={"Host": "shop.example.test"}
        )
        assert challenge.status_code == 404  # answered over HTTP, not redirected
    await nginx.finish_http01()


def _serial(path: Path) -> int:
    from cryptography import x509

    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


async def test_name_already_served_over_tls_by_another_block_is_refused(
    nginx_root: NginxRoot,
) -> None:
    """The common hand-made layout: a port-80 block that redirects and a TLS block with
    the user's own certificate. certherd does not add a second certificate for the name
    (nginx would serve one of the two): it says which block to change."""
    https_port = free_port()
    own_cert, own_key = certificate(nginx_root.root / "own", ["moved.example.test"])
    nginx_root.site(
        "moved",
        f"server {{ listen 127.0.0.1:{nginx_root.http_port}; server_name moved.example.test;\n"
        "    return 301 https://$host$request_uri; }\n"
        f"server {{ listen 127.0.0.1:{https_port} ssl; server_name moved.example.test;\n"
        f'    ssl_certificate "{own_cert}"; ssl_certificate_key "{own_key}"; }}\n',
    )
    before = nginx_root.snapshot()
    start_or_fail(nginx_root)
    cert, key = certificate(nginx_root.root / "live", ["moved.example.test"])
    nginx = NginxInstaller(nginx_root.root, https_port=https_port)
    with pytest.raises(ConfigError, match=r"already serves moved\.example\.test over TLS"):
        await nginx.install("moved", ["moved.example.test"], cert, key)
    with pytest.raises(ConfigError, match=r"sites-enabled/moved:3"):
        await nginx.check("moved", ["moved.example.test"])
    assert nginx_root.snapshot() == before


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


async def test_each_address_serving_a_name_gets_the_challenge_and_tls(
    nginx_root: NginxRoot,
) -> None:
    """nginx gives a connection to the blocks listening on its exact address alone: a
    name two blocks serve on two addresses (their own content each) gets the http-01
    include in both and TLS on both addresses, each answering HTTPS with its content."""
    html = nginx_root.root / "html"
    port = nginx_root.http_port
    for where in ("two", "three"):
        (html / where).mkdir()
        (html / where / "index.html").write_text(f"from {where}\n")
    nginx_root.site(
        "default",
        f"server {{ listen 127.0.0.2:{port}; server_name addr.example.test; root {html}/two; }}\n"
        f"server {{ listen 127.0.0.3:{port}; server_name addr.example.test;\n"
        f"         root {html}/three; }}\n"
        f"server {{ listen 127.0.0.1:{port} default_server; return 404; }}\n",
    )
    before = nginx_root.snapshot()
    start_or_fail(nginx_root)
    nginx = installer(nginx_root)
    name = "addr.example.test"
    await nginx.prepare_http01([name])
    folder = nginx.challenge_root / ".well-known" / "acme-challenge"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tok").write_text("tok.thumbprint")
    async with httpx.AsyncClient(trust_env=False) as client:
        for address in ("127.0.0.2", "127.0.0.3"):
            url = f"http://{address}:{port}/.well-known/acme-challenge/tok"
            answer = await client.get(url, headers={"Host": name})
            assert (answer.status_code, answer.text) == (200, "tok.thumbprint"), address
    await nginx.finish_http01()
    cert, key = certificate(nginx_root.root / "live", [name])
    assert len(await nginx.install("addr", [name], cert, key)) == 2
    for address, where in (("127.0.0.2", "two"), ("127.0.0.3", "three")):
        served, answer = await asyncio.to_thread(_https_get, address, nginx.https_port, name)
        assert served == _serial(cert)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
        assert answer.endswith(f"from {where}\n".encode())
    assert await nginx.uninstall("addr") is True
    assert nginx_root.snapshot() == before


async def test_uninstall_takes_out_every_tls_include_of_a_file(nginx_root: NginxRoot) -> None:
    """Two names served by blocks of one file on two addresses need two TLS files (each
    its own ``listen ADDR:PORT ssl``): uninstall takes both includes out of that file
    (it took one, the other then named a removed file and nginx's test refused)."""
    port = nginx_root.http_port
    nginx_root.site(
        "default",
        f"server {{\n    listen 127.0.0.1:{port};\n    server_name a.example.test;\n}}\n"
        f"server {{\n    listen 127.0.0.2:{port};\n    server_name b.example.test;\n}}\n",
    )
    before = nginx_root.snapshot()
    start_or_fail(nginx_root)
    nginx = installer(nginx_root)
    names = ["a.example.test", "b.example.test"]
    cert, key = certificate(nginx_root.root / "live", names)
    await nginx.install("two", names, cert, key)
    assert sorted(path.name for path in nginx.owned.glob("tls-*")) == [
        "tls-two+1.conf", "tls-two.conf",
    ]  # fmt: skip
    assert await nginx.uninstall("two") is True
    assert nginx_root.snapshot() == before
    assert not list(nginx.owned.glob("tls-*"))
