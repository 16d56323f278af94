"""The HAProxy installer against a real HAProxy (Debian's 2.6, master-worker, runtime
socket) in a temporary root, with certificates from a small CA of the test's; and its
config parser on Debian's default haproxy.cfg and a messy one. Pebble comes in in the
e2e tests (tests/e2e/test_cli_haproxy.py).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest
from tests.servers.fixtures import start_or_fail
from tests.servers.haproxy import HaproxyRoot
from tests.servers.net import free_port

from certherd.errors import ConfigError, InstallError
from certherd.install.haproxy import crtlist
from certherd.install.haproxy.config import parse_config, split_words
from certherd.install.haproxy.control import HaproxyControl, RuntimeApi
from certherd.install.haproxy.installer import HaproxyInstaller
from certherd.testing.pki import MiniCA

DEBIAN_DEFAULT = """global
\tlog /dev/log\tlocal0
\tlog /dev/log\tlocal1 notice
\tchroot /var/lib/haproxy
\tstats socket /run/haproxy/admin.sock mode 660 level admin
\tstats timeout 30s
\tuser haproxy
\tgroup haproxy
\tdaemon

\t# Default SSL material locations
\tca-base /etc/ssl/certs
\tcrt-base /etc/ssl/private

\t# See: https://ssl-config.mozilla.org/#server=haproxy&server-version=2.0.3&config=intermediate
        ssl-default-bind-ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256
        ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets

defaults
\tlog\tglobal
\tmode\thttp
\toption\thttplog
\toption\tdontlognull
        timeout connect 5000
        timeout client  50000
        timeout server  50000
\terrorfile 400 /etc/haproxy/errors/400.http
\terrorfile 503 /etc/haproxy/errors/503.http

frontend www
\tbind :80
\tdefault_backend app

