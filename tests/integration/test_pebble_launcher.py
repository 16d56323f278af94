"""The Pebble launcher itself, checked with plain httpx and dnspython (no ACME client)."""

from __future__ import annotations

import base64
import os
import secrets
import socket
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import httpx
import pytest
from cryptography import x509

from certherd.errors import ConfigError, UnavailableError
from certherd.testing import pebble as pebble_module
from certherd.testing.pebble import INSTALL_HINT, PebbleOptions, PebbleServer

pytestmark = pytest.mark.integration

PebbleFactory = Callable[..., PebbleServer]
HttpsClient = Callable[[PebbleServer], httpx.Client]


def _answers(server: PebbleServer, name: str, rdtype: str) -> list[str]:
    host, port = server.dns_address
    query = dns.message.make_query(name, dns.rdatatype.from_text(rdtype))
    response = dns.query.udp(query, host, port=port, timeout=2.0)
    return sorted(rdata.to_text() for rrset in response.answer for rdata in rrset)


def _children_of_this_process() -> set[int]:
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            children.add(int(stat.parent.name))
    return children


def test_directory_over_tls_with_the_ca_bundle(
    pebble: PebbleServer, https_client: HttpsClient
) -> None:
    response = https_client(pebble).get(pebble.directory_url)
    assert response.status_code == 200
    directory = response.json()
    for resource in ("newNonce", "newAccount", "newOrder", "revokeCert", "keyChange"):
        assert directory[resource].startswith(pebble.directory_url.removesuffix("/dir"))
    assert directory["meta"]["externalAccountRequired"] is False
    assert pebble.directory_url.startswith("https://127.0.0.1:")
    assert pebble.management_url.startswith("https://127.0.0.1:")
    assert pebble.challtestsrv_url.startswith("http://127.0.0.1:")


def test_listener_is_not_trusted_without_the_bundle(pebble: PebbleServer) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(pebble.directory_url, trust_env=False)


def test_eab_config_requires_external_account(
    pebble_factory: PebbleFactory, https_client: HttpsClient
) -> None:
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()  # padded on purpose
    server = pebble_factory(eab_keys={"kid-1": key})
    meta = https_client(server).get(server.directory_url).json()["meta"]
    assert meta["externalAccountRequired"] is True


def test_set_txt_is_served_by_the_dns(pebble: PebbleServer) -> None:
    name = f"_acme-challenge.{secrets.token_hex(4)}.test"
    pebble.set_txt(name, "first")
    pebble.set_txt(name + ".", "second")
    assert _answers(pebble, name + ".", "TXT") == ['"first"', '"second"']
    pebble.clear_txt(name)
    assert _answers(pebble, name + ".", "TXT") == []


def test_a_records_default_to_loopback_and_can_be_set(pebble: PebbleServer) -> None:
    name = f"{secrets.token_hex(4)}.test"
    assert _answers(pebble, name + ".", "A") == ["127.0.0.1"]
    assert _answers(pebble, name + ".", "AAAA") == []
    pebble.add_a(name, ["127.0.0.2"])
    assert _answers(pebble, name + ".", "A") == ["127.0.0.2"]


def test_roots_and_intermediates_parse(pebble: PebbleServer) -> None:
    root = x509.load_pem_x509_certificate(pebble.roots_pem())
    intermediate = x509.load_pem_x509_certificate(pebble.intermediates_pem())
    assert root.subject == root.issuer
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert intermediate.issuer == root.subject
    with pytest.raises(KeyError, match="no root 1"):
        pebble.roots_pem(1)


def test_alternate_roots(pebble_factory: PebbleFactory) -> None:
    server = pebble_factory(alternate_roots=1)
    roots = [x509.load_pem_x509_certificate(server.roots_pem(index)) for index in (0, 1)]
    assert roots[0].subject != roots[1].subject
    with pytest.raises(KeyError):
        server.roots_pem(2)


def test_cert_status_of_an_unknown_serial(pebble: PebbleServer) -> None:
    with pytest.raises(KeyError, match="no serial abc"):
        pebble.cert_status("0x0ABC")


def test_options_reach_pebble(pebble_factory: PebbleFactory) -> None:
    server = pebble_factory(
        nonce_reject_percent=50, authz_reuse_percent=100, orders_per_page=7, chain_length=2
    )
    log = server.log_tail(lines=200)
    assert "Configured to reject 50% of good nonces" in log
    assert "authz reuse for each identifier 100% of the time" in log
    assert "Configured to show 7 orders per page" in log
    assert "Disabling random VA sleeps" in log
    assert (
        f"Using custom DNS resolver for ACME challenges: 127.0.0.1:{server.dns_address[1]}" in log
    )
    assert "Generated issuance chain: Pebble Root CA" in log
    assert log.count("Generated new intermediate issuer") == 2


def test_default_pebble_rejects_five_percent_of_nonces(pebble: PebbleServer) -> None:
    # The session Pebble has logged much by now: read the whole log, not a tail.
    assert "Configured to reject 5% of good nonces" in pebble.log_tail(lines=1_000_000)


def test_stop_leaves_no_child_behind() -> None:
    server = PebbleServer()
    server.start()
    assert server.startup_seconds is not None
    assert server.startup_seconds < 10
    pids = set(server.pids)
    workdir = server.ca_bundle.parent
    assert len(pids) == 2
    assert pids <= _children_of_this_process()
    server.stop()
    assert not pids & _children_of_this_process()
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    assert not workdir.exists()
    assert not server.running
    assert "ACME directory available" in server.log_tail()
    server.stop()  # a second stop does nothing


