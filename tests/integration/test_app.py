"""The library entry point (``certherd.Certherd``) against a real Pebble: what the CLI
commands do, called from Python on a config dir or on any storage."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from tests.servers.net import free_http_port

from certherd import Certherd, Event
from certherd.acme import RevocationReason
from certherd.crypto import describe_certificate, load_pem_chain
from certherd.errors import ConfigError
from certherd.manager.outcome import Outcome
from certherd.storage.layout import archive_file
from certherd.storage.lineages import live_version
from certherd.storage.memory import MemoryStorage
from certherd.testing.pebble import PebbleServer


def _toml(pebble: PebbleServer, *blocks: str) -> str:
    return (
        "[defaults]\n"
        f'server = "{pebble.directory_url}"\n'
        f'ca_bundle = "{pebble.ca_bundle}"\n'
        'email = "admin@certherd.test"\n'
        "agree_tos = true\n"
        'solver = "http"\n'
        f'solver_options = {{ listen = "127.0.0.1:{pebble.options.http_port}" }}\n'
        + "".join(f'\n[[certificate]]\ndomains = ["{block}"]\n' for block in blocks)
    )


async def test_issue_into_any_storage_then_list_revoke_delete(pebble: PebbleServer) -> None:
    """``issue`` on a storage object (no config dir): the lineage is stored and live;
    again, nothing is ordered; ``revoke`` reaches the CA; ``delete`` removes it all."""
    storage = MemoryStorage()
    events: list[Event] = []
    async with Certherd(storage, on_event=events.append) as certherd:
        names = ["app.certherd.test", "www.app.certherd.test"]

        async def issue() -> Outcome:
            return await certherd.issue(
                names,
                solvers=[{"kind": "http", "listen": f"127.0.0.1:{pebble.options.http_port}"}],
                directory_url=pebble.directory_url,
                ca_bundle=str(pebble.ca_bundle),
                email="admin@certherd.test",
                agree_tos=True,
            )

        outcome = await issue()
        assert (outcome.lineage, outcome.action, outcome.version) == (
            "app.certherd.test",
            "issued",
            1,
        )
        pem = await storage.read(archive_file("app.certherd.test", "cert.pem", 1))
        leaf = describe_certificate(load_pem_chain(pem)[0])
        assert sorted(leaf.dns_names) == sorted(names)
        assert await live_version(storage, "app.certherd.test") == 1
        assert any(e.kind == "step" and e.lineage == "app.certherd.test" for e in events)

        again = await issue()
        assert again.action == "not-due"

        [record] = await certherd.records()
        assert record.error is None
        assert record.state is not None
        assert record.state.serial == leaf.serial_hex

        revoked = await certherd.revoke(
            "app.certherd.test", RevocationReason.SUPERSEDED, delete=True
        )
        assert revoked.state.revoked_at is not None
        assert revoked.deleted_files
        assert pebble.cert_status(leaf.serial_hex)["Status"] == "Revoked"
        assert await certherd.lineages() == []


async def test_renew_follows_the_config_dir_certherd_toml(
    pebble: PebbleServer, tmp_path: Path
) -> None:
    """``renew`` on a config dir does what `certherd renew` does: certherd.toml is
    followed (a certificate listed but not yet obtained is obtained), the run is
    planned and told; a second run finds nothing due from the index alone."""
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "certherd.toml").write_text(_toml(pebble, "renew.certherd.test"))
    events: list[Event] = []
    async with Certherd(config_dir, on_event=events.append) as certherd:
        [outcome] = await certherd.renew()
        assert (outcome.lineage, outcome.action) == ("renew.certherd.test", "renewed")
        assert [(e.kind, e.total) for e in events if e.kind == "planned"] == [("planned", 1)]
        finished = [e.outcome for e in events if e.kind == "finished"]
        assert finished == [outcome]
        live = config_dir / "live" / "renew.certherd.test" / "fullchain.pem"
        leaf = describe_certificate(load_pem_chain(live.read_bytes())[0])
        assert list(leaf.dns_names) == ["renew.certherd.test"]

        [outcome] = await certherd.renew()  # learns that Pebble has no ARI
        assert outcome.action == "not-due"

    # Nothing due: the index answers, in a fresh interpreter that never loads the
    # manager nor the HTTP stack (what a cron job every few minutes pays).
    probe = (
        "import asyncio, sys\n"
        "from certherd import Certherd\n"
        f"outcomes = asyncio.run(Certherd({str(config_dir)!r}).renew())\n"
        "print([o.action for o in outcomes])\n"
        "print(sorted({'httpx', 'certherd.manager.service'} & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["['not-due']", "[]"]

    third = Certherd(config_dir)
    dry = await third.renew(["renew.certherd.test"], force=True, dry_run=True)
    assert [o.action for o in dry] == ["would-renew"]
    await third.aclose()


async def test_apply_a_config_file_onto_any_storage(pebble: PebbleServer, tmp_path: Path) -> None:
    config = tmp_path / "elsewhere.toml"
    config.write_text(_toml(pebble, "apply.certherd.test"))
    storage = MemoryStorage()
    async with Certherd(storage, config_file=config) as certherd:
        [outcome] = await certherd.apply()
        assert (outcome.action, outcome.reason) == ("issued", "new in the config file")
        [again] = await certherd.apply()
        assert again.action == "not-due"
    assert await live_version(storage, "apply.certherd.test") == 1


async def test_the_daemon_runs_a_cycle_and_stops(pebble: PebbleServer, tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "certherd.toml").write_text(_toml(pebble, "daemon.certherd.test"))
    notices: list[str] = []
    cycles: list[list[str]] = []

    def on_event(event: Event) -> None:
        if event.kind == "notice":
            notices.append(event.text)

    certherd = Certherd(config_dir, on_event=on_event)

    def on_cycle(outcomes: list[Outcome]) -> None:
        cycles.append([o.action for o in outcomes])
        certherd.stop()

    metrics = f"127.0.0.1:{free_http_port()}"
    await asyncio.wait_for(certherd.run(metrics=metrics, on_cycle=on_cycle), 60)
    assert cycles == [["renewed"]]
    assert f"metrics on http://{metrics}/metrics" in notices
    assert notices[-1] == "certherd daemon stopped"
    assert (config_dir / "live" / "daemon.certherd.test" / "cert.pem").is_file()


async def test_mistakes_are_certherd_errors_before_any_ca_contact(tmp_path: Path) -> None:
    async with Certherd(MemoryStorage()) as certherd:
        with pytest.raises(ConfigError, match="no lineage named 'nope'"):
            await certherd.renew(["nope"])
        with pytest.raises(ConfigError, match="no lineage named 'nope'"):
            await certherd.load("nope")
        with pytest.raises(ConfigError, match="no lineage named 'nope'"):
            await certherd.delete("nope")
        with pytest.raises(ConfigError, match="webroot"):
            await certherd.issue(
                ["x.certherd.test"],
                solvers=[{"kind": "webroot", "path": str(tmp_path / "missing")}],
                directory_url="https://127.0.0.1:9/directory",
            )
        with pytest.raises(ConfigError, match="unknown CA 'letsencrypt-stagign'"):
            await certherd.issue(
                ["x.certherd.test"], solvers=[{"kind": "http"}], ca="letsencrypt-stagign"
            )
        with pytest.raises(ConfigError, match="solver 'htp'"):
            await certherd.issue(["x.certherd.test"], solvers=[{"kind": "htp"}])
        with pytest.raises(ConfigError, match=r"notify_timeout must be .* from 1 to 600, not 0"):
            await certherd.issue(["x.certherd.test"], solvers=[{"kind": "http"}], notify_timeout=0)
        with pytest.raises(TypeError, match="names must be a list"):
            await certherd.issue("x.certherd.test", solvers=[{"kind": "http"}])
        with pytest.raises(ConfigError, match=r"certherd\.toml"):
            await certherd.apply()


def test_the_daemon_with_signals_outside_the_main_thread_is_refused(tmp_path: Path) -> None:
    """Only the main thread gets signals: asked for them elsewhere, ``run`` says so (a
    ConfigError naming the setting) before it does anything, instead of asyncio's error."""
    caught: list[BaseException] = []

    def in_a_thread() -> None:
        try:
            asyncio.run(Certherd(MemoryStorage()).run(signals=True))
        except BaseException as exc:
            caught.append(exc)

    worker = threading.Thread(target=in_a_thread)
    worker.start()
    worker.join(30)
    [error] = caught
    assert isinstance(error, ConfigError)
    assert "signals" in str(error)
    assert "main thread" in str(error)