backend app
\tserver app1 127.0.0.1:8080
"""

MESSY = (
    "global\r\n"
    "    stats socket ipv4@127.0.0.1:9999 level admin\r\n"
    "    stats socket unix@/run/hap.sock level operator   # not admin\r\n"
    "    pidfile /run/hap.pid\r\n"
    "    master-worker\r\n"
    "defaults web\r\n"
    "    mode tcp\r\n"
    "frontend tcp_in\r\n"
    "    bind :5432\r\n"
    "frontend 'site'   # quoted name, comment\r\n"
    "    mode http\r\n"
    '    http-request set-header X-Hash "a # not a comment"\r\n'
    "    acl odd path_reg ^/a\\ b$\r\n"
    "    bind 127.0.0.1:80,[::1]:80 name plain\r\n"
    "    bind :8443 ssl crt certs/site.pem\r\n"
    "\tbind\t/run/local.sock"
)


def test_split_words_follows_haproxys_quoting() -> None:
    assert split_words('  http-request return string "a # b" # comment\n') == [
        "http-request", "return", "string", "a # b",
    ]  # fmt: skip
    assert split_words(r"acl x path_reg ^/a\ b$") == ["acl", "x", "path_reg", "^/a b$"]
    assert split_words("log 'single \\quoted' x") == ["log", "single \\quoted", "x"]
    assert split_words("\t# only a comment") == []


def test_parse_sections_binds_sockets() -> None:
    config = parse_config(Path("/x/haproxy.cfg"), MESSY)
    assert [(s.keyword, s.name, s.mode) for s in config.sections] == [
        ("global", "", "tcp"), ("defaults", "web", "tcp"), ("frontend", "tcp_in", "tcp"),
        ("frontend", "site", "http"),
    ]  # fmt: skip
    binds = config.binds()
    assert [(b.section.name, b.addresses, b.ssl, b.crts) for b in binds] == [
        ("tcp_in", (":5432",), False, ()),
        ("site", ("127.0.0.1:80", "[::1]:80"), False, ()),
        ("site", (":8443",), True, ("certs/site.pem",)),
        ("site", ("/run/local.sock",), False, ()),
    ]
    assert config.stats_sockets() == [("/run/hap.sock", False)]  # ipv4@ is not a path
    assert config.pidfile == "/run/hap.pid"
    assert config.master_worker
    debian = parse_config(Path("/etc/haproxy/haproxy.cfg"), DEBIAN_DEFAULT)
    assert debian.stats_sockets() == [("/run/haproxy/admin.sock", True)]
    assert debian.crt_path("site.pem") == "/etc/ssl/private/site.pem"  # crt-base
    assert debian.crt_path("/etc/haproxy/certs/") == "/etc/haproxy/certs"
    assert not debian.master_worker  # Debian's unit passes -Ws instead


@pytest.mark.parametrize("text", [DEBIAN_DEFAULT, MESSY], ids=["debian", "messy"])
def test_bind_line_added_and_removed_keeps_every_other_byte(tmp_path: Path, text: str) -> None:
    crt_dir = tmp_path / "certs"
    installer = HaproxyInstaller(tmp_path / "haproxy.cfg", crt_dir, https_port=8443)
    config = parse_config(installer.config, text)
    section = installer._frontend(config)
    at, line = installer._bind_line(config, section)
    edited = text[:at] + line + text[at:]
    again = parse_config(installer.config, edited)
    added = [b for b in again.binds() if b.crts == (f"{crt_dir}/",)]
    assert len(added) == 1
    assert added[0].section.name == section.name
    assert added[0].ssl
    assert installer._loaders(again) == [added[0].where]
    assert edited.replace(line, "") == text
    assert installer._edited(again) == text
    if text is MESSY:
        assert added[0].addresses == ("127.0.0.1:8443", "[::1]:8443")
        assert line.startswith("\r\n\tbind ")  # after the file's last line, its newline
    else:
        assert added[0].addresses == (":8443",)


def test_crt_dir_joined_to_the_tls_bind_already_on_the_port(tmp_path: Path) -> None:
    """A bind already serving TLS on the HTTPS port (certherd's own line there would
    clash) gets `` crt DIR/`` at its end, with a note line above; both go again."""
    crt_dir = tmp_path / "certs"
    installer = HaproxyInstaller(tmp_path / "haproxy.cfg", crt_dir, https_port=8443)
    config = parse_config(installer.config, MESSY)
    edited = installer._placement(config)
    again = parse_config(installer.config, edited)
    (joined,) = [b for b in again.binds() if b.crts and len(b.crts) == 2]
    assert joined.crts == ("certs/site.pem", f"{crt_dir}/")
    assert joined.section.name == "site"
    assert installer._loaders(again) == [joined.where]
    assert f"    # certherd: 'crt {crt_dir}/' added to the next line" in edited
    assert installer._edited(again) == MESSY
    commented = MESSY.replace("certs/site.pem\r\n", "certs/site.pem   # mine\r\n")
    edited = installer._placement(parse_config(installer.config, commented))
    assert f"certs/site.pem crt {crt_dir}/   # mine\r\n" in edited
    assert installer._edited(parse_config(installer.config, edited)) == commented


def test_several_http_frontends_are_refused_naming_them(tmp_path: Path) -> None:
    text = DEBIAN_DEFAULT + "frontend other\n\tbind :8080\n"
    installer = HaproxyInstaller(tmp_path / "haproxy.cfg", tmp_path / "certs")
    with pytest.raises(ConfigError, match="the frontends other, www in mode http") as caught:
        installer._frontend(parse_config(installer.config, text))
    assert caught.value.settings == ("haproxy_frontend",)  # the CLI names --haproxy-frontend


def test_the_frontend_named_gets_the_bind_line(tmp_path: Path) -> None:
    """``frontend``: the line goes there, even into a frontend with no bind of its own
    (every address then); a name the config lacks is one line naming the setting."""
    text = DEBIAN_DEFAULT + "frontend other\n\tbind :8080\nfrontend bare\n  mode http\n"
    crt_dir = tmp_path / "certs"
    for name, wanted in (("other", "\tbind :8443 ssl crt"), ("bare", "  bind :8443 ssl crt")):
        chosen = HaproxyInstaller(tmp_path / "haproxy.cfg", crt_dir, https_port=8443, frontend=name)
        config = parse_config(chosen.config, text)
        edited = chosen._placement(config)
        (added,) = [b for b in parse_config(chosen.config, edited).binds() if b.ssl]
        assert added.section.name == name
        assert f"{wanted} {crt_dir}/ # certherd:" in edited
        assert chosen._edited(parse_config(chosen.config, edited)) == text
    missing = HaproxyInstaller(tmp_path / "haproxy.cfg", crt_dir, frontend="nope")
    with pytest.raises(ConfigError, match="has no frontend 'nope'") as caught:
        missing._frontend(parse_config(missing.config, text))
    assert caught.value.settings == ("haproxy_frontend",)


def installer(root: HaproxyRoot, port: int) -> HaproxyInstaller:
    return HaproxyInstaller(root.config, root.crt_dir, root.socket, https_port=port)


async def test_change_haproxy_refuses_is_undone_byte_for_byte(
    haproxy_root: HaproxyRoot, tmp_path: Path
) -> None:
    """A key that does not match the certificate passes nothing but HAProxy's own test:
    the PEM and the bind line are taken back, HAProxy's message is the error."""
    ca = MiniCA.create("test CA")
    certificate, _ = ca.write_server_files(tmp_path, "a", ["a.example.test"])
    _, other_key = ca.write_server_files(tmp_path, "b", ["b.example.test"])
    before = haproxy_root.snapshot()
    worker = haproxy_root.worker()
    with pytest.raises(InstallError) as caught:
        await installer(haproxy_root, free_port()).install(
            "a.example.test", ["a.example.test"], certificate, other_key
        )
    message = str(caught.value)
    assert "HAProxy refused certherd's change, so every file has its previous bytes" in message
    assert "[ALERT]" in message
    assert haproxy_root.snapshot() == before
    assert list(haproxy_root.crt_dir.glob("*.pem")) == []
    assert haproxy_root.workers() == {worker}  # never reloaded


