"""``certherd issue --haproxy`` end to end on a real HAProxy (Debian's, master-worker, in a
temporary root): the first certificate gets certherd's ``bind ... ssl crt DIR/`` line and
a graceful reload, ``renew --force`` is hot-swapped through the runtime API (master and
worker unchanged: no reload at all) while a request loop sees no failure; without a
runtime socket the fallback is a master-worker reload (master unchanged); ``uninstall``
gives the config its bytes back; a broken config, crt dir or socket is one clear line.
"""

from __future__ import annotations

import json
import socket
import ssl
import stat
import threading
from collections.abc import Iterator

import pytest
from cryptography import x509
from e2e_runner import Certherd
from tests.servers.fixtures import start_or_fail
from tests.servers.haproxy import HaproxyRoot
from tests.servers.net import LOOPBACK, free_port

from certherd.testing.pebble import PebbleServer

NAMES = ("shop.haproxy.test", "www.haproxy.test")


@pytest.fixture
def haproxy() -> Iterator[HaproxyRoot]:
    root = HaproxyRoot()
    yield start_or_fail(root)
    root.stop()


def served(pebble: PebbleServer, port: int, name: str) -> x509.Certificate:
    """The certificate on ``port`` for ``name``, verified against Pebble's root."""
    context = ssl.create_default_context(cadata=pebble.roots_pem(0).decode())
    with (
        socket.create_connection((LOOPBACK, port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def fetch(pebble: PebbleServer, port: int, name: str) -> bytes:
    context = ssl.create_default_context(cadata=pebble.roots_pem(0).decode())
    with (
        socket.create_connection((LOOPBACK, port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=name) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    return answer


def haproxy_flags(haproxy: HaproxyRoot, https_port: int, *, socket: bool = True) -> list[str]:
    flags = ["--haproxy", "--haproxy-config", str(haproxy.config), "--haproxy-crt-dir",
             str(haproxy.crt_dir), "--https-port", str(https_port)]  # fmt: skip
    return [*flags, "--haproxy-socket", str(haproxy.socket)] if socket else flags


def renew_under_load(
    certherd: Certherd, pebble: PebbleServer, port: int, name: str
) -> tuple[list[str], int]:
    """``renew --force NAME`` while a loop fetches over HTTPS: (failures, answered)."""
    failures: list[str] = []
    answered = 0
    done = threading.Event()

    def loop() -> None:
        nonlocal answered
        while not done.is_set():
            try:
                answer = fetch(pebble, port, name)
                if not answer.startswith(b"HTTP/1.1 200"):
                    failures.append(answer[:80].decode(errors="replace"))
                answered += 1
            except OSError as exc:
                failures.append(repr(exc))

    worker = threading.Thread(target=loop)
    worker.start()
    try:
        certherd("renew", "--force", name)
    finally:
        done.set()
        worker.join(timeout=30)
    return failures, answered


def test_issue_then_renew_hot_swaps_without_reload_then_uninstall(
    certherd: Certherd, pebble: PebbleServer, haproxy: HaproxyRoot
) -> None:
    before = haproxy.snapshot()
    master = haproxy.master_pid
    https_port = free_port()
    domains = [flag for name in NAMES for flag in ("-d", name)]
    certherd("issue", *domains, *haproxy_flags(haproxy, https_port), *certherd.http, *certherd.ca)
    live = certherd.live(NAMES[0])
    leaf = x509.load_pem_x509_certificate((live / "cert.pem").read_bytes())
    for name in NAMES:
        assert served(pebble, https_port, name).serial_number == leaf.serial_number
    pem = haproxy.crt_dir / f"{NAMES[0]}.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert (
        pem.read_bytes()
        == (live / "fullchain.pem").read_bytes() + (live / "privkey.pem").read_bytes()
    )
    config = haproxy.config.read_text()
    assert f"    bind 127.0.0.1:{https_port} ssl crt {haproxy.crt_dir}/ # certherd:" in config
    assert haproxy.master_pid == master  # the new bind line: a graceful reload
    worker = haproxy.worker()

    failures, answered = renew_under_load(certherd, pebble, https_port, NAMES[0])
    assert failures == []
    assert answered > 10  # the loop ran through the renewal
    renewed = x509.load_pem_x509_certificate((live / "cert.pem").read_bytes())
    assert renewed.serial_number != leaf.serial_number
    for name in NAMES:
        assert served(pebble, https_port, name).serial_number == renewed.serial_number
    # Hot-swapped through the runtime API: the same master and the same worker.
    assert haproxy.master_pid == master
    assert haproxy.workers() == {worker}
    assert pem.read_bytes().startswith((live / "fullchain.pem").read_bytes())
    backups = haproxy.root / "certherd" / "backup"
    assert list(backups.rglob("*.cfg"))  # the config before certherd's bind line
    assert not list(backups.rglob("*.pem"))  # no copies of private keys

    removed = certherd("--json", "uninstall", NAMES[0]).json()
    assert removed == {"lineage": NAMES[0], "removed": True}
    assert haproxy.snapshot() == before
    assert not pem.exists()
    stored = json.loads((certherd.config_dir / "renewal" / f"{NAMES[0]}.json").read_text())
    assert stored["installer"] is None


def test_second_lineage_is_added_at_run_time_and_removed_again(
    certherd: Certherd, pebble: PebbleServer, haproxy: HaproxyRoot
) -> None:
    """With certherd's bind line in place, another lineage's PEM joins the running
    HAProxy through ``new ssl cert`` + ``add ssl crt-list`` (no reload), and its
    uninstall takes it out the same way, the first one still served."""
    https_port = free_port()
    flags = haproxy_flags(haproxy, https_port)
    certherd("issue", "-d", NAMES[0], *flags, *certherd.http, *certherd.ca)
    worker = haproxy.worker()
    certherd("issue", "-d", NAMES[1], *flags, *certherd.http, *certherd.ca)
    second = x509.load_pem_x509_certificate((certherd.live(NAMES[1]) / "cert.pem").read_bytes())
    assert served(pebble, https_port, NAMES[1]).serial_number == second.serial_number
    assert haproxy.workers() == {worker}
    certherd("uninstall", NAMES[1])
    assert not (haproxy.crt_dir / f"{NAMES[1]}.pem").exists()
    first = x509.load_pem_x509_certificate((certherd.live(NAMES[0]) / "cert.pem").read_bytes())
    assert served(pebble, https_port, NAMES[0]).serial_number == first.serial_number
    fallback = haproxy.served_certificate(https_port, NAMES[1])  # the default: the first
    assert fallback is not None
    assert fallback.serial_number == first.serial_number
    assert haproxy.workers() == {worker}


def test_without_a_runtime_socket_renewal_reloads_the_master_gracefully(
    certherd: Certherd, pebble: PebbleServer
) -> None:
    haproxy = start_or_fail(HaproxyRoot(socket=False))
    try:
        https_port = free_port()
        flags = haproxy_flags(haproxy, https_port, socket=False)
        certherd("issue", "-d", NAMES[0], *flags, *certherd.http, *certherd.ca)
        master, worker = haproxy.master_pid, haproxy.worker()
        failures, answered = renew_under_load(certherd, pebble, https_port, NAMES[0])
        assert failures == []
        assert answered > 10
        renewed = x509.load_pem_x509_certificate(
            (certherd.live(NAMES[0]) / "cert.pem").read_bytes()
        )
        assert served(pebble, https_port, NAMES[0]).serial_number == renewed.serial_number
        assert haproxy.master_pid == master
        assert haproxy.worker() != worker  # a new worker: the master reloaded
    finally:
        haproxy.stop()


def test_config_failing_its_test_is_refused_before_any_order(
    certherd: Certherd, haproxy: HaproxyRoot
) -> None:
    haproxy.config.write_text(haproxy.config.read_text() + "    no-such-keyword on\n")
    before = haproxy.snapshot()
    result = certherd(
        "issue", "-d", NAMES[0], *haproxy_flags(haproxy, free_port()), *certherd.http,
        *certherd.ca, check=False,
    )  # fmt: skip
    assert result.code == 2, result.describe()
    assert "already fails its own test" in result.stderr
    assert "no-such-keyword" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert haproxy.snapshot() == before
    assert not certherd.live(NAMES[0]).exists()


@pytest.mark.parametrize(
    ("flag", "value", "said"),
    [
        ("--haproxy-crt-dir", "/nonexistent/certs", "crt dir /nonexistent/certs does not exist"),
        ("--haproxy-crt-dir", "/etc/hostname", "crt dir /etc/hostname is not a directory"),
        ("--haproxy-socket", "/nonexistent.sock", "runtime socket /nonexistent.sock does not"),
        ("--haproxy-socket", "/etc/hostname", "runtime socket /etc/hostname is not a socket"),
        ("--haproxy-config", "/nonexistent.cfg", "HAProxy's config /nonexistent.cfg does not"),
    ],
)
def test_bad_crt_dir_or_socket_is_one_clear_line_before_any_order(
    certherd: Certherd, haproxy: HaproxyRoot, flag: str, value: str, said: str
) -> None:
    before = haproxy.snapshot()
    flags = haproxy_flags(haproxy, free_port())
    flags[flags.index(flag) + 1] = value
    result = certherd("issue", "-d", NAMES[0], *flags, *certherd.http, *certherd.ca, check=False)
    assert result.code == 2, result.describe()
    assert said in result.stderr
    assert flag in result.stderr  # names the flag to fix
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert haproxy.snapshot() == before
    assert not certherd.live(NAMES[0]).exists()


def test_a_swap_that_fails_after_renewal_is_owed_and_done_next_run(
    certherd: Certherd, pebble: PebbleServer, haproxy: HaproxyRoot
) -> None:
    """The runtime socket is gone when a renewal is made live: the run exits 1 naming
    the installer, the old certificate is still served (its PEM has its bytes back), and
    the next ``renew`` (nothing due) swaps the new one in."""
    https_port = free_port()
    flags = haproxy_flags(haproxy, https_port)
    certherd("issue", "-d", NAMES[0], *flags, *certherd.http, *certherd.ca)
    pem = haproxy.crt_dir / f"{NAMES[0]}.pem"
    old = pem.read_bytes()
    hidden = haproxy.socket.rename(haproxy.root / "admin.sock.away")
    failed = certherd("--json", "renew", "--force", NAMES[0], check=False)
    assert failed.code == 1, failed.describe()
    (result,) = failed.json()["results"]
    assert result["action"] == "renewed"
    assert any("haproxy installer" in error for error in result["hook_errors"])
    renewed = x509.load_pem_x509_certificate((certherd.live(NAMES[0]) / "cert.pem").read_bytes())
    assert served(pebble, https_port, NAMES[0]).serial_number != renewed.serial_number
    assert pem.read_bytes() == old
    hidden.rename(haproxy.socket)
    again = certherd("--json", "renew", NAMES[0]).json()
    assert [r["action"] for r in again["results"]] == ["deployed"]
    assert served(pebble, https_port, NAMES[0]).serial_number == renewed.serial_number


def test_check_says_when_haproxy_could_not_take_the_next_version(
    certherd: Certherd, pebble: PebbleServer, haproxy: HaproxyRoot
) -> None:
    """``certherd check`` has a line for the installer: ok while HAProxy's config passes
    its test and the socket answers; fail, with the reason, once the socket is gone."""
    certherd("issue", "-d", NAMES[0], *haproxy_flags(haproxy, free_port()), *certherd.http,
             *certherd.ca)  # fmt: skip
    port = str(pebble.options.http_port)

    def installer_line() -> dict[str, str]:
        found = certherd("--json", "check", "--http-port", port, NAMES[0], check=False).json()
        return next(f for f in found["checks"] if f["check"] == "installer haproxy")

    assert installer_line()["status"] == "ok"
    haproxy.socket.rename(haproxy.root / "admin.sock.away")
    line = installer_line()
    assert line["status"] == "fail"
    assert f"runtime socket {haproxy.socket} does not exist" in line["text"]


def test_crt_dir_others_may_write_and_socket_below_admin_are_refused(
    certherd: Certherd, pebble: PebbleServer
) -> None:
    """Private keys go into no folder another user could change, and an operator-level
    socket (it cannot ``set ssl cert``) is said before any order: one line each."""
    haproxy = start_or_fail(HaproxyRoot(level="operator"))
    try:
        before = haproxy.snapshot()
        flags = haproxy_flags(haproxy, free_port())
        result = certherd("issue", "-d", NAMES[0], *flags, *certherd.http, *certherd.ca,
                          check=False)  # fmt: skip
        assert result.code == 2, result.describe()
        assert "allows `operator`, not admin" in result.stderr
        assert "--haproxy-socket" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        haproxy.crt_dir.chmod(0o777)
        result = certherd("issue", "-d", NAMES[0], *flags, *certherd.http, *certherd.ca,
                          check=False)  # fmt: skip
        assert result.code == 2, result.describe()
        assert f"will not write private keys into {haproxy.crt_dir}" in result.stderr
        assert "--haproxy-crt-dir" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert haproxy.snapshot() == before
        assert not certherd.live(NAMES[0]).exists()
    finally:
        haproxy.stop()


def test_install_for_an_existing_lineage_and_issue_without_a_solver(
    certherd: Certherd, pebble: PebbleServer, haproxy: HaproxyRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``certherd install NAME --haproxy`` serves a lineage issued before (relative paths
    kept absolute: renewals run from another folder); ``issue --haproxy`` alone is told
    that HAProxy proves no name, before any order."""
    alone = certherd("issue", "-d", NAMES[1], *haproxy_flags(haproxy, free_port()),
                     *certherd.ca, check=False)  # fmt: skip
    assert alone.code == 2, alone.describe()
    assert "--haproxy serves the certificate, it proves no name" in alone.stderr
    certherd("issue", "-d", NAMES[0], *certherd.http, *certherd.ca)
    https_port = free_port()
    monkeypatch.chdir(haproxy.root)
    certherd("install", NAMES[0], "--haproxy", "--haproxy-config", "haproxy.cfg",
             "--haproxy-crt-dir", "certs", "--https-port", str(https_port))  # fmt: skip
    leaf = x509.load_pem_x509_certificate((certherd.live(NAMES[0]) / "cert.pem").read_bytes())
    assert served(pebble, https_port, NAMES[0]).serial_number == leaf.serial_number
    stored = json.loads((certherd.config_dir / "renewal" / f"{NAMES[0]}.json").read_text())
    assert stored["installer"] == {
        "kind": "haproxy",
        "options": {
            "config": str(haproxy.config),
            "crt_dir": str(haproxy.crt_dir),
            "ctl": "haproxy",
            "https_port": str(https_port),
            "socket": "",
        },
    }
    shown = " ".join(certherd("show", NAMES[0]).stdout.split())
    assert f"haproxy (config {haproxy.config}, crt_dir {haproxy.crt_dir}" in shown


def test_several_http_frontends_need_haproxy_frontend(
    certherd: Certherd, pebble: PebbleServer, haproxy: HaproxyRoot
) -> None:
    """Two HTTP frontends: which one serves the names is the user's to say
    (``--haproxy-frontend``); without it, one line naming the flag, before any order."""
    second = free_port()
    haproxy.config.write_text(
        haproxy.config.read_text()
        + f"\nfrontend admin\n    bind 127.0.0.1:{second}\n"
        + '    http-request return status 200 content-type text/plain string "admin"\n'
    )
    https_port = free_port()
    flags = haproxy_flags(haproxy, https_port)
    before = haproxy.snapshot()
    refused = certherd("issue", "-d", NAMES[0], *flags, *certherd.http, *certherd.ca,
                       check=False)  # fmt: skip
    assert refused.code == 2, refused.describe()
    assert "the frontends admin, web in mode http" in refused.stderr
    assert "--haproxy-frontend" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert haproxy.snapshot() == before
    certherd("issue", "-d", NAMES[0], *flags, "--haproxy-frontend", "web", *certherd.http,
             *certherd.ca)  # fmt: skip
    leaf = x509.load_pem_x509_certificate((certherd.live(NAMES[0]) / "cert.pem").read_bytes())
    assert served(pebble, https_port, NAMES[0]).serial_number == leaf.serial_number
    assert fetch(pebble, https_port, NAMES[0]).endswith(b"hello")  # the web frontend


def test_a_crt_list_bind_gets_the_certificate_as_a_line_of_its_list(
    certherd: Certherd, pebble: PebbleServer, haproxy: HaproxyRoot
) -> None:
    """The frontend already serves TLS from a crt-list: ``issue --haproxy`` adds the
    lineage's PEM as a line of that list and to the running HAProxy (no reload, the
    config untouched), ``renew --force`` hot-swaps it, ``uninstall`` gives the list its
    bytes back."""
    https_port = free_port()
    default = haproxy.root / "default.pem"
    certherd("issue", "-d", "default.haproxy.test", *certherd.http, *certherd.ca)
    live = certherd.live("default.haproxy.test")
    default.write_bytes((live / "fullchain.pem").read_bytes() + (live / "privkey.pem").read_bytes())
    crt_list = haproxy.root / "crt-list.txt"
    crt_list.write_text(f"{default} [alpn h2,http/1.1]\n")
    text = haproxy.config.read_text()
    bind = f"    bind 127.0.0.1:{https_port} ssl crt-list {crt_list}\n"
    haproxy.config.write_text(text.replace("frontend web\n", f"frontend web\n{bind}"))
    haproxy.reload()
    before = haproxy.snapshot()
    worker = haproxy.worker()
    certherd("issue", "-d", NAMES[0], *haproxy_flags(haproxy, https_port), *certherd.http,
             *certherd.ca)  # fmt: skip
    assert haproxy.config.read_text() == before["haproxy.cfg"].decode()
    pem = f"{haproxy.crt_dir}/{NAMES[0]}.pem"
    assert crt_list.read_text().endswith(f"\n{pem}\n")
    leaf = x509.load_pem_x509_certificate((certherd.live(NAMES[0]) / "cert.pem").read_bytes())
    assert served(pebble, https_port, NAMES[0]).serial_number == leaf.serial_number
    certherd("renew", "--force", NAMES[0])
    renewed = x509.load_pem_x509_certificate((certherd.live(NAMES[0]) / "cert.pem").read_bytes())
    assert served(pebble, https_port, NAMES[0]).serial_number == renewed.serial_number
    assert haproxy.workers() == {worker}  # added and swapped at run time: no reload
    certherd("uninstall", NAMES[0])
    assert haproxy.snapshot() == before
    fallback = haproxy.served_certificate(https_port, NAMES[0])  # the list's default
    assert fallback is not None
    assert fallback.serial_number != renewed.serial_number
    assert haproxy.workers() == {worker}