def test_stop_kills_a_child_that_ignores_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pebble_module, "_STOP_GRACE", 0.5)
    stubborn = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 30"])
    client = httpx.Client()
    began = time.monotonic()
    pebble_module._cleanup({"stubborn": stubborn}, [], client, tmp_path)
    assert stubborn.returncode == -9
    assert time.monotonic() - began < 5
    assert not tmp_path.exists()


def _fake_programs(tmp_path: Path, pebble_script: str) -> Path:
    """A PATH with the real challtestsrv and a fake ``pebble``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real = subprocess.run(
        ["sh", "-c", "command -v pebble-challtestsrv"], capture_output=True, text=True, check=True
    ).stdout.strip()
    (bin_dir / "pebble-challtestsrv").symlink_to(real)
    fake = bin_dir / "pebble"
    fake.write_text("#!/bin/sh\n" + pebble_script)
    fake.chmod(0o755)
    return bin_dir


def test_missing_pebble_raises_the_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UnavailableError) as caught:
        PebbleServer().start()
    assert (
        str(caught.value)
        == INSTALL_HINT
        == ("pebble is not installed: run `apt-get install -y pebble`")
    )


def test_a_pebble_that_exits_reports_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(_fake_programs(tmp_path, "echo 'boom: no config'\nexit 3\n")))
    server = PebbleServer()
    with pytest.raises(UnavailableError, match=r"pebble exited with code 3.*boom: no config"):
        server.start()
    assert not server.running
    assert "boom: no config" in server.log_tail()


def test_a_pebble_that_never_answers_times_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = "echo 'stuck'\nexec /bin/sleep 30\n"
    monkeypatch.setenv("PATH", str(_fake_programs(tmp_path, script)))
    before = _children_of_this_process()
    server = PebbleServer(start_timeout=1.0)
    with pytest.raises(UnavailableError, match=r"did not answer within 1 s.*stuck"):
        server.start()
    assert _children_of_this_process() <= before


def test_missing_pebble_fails_the_fixture_and_never_skips(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conftest = Path(__file__).parents[1] / "conftest.py"
    pytester.makeconftest(conftest.read_text())
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        textwrap.dedent(
            """
            def test_uses_pebble(pebble):
                pass

            def test_uses_factory(pebble_factory):
                pebble_factory(nonce_reject_percent=50)
            """
        )
    )
    monkeypatch.setenv("PATH", str(tmp_path))
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1, failed=1)
    result.stdout.fnmatch_lines(["*pebble is not installed: run `apt-get install -y pebble`*"])
    assert "skipped" not in result.stdout.str()


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"chain_length": 0}, "chain_length"),
        ({"nonce_reject_percent": 101}, "nonce_reject_percent"),
        ({"authz_reuse_percent": -1}, "authz_reuse_percent"),
        ({"orders_per_page": 0}, "orders_per_page"),
        ({"alternate_roots": -1}, "alternate_roots"),
        ({"eab_keys": {"kid": "not base64!"}}, "eab_keys"),
        ({"dns_server": "127.0.0.1"}, "dns_server"),
    ],
)
def test_options_pebble_would_replace_silently_are_refused(
    options: dict[str, object], field: str
) -> None:
    with pytest.raises(ConfigError, match=field):
        PebbleOptions(**options)  # type: ignore[arg-type]


def test_options_environment_and_config() -> None:
    options = PebbleOptions(chain_length=2, eab_keys={"kid-1": "YWI="}, va_nosleep=False)
    assert options.environment() == {
        "PEBBLE_WFE_NONCEREJECT": "5",
        "PEBBLE_AUTHZREUSE": "50",
        "PEBBLE_ALTERNATE_ROOTS": "0",
        "PEBBLE_CHAIN_LENGTH": "2",
    }
    config = options.config(
        listen="127.0.0.1:1", management="127.0.0.1:2", certificate=Path("c"), key=Path("k")
    )["pebble"]
    assert config["externalAccountBindingRequired"] is True
    assert config["externalAccountMACKeys"] == {"kid-1": "YWI"}  # Pebble refuses padding
    assert (config["httpPort"], config["tlsPort"]) == (5002, 5001)


def test_a_taken_port_is_retried_with_new_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    real_pick = pebble_module._pick_ports
    calls = []

    def pick(count: int, *, udp_too: int) -> list[int]:
        ports = real_pick(count, udp_too=udp_too)
        calls.append(ports)
        if len(calls) == 1:
            ports[0] = squatter.getsockname()[1]  # the ACME listener's port
        return ports

    monkeypatch.setattr(pebble_module, "_pick_ports", pick)
    with squatter, PebbleServer() as server:
        assert len(calls) == 2
        assert server.directory_url.endswith(f":{calls[1][0]}/dir")


def test_without_challtestsrv_and_with_another_dns(pebble_factory: PebbleFactory) -> None:
    server = pebble_factory(start_challtestsrv=False, dns_server="127.0.0.1:1", strict=True)
    assert len(server.pids) == 1
    assert server.dns_address == ("127.0.0.1", 1)
    assert "Using custom DNS resolver for ACME challenges: 127.0.0.1:1" in server.log_tail(50)
    with pytest.raises(ConfigError, match="start_challtestsrv=False"):
        server.set_txt("_acme-challenge.x.test", "value")