async def test_install_then_renewal_swap_then_uninstall(
    haproxy_root: HaproxyRoot, tmp_path: Path
) -> None:
    ca = MiniCA.create("test CA")
    first = ca.write_server_files(tmp_path, "one", ["a.example.test"])
    second = ca.write_server_files(tmp_path, "two", ["a.example.test"])
    port = free_port()
    before = haproxy_root.snapshot()
    chosen = installer(haproxy_root, port)
    await chosen.install("a.example.test", ["a.example.test"], *first)
    served = haproxy_root.served_certificate(port, "a.example.test")
    assert served is not None
    assert served.serial_number == _serial(first[0])
    worker = haproxy_root.worker()
    await chosen.after_renewal("a.example.test", *second)
    served = haproxy_root.served_certificate(port, "a.example.test")
    assert served is not None
    assert served.serial_number == _serial(second[0])
    assert haproxy_root.workers() == {worker}  # swapped, not reloaded
    assert await chosen.uninstall("a.example.test")
    assert haproxy_root.snapshot() == before
    assert not await chosen.uninstall("a.example.test")


def _serial(path: Path) -> int:
    from cryptography import x509

    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def _listening(path: Path) -> socket.socket:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)
    return server


async def test_no_private_key_to_a_socket_another_user_could_have_placed(
    haproxy_root: HaproxyRoot, tmp_path: Path
) -> None:
    """A runtime socket another user owns, or in a folder others may write, could be
    theirs: certherd refuses it (one line) before sending a PEM with a private key."""
    shared = Path(tempfile.mkdtemp(prefix="shared-"))
    try:
        shared.chmod(0o1777)  # like /tmp
        theirs = shared / "admin.sock"
        with _listening(theirs):
            chosen = HaproxyInstaller(haproxy_root.config, haproxy_root.crt_dir, theirs)
            with pytest.raises(ConfigError, match="certherd sends no private key to") as caught:
                await chosen.check()
            assert "\n" not in str(caught.value)
        owned = tmp_path / "owned"
        owned.mkdir()
        other = owned / "admin.sock"
        with _listening(other):
            os.chown(other, 65534, 65534)
            chosen = HaproxyInstaller(haproxy_root.config, haproxy_root.crt_dir, other)
            with pytest.raises(ConfigError, match="owned by uid 65534, not root"):
                await chosen.check()
            # Named by the config's stats socket line (no socket given): refused too,
            # not passed over for a reload.
            text = haproxy_root.config.read_text()
            haproxy_root.config.write_text(text.replace(str(haproxy_root.socket), str(other)))
            found = HaproxyInstaller(haproxy_root.config, haproxy_root.crt_dir)
            with pytest.raises(ConfigError, match="owned by uid 65534, not root"):
                await found.check()
    finally:
        shutil.rmtree(shared, ignore_errors=True)


async def test_a_pem_certherd_did_not_write_is_not_overwritten(
    haproxy_root: HaproxyRoot, tmp_path: Path
) -> None:
    ca = MiniCA.create("test CA")
    certificate, key = ca.write_server_files(tmp_path, "a", ["a.example.test"])
    theirs = haproxy_root.crt_dir / "a.example.test.pem"
    theirs.write_bytes(b"the user's own certificate\n")
    with pytest.raises(ConfigError, match="not certherd's"):
        await installer(haproxy_root, free_port()).install(
            "a.example.test", ["a.example.test"], certificate, key
        )
    assert theirs.read_bytes() == b"the user's own certificate\n"


async def test_install_joins_the_users_tls_bind_and_uninstall_restores(
    haproxy_root: HaproxyRoot, tmp_path: Path
) -> None:
    """The common layout: the frontend already serves TLS on the port with a certificate
    of the user's. certherd's PEM joins that bind (its own crt dir added to it, a
    graceful reload); the user's certificate stays the default; uninstall restores."""
    ca = MiniCA.create("test CA")
    theirs, their_key = ca.write_server_files(tmp_path, "site", ["site.example.test"])
    site = haproxy_root.root / "site.pem"
    site.write_bytes(theirs.read_bytes() + their_key.read_bytes())
    port = free_port()
    text = haproxy_root.config.read_text()
    haproxy_root.config.write_text(
        text.replace(
            "frontend web\n", f"frontend web\n    bind 127.0.0.1:{port} ssl crt {site}  # mine\n"
        )
    )
    # The user's TLS bind is live before certherd comes (a graceful reload).
    await HaproxyControl("haproxy", haproxy_root.config, haproxy_root.pidfile).reload()
    before = haproxy_root.snapshot()
    ours = ca.write_server_files(tmp_path, "ours", ["a.example.test"])
    chosen = installer(haproxy_root, port)
    await chosen.install("a.example.test", ["a.example.test"], *ours)
    assert f"ssl crt {site} crt {haproxy_root.crt_dir}/  # mine" in haproxy_root.config.read_text()
    served = haproxy_root.served_certificate(port, "a.example.test")
    assert served is not None
    assert served.serial_number == _serial(ours[0])
    default = haproxy_root.served_certificate(port, "other.example.test")
    assert default is not None
    assert default.serial_number == _serial(theirs)
    assert await chosen.uninstall("a.example.test")
    assert haproxy_root.snapshot() == before


async def test_uninstall_of_the_default_certificate_reloads_instead(
    haproxy_root: HaproxyRoot, tmp_path: Path
) -> None:
    """HAProxy refuses ``del ssl crt-list`` for a bind's default certificate (the first
    file it loaded): that uninstall falls back to a graceful reload; the other lineage
    stays served, by the same master."""
    ca = MiniCA.create("test CA")
    first = ca.write_server_files(tmp_path, "one", ["a.example.test"])
    second = ca.write_server_files(tmp_path, "two", ["b.example.test"])
    port = free_port()
    chosen = installer(haproxy_root, port)
    await chosen.install("a.example.test", ["a.example.test"], *first)
    await chosen.install("b.example.test", ["b.example.test"], *second)
    master, worker = haproxy_root.master_pid, haproxy_root.worker()
    assert await chosen.uninstall("a.example.test")
    assert not (haproxy_root.crt_dir / "a.example.test.pem").exists()
    for name in ("a.example.test", "b.example.test"):  # b is the default now
        served = haproxy_root.served_certificate(port, name)
        assert served is not None
        assert served.serial_number == _serial(second[0])
    assert haproxy_root.master_pid == master
    assert haproxy_root.worker() != worker  # reloaded


def _crt_list_frontend(root: HaproxyRoot, port: int, listed: str) -> Path:
    """The user's TLS bind on ``port`` loading the crt-list ``listed`` (its text); the
    crt-list's path. (HAProxy 2.6 refuses a crt-list whose last line has no newline.)"""
    crt_list = root.root / "crt-list.txt"
    crt_list.write_text(listed)
    text = root.config.read_text()
    root.config.write_text(
        text.replace(
            "frontend web\n", f"frontend web\n    bind 127.0.0.1:{port} ssl crt-list {crt_list}\n"
        )
    )
    return crt_list


async def _reload(root: HaproxyRoot) -> None:
    await HaproxyControl("haproxy", root.config, root.pidfile).reload()


async def test_a_crt_list_gets_certherds_line_hot_added_and_taken_out_again(
    haproxy_root: HaproxyRoot, tmp_path: Path
) -> None:
    """The TLS bind on the port loads a crt-list: certherd's PEM becomes a line of that
    list (its config untouched), joins the running HAProxy through ``add ssl
    crt-list`` (same worker, no reload), is hot-swapped on renewal, is still served
    after a reload (the file's line), and uninstall gives the list its bytes back with
    ``del ssl crt-list`` (same worker again)."""
    ca = MiniCA.create("test CA")
    theirs, their_key = ca.write_server_files(tmp_path, "site", ["site.example.test"])
    site = haproxy_root.root / "site.pem"
    site.write_bytes(theirs.read_bytes() + their_key.read_bytes())
    port = free_port()
    listed = f"# my certificates\n{site} [alpn h2,http/1.1]\n"
    crt_list = _crt_list_frontend(haproxy_root, port, listed)
    await _reload(haproxy_root)
    before = haproxy_root.snapshot()
    config = haproxy_root.config.read_bytes()
    worker = haproxy_root.worker()
    first = ca.write_server_files(tmp_path, "one", ["a.example.test"])
    second = ca.write_server_files(tmp_path, "two", ["a.example.test"])
    chosen = installer(haproxy_root, port)
    await chosen.check("a.example.test", ["a.example.test"])
    await chosen.install("a.example.test", ["a.example.test"], *first)
    pem = f"{haproxy_root.crt_dir}/a.example.test.pem"
    assert haproxy_root.config.read_bytes() == config  # the list, not the config
    assert crt_list.read_text().startswith(listed)
    assert crt_list.read_text().endswith(f"\n{pem}\n")
    assert "# certherd: a.example.test (certherd uninstall a.example.test" in crt_list.read_text()
    served = haproxy_root.served_certificate(port, "a.example.test")
    assert served is not None
    assert served.serial_number == _serial(first[0])
    default = haproxy_root.served_certificate(port, "other.example.test")
    assert default is not None
    assert default.serial_number == _serial(theirs)  # the user's stays the default
    assert haproxy_root.workers() == {worker}  # hot-added: no reload
    listing = await RuntimeApi(haproxy_root.socket).command(f"show ssl crt-list {crt_list}")
    assert pem in listing

    await chosen.after_renewal("a.example.test", *second)
    served = haproxy_root.served_certificate(port, "a.example.test")
    assert served is not None
    assert served.serial_number == _serial(second[0])
    assert haproxy_root.workers() == {worker}
    await chosen.install("a.example.test", ["a.example.test"], *second)  # again: one line
    assert crt_list.read_text().count(pem) == 1

    await _reload(haproxy_root)  # what HAProxy reads from the file serves it too
    served = haproxy_root.served_certificate(port, "a.example.test")
    assert served is not None
    assert served.serial_number == _serial(second[0])
    worker = haproxy_root.worker()

    assert await chosen.uninstall("a.example.test")
    assert haproxy_root.snapshot() == before
    default = haproxy_root.served_certificate(port, "a.example.test")
    assert default is not None
    assert default.serial_number == _serial(theirs)  # gone from the running HAProxy
    assert pem not in await RuntimeApi(haproxy_root.socket).command("show ssl cert")
    assert haproxy_root.workers() == {worker}


async def test_a_name_a_certificate_before_certherds_serves_is_refused(
    haproxy_root: HaproxyRoot, tmp_path: Path
) -> None:
    """HAProxy serves a name from the first certificate of the bind that carries it: a
    crt-list line of the user's for the name (a Certbot deploy hook's PEM, say) would
    keep being served over certherd's. Refused before anything changes, naming the
    line; a line that leaves the name out with a negative filter is no obstacle."""
    ca = MiniCA.create("test CA")
    default, default_key = ca.write_server_files(tmp_path, "default", ["default.example.test"])
    old, old_key = ca.write_server_files(tmp_path, "old", ["a.example.test", "b.example.test"])
    (haproxy_root.root / "default.pem").write_bytes(default.read_bytes() + default_key.read_bytes())
    (haproxy_root.root / "old.pem").write_bytes(old.read_bytes() + old_key.read_bytes())
    port = free_port()
    listed = f"{haproxy_root.root}/default.pem\n{haproxy_root.root}/old.pem\n"
    crt_list = _crt_list_frontend(haproxy_root, port, listed)
    await _reload(haproxy_root)
    before = haproxy_root.snapshot()
    ours = ca.write_server_files(tmp_path, "ours", ["a.example.test"])
    chosen = installer(haproxy_root, port)
    attempts = (
        lambda: chosen.check("a.example.test", ["a.example.test"]),
        lambda: chosen.install("a.example.test", ["a.example.test"], *ours),
    )
    for attempt in attempts:
        with pytest.raises(ConfigError) as caught:
            await attempt()
        message = str(caught.value)
        assert f"HAProxy serves a.example.test from {haproxy_root.root}/old.pem" in message
        assert f"crt-list {crt_list}, line 2" in message
        assert "\n" not in message
        assert haproxy_root.snapshot() == before
    crt_list.write_text(listed.replace("old.pem\n", "old.pem !a.example.test\n"))
    await _reload(haproxy_root)
    await chosen.install("a.example.test", ["a.example.test"], *ours)
    served = haproxy_root.served_certificate(port, "a.example.test")
    assert served is not None
    assert served.serial_number == _serial(ours[0])


def test_certherds_crt_list_lines_keep_every_other_byte() -> None:
    pem = "/etc/haproxy/certs/a.example.test.pem"
    for text in ("", "x.pem\n", "x.pem", "# crlf\r\nx.pem [alpn h2] x.test\r\n", "x.pem\r\ny.pem"):
        added = crtlist.add_line(text, pem, "a.example.test")
        assert crtlist.has_line(added, pem)
        assert not crtlist.has_line(text, pem)
        assert ("\r\n" in added) == ("\r\n" in text) or not text
        assert added.endswith("\n") == (text.endswith("\n") or not text)
        assert crtlist.remove_line(added, pem) == text
        again = crtlist.add_line(added, "/other.pem", "other")
        assert crtlist.remove_line(again, pem) == crtlist.add_line(text, "/other.pem", "other")
    assert crtlist.remove_line("x.pem\n", pem) is None
    # A line of the user's naming the same file is not certherd's.
    assert crtlist.remove_line(f"{pem}\n", pem) is None


def test_which_crt_list_certherd_adds_to(tmp_path: Path) -> None:
    """One crt-list shared by the TLS binds on the port (IPv4 and IPv6, say) is the one;
    a relative one (HAProxy opens it from its own working folder, no crt-base) or two on
    a bind are not edited: ``crt DIR/`` is joined to the bind instead."""
    crt_dir = tmp_path / "certs"
    chosen = HaproxyInstaller(tmp_path / "haproxy.cfg", crt_dir, https_port=8443)
    shared = DEBIAN_DEFAULT.replace(
        "\tbind :80\n",
        "\tbind :80\n\tbind 0.0.0.0:8443 ssl crt-list /etc/haproxy/list.txt\n"
        "\tbind [::]:8443 v6only ssl crt-list /etc/haproxy/list.txt alpn h2\n",
    )
    assert chosen._crt_list(parse_config(chosen.config, shared)) == "/etc/haproxy/list.txt"
    for bind in (
        "bind :8443 ssl crt-list list.txt",
        "bind :8443 ssl crt-list /etc/haproxy/a.txt crt-list /etc/haproxy/b.txt",
        'bind :8443 ssl crt-list "/etc/haproxy/my list.txt"',
    ):
        text = DEBIAN_DEFAULT.replace("\tbind :80\n", f"\tbind :80\n\t{bind}\n")
        config = parse_config(chosen.config, text)
        assert chosen._crt_list(config) is None
        assert f"{bind} crt {crt_dir}/\n" in chosen._placement(config)


async def test_a_crt_list_without_a_runtime_socket_is_reloaded(tmp_path: Path) -> None:
    """No runtime socket: the line in the crt-list is made live by a graceful
    master-worker reload (same master, a new worker), and so is its removal."""
    root = start_or_fail(HaproxyRoot(socket=False))
    try:
        ca = MiniCA.create("test CA")
        theirs, their_key = ca.write_server_files(tmp_path, "site", ["site.example.test"])
        site = root.root / "site.pem"
        site.write_bytes(theirs.read_bytes() + their_key.read_bytes())
        port = free_port()
        crt_list = _crt_list_frontend(root, port, f"{site}\n")
        await _reload(root)
        before = root.snapshot()
        master, worker = root.master_pid, root.worker()
        chosen = HaproxyInstaller(root.config, root.crt_dir, https_port=port)
        ours = ca.write_server_files(tmp_path, "ours", ["a.example.test"])
        await chosen.install("a.example.test", ["a.example.test"], *ours)
        assert root.config.read_bytes() == before["haproxy.cfg"]  # the list's line
        assert crt_list.read_text().endswith(f"\n{root.crt_dir}/a.example.test.pem\n")
        served = root.served_certificate(port, "a.example.test")
        assert served is not None
        assert served.serial_number == _serial(ours[0])
        assert root.master_pid == master
        assert root.worker() != worker
        assert await chosen.uninstall("a.example.test")
        assert root.snapshot() == before
        served = root.served_certificate(port, "a.example.test")
        assert served is not None
        assert served.serial_number == _serial(theirs)
    finally:
        root.stop()


def test_which_certificate_haproxy_serves_a_name_from_before_certherds(tmp_path: Path) -> None:
    """HAProxy's choice as :func:`crtlist.first_served` models it (each case tried on
    HAProxy 2.6): an earlier certificate's own names, else its SNI filters; the bind's
    first certificate by its own names even with filters, unless ``!*``; a negative
    filter takes a name out; a wildcard does not take an exact name."""
    ca = MiniCA.create("test CA")
    first, _ = ca.write_server_files(tmp_path, "first", ["a.example.test"])
    later, _ = ca.write_server_files(tmp_path, "later", ["b.example.test", "*.example.test"])

    def served(*entries: tuple[Path, str, bool]) -> str | None:
        found = [crtlist.Entry(str(path), tuple(filters.split()), "x", default)
                 for path, filters, default in entries]  # fmt: skip
        names = ["a.example.test", "b.example.test", "c.example.test"]
        chosen = crtlist.first_served(names, found)
        return chosen[0] if chosen else None

    assert served((first, "", True)) == "a.example.test"
    assert served((first, "x.test", True)) == "a.example.test"  # the default's own names
    assert served((first, "!*", True)) is None
    assert served((first, "!*", True), (later, "", False)) == "b.example.test"
    assert served((later, "!b.example.test", False)) is None  # *. is not c.example.test
    assert served((later, "c.example.test", False)) == "c.example.test"  # filters only
