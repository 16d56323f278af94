"""WebrootSolver: Pebble validates http-01 through a real nginx serving the webroot.

Run as root (as CI runs), nginx's workers run as ``nobody``: a challenge file that is not
world-readable, or a folder that is not world-traversable, fails validation with 403.
The hostile-token and file-system tests below need no nginx: a scripted CA
(``tests/unit/fakes.py``) or direct calls.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from acme_helpers import PebbleFactory, registered, unique_name
from tests.servers.net import free_port
from tests.servers.nginx import NginxServer
from tests.unit.fakes import HostileAcmeServer, Reply

from certherd.acme.messages import Challenge, Identifier, Status
from certherd.challenges import webroot as webroot_module
from certherd.challenges.base import ChallengeTask
from certherd.challenges.webroot import WebrootSolver
from certherd.crypto.certs import describe_certificate
from certherd.errors import (
    ConfigError,
    OrderFailedError,
    SolverError,
    UnsafeResponseError,
)
from certherd.manager.obtain import obtain_certificate
from certherd.testing.pebble import PebbleServer

NginxFactory = Callable[..., NginxServer]
Tree = dict[str, tuple[str, int, bytes]]

TOKEN = "tok_ABCDEFGHIJKLMNOPQRSTUV"


def snapshot(root: Path) -> Tree:
    """Every path below ``root`` -> (kind, permission bits, content or link target)."""
    tree: Tree = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            info = path.lstat()
            relative = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                tree[relative] = ("link", 0, os.readlink(path).encode())
            elif stat.S_ISDIR(info.st_mode):
                tree[relative] = ("dir", stat.S_IMODE(info.st_mode), b"")
            else:
                tree[relative] = ("file", stat.S_IMODE(info.st_mode), path.read_bytes())
    return tree


def make_site(folder: Path) -> Path:
    """A webroot with a page of the user's, readable by nginx's workers."""
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    (folder / "index.html").write_text("<p>the user's site</p>\n")
    (folder / "index.html").chmod(0o644)
    return folder


def task_for(name: str, token: str = TOKEN) -> ChallengeTask:
    challenge = Challenge("https://ca.test/chall/1", "http-01", Status.PENDING, token=token)
    return ChallengeTask(Identifier.dns(name), challenge, f"{token}.thumbprint_abcdefghijklmnop")


# -- through Pebble and nginx -------------------------------------------------------------


@pytest.fixture(scope="module")
def http_port() -> int:
    """The port nginx listens on and Pebble's validator fetches http-01 from."""
    return free_port()


@pytest.fixture(scope="module")
def webroot_pebble(pebble_factory: PebbleFactory, http_port: int) -> PebbleServer:
    return pebble_factory(http_port=http_port, authz_reuse_percent=0)


async def test_issues_for_two_names_through_nginx(
    webroot_pebble: PebbleServer, nginx_factory: NginxFactory, served_dir: Path, http_port: int
) -> None:
    site = make_site(served_dir / "site")
    before = snapshot(site)
    nginx = nginx_factory(site, http_port)
    names = [unique_name("webroot-a"), unique_name("webroot-b")]
    solver = WebrootSolver(site)

    started = time.monotonic()
    async with registered(webroot_pebble) as client:
        issued = await obtain_certificate(client, names, [solver])
    elapsed = time.monotonic() - started

    assert sorted(describe_certificate(issued.chain.leaf).dns_names) == sorted(names)
    fetched = [line for line in nginx.access_log_lines() if "/.well-known/acme-challenge/" in line]
    # Pebble 2.4 fetches each token several times (3 here), all through nginx.
    tokens = {line.split("/.well-known/acme-challenge/")[1].split()[0] for line in fetched}
    assert len(tokens) == 2, fetched
    assert all('" 200 ' in line and "Pebble-VA" in line for line in fetched), fetched
    # The file and both created folders are gone; the user's page is untouched.
    assert snapshot(site) == before
    assert elapsed < 30


async def test_failed_validation_leaves_the_users_well_known_alone(
    webroot_pebble: PebbleServer, nginx_factory: NginxFactory, served_dir: Path, http_port: int
) -> None:
    site = make_site(served_dir / "site")
    well_known = site / ".well-known"
    well_known.mkdir(mode=0o755)
    (well_known / "security.txt").write_text("Contact: mailto:security@example.test\n")
    before = snapshot(site)
    # nginx serves another folder: Pebble gets 404 for every token.
    nginx = nginx_factory(make_site(served_dir / "elsewhere"), http_port)
    solver = WebrootSolver({"*": site})

    async with registered(webroot_pebble) as client:
        with pytest.raises(OrderFailedError, match="404"):
            await obtain_certificate(client, [unique_name("webroot-404")], [solver])

    fetched = [line for line in nginx.access_log_lines() if "/.well-known/acme-challenge/" in line]
    assert fetched, nginx.access_log_lines()
    assert all('" 404 ' in line for line in fetched), fetched
    assert snapshot(site) == before  # acme-challenge/ and the token gone, .well-known kept
    assert not (site / ".well-known" / "acme-challenge").exists()


# -- a hostile CA ---------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["../../etc/passwd", "a/b", "..", "", "x" * 20 + "\n"])
async def test_hostile_tokens_are_refused_and_nothing_is_written(
    tmp_path: Path, token: str
) -> None:
    webroot = tmp_path / "srv" / "www" / "site"
    webroot.mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    before = snapshot(tmp_path)

    server = HostileAcmeServer()
    server.authorization_status = "pending"

    def hostile_authorization(seen: Any) -> Reply:
        body = dict(server.authorizations["/authz/1"])
        body["challenges"] = [{**body["challenges"][0], "token": token}]
        return Reply(body=body)

    server.hooks["/authz/1"] = hostile_authorization
    async with server.client() as client:
        with pytest.raises(UnsafeResponseError, match="not base64url"):
            await obtain_certificate(client, ["example.test"], [WebrootSolver(webroot)])

    assert snapshot(tmp_path) == before
    assert server.requests_to("/chall/1") == []  # the CA was never told to validate


# -- the file system, directly --------------------------------------------------------------


async def test_present_writes_an_atomic_world_readable_file_whatever_the_umask(
    tmp_path: Path,
) -> None:
    solver = WebrootSolver(tmp_path)
    old = os.umask(0o077)
    try:
        handle = await solver.present(task_for("example.test"))
    finally:
        os.umask(old)
    folder = tmp_path / ".well-known" / "acme-challenge"
    path = folder / TOKEN
    assert path.read_text() == f"{TOKEN}.thumbprint_abcdefghijklmnop"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert stat.S_IMODE(folder.parent.stat().st_mode) == 0o755
    assert os.listdir(folder) == [TOKEN]  # no temporary file left beside it
    await solver.cleanup(handle)
    assert os.listdir(tmp_path) == []
    await solver.cleanup(handle)  # a second cleanup of a gone handle is fine


async def test_per_name_webroots_and_default(tmp_path: Path) -> None:
    first, fallback = tmp_path / "first", tmp_path / "fallback"
    first.mkdir()
    fallback.mkdir()
    solver = WebrootSolver({"First.Example.TEST.": first, "*": fallback})
    assert solver.supports(Identifier.dns("first.example.test"))
    assert solver.supports(Identifier.dns("other.example.test"))
    assert not solver.supports(Identifier.dns("*.example.test"))
    only = WebrootSolver({"first.example.test": first})
    assert not only.supports(Identifier.dns("other.example.test"))
    assert only.supports(Identifier.ip("127.0.0.1")) is False

    handles = [
        await solver.present(task_for("first.example.test", TOKEN)),
        await solver.present(task_for("other.example.test", TOKEN + "2")),
    ]
    assert (first / ".well-known" / "acme-challenge" / TOKEN).is_file()
    assert (fallback / ".well-known" / "acme-challenge" / (TOKEN + "2")).is_file()
    for handle in handles:
        await solver.cleanup(handle)
    assert os.listdir(first) == os.listdir(fallback) == []


def test_wildcard_webroot_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="wildcard names need dns-01"):
        WebrootSolver({"*.example.test": Path("/srv/www")})


async def test_missing_webroot_is_a_one_line_config_error(tmp_path: Path) -> None:
    solver = WebrootSolver(tmp_path / "missing")
    with pytest.raises(ConfigError, match="does not exist") as caught:
        await solver.present(task_for("example.test"))
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "missing").exists()


async def test_symlink_escaping_the_webroot_is_refused(tmp_path: Path) -> None:
    webroot, outside = tmp_path / "site", tmp_path / "outside"
    webroot.mkdir()
    outside.mkdir()
    (webroot / ".well-known").symlink_to(outside)
    before = snapshot(tmp_path)
    with pytest.raises(SolverError, match=r"\.well-known is a symbolic link"):
        await WebrootSolver(webroot).present(task_for("example.test"))
    assert snapshot(tmp_path) == before


async def test_symlink_inside_the_webroot_is_refused_too(tmp_path: Path) -> None:
    """Below the webroot no symlink is followed, even one that points inside it: its owner
    could repoint it between any check and the write (tests/.../test_webroot_race.py)."""
    webroot = tmp_path / "site"
    (webroot / "shared").mkdir(parents=True)
    (webroot / ".well-known").symlink_to("shared")
    before = snapshot(tmp_path)
    with pytest.raises(SolverError, match="make it a folder") as caught:
        await WebrootSolver(webroot).present(task_for("example.test"))
    assert "\n" not in str(caught.value)
    assert snapshot(tmp_path) == before


async def test_a_file_in_the_way_is_a_solver_error(tmp_path: Path) -> None:
    (tmp_path / ".well-known").write_text("not a folder")
    before = snapshot(tmp_path)
    with pytest.raises(SolverError, match="not a directory"):
        await WebrootSolver(tmp_path).present(task_for("example.test"))
    assert snapshot(tmp_path) == before


async def test_shared_folders_go_with_the_last_file_across_solvers(tmp_path: Path) -> None:
    one, two = WebrootSolver(tmp_path), WebrootSolver(tmp_path)
    first = await one.present(task_for("a.example.test", TOKEN))
    second = await two.present(task_for("b.example.test", TOKEN + "2"))
    await one.cleanup(first)
    assert os.listdir(tmp_path / ".well-known" / "acme-challenge") == [TOKEN + "2"]
    await two.cleanup(second)
    assert os.listdir(tmp_path) == []


async def test_cleanup_keeps_what_the_user_put_there(tmp_path: Path) -> None:
    solver = WebrootSolver(tmp_path)
    handle = await solver.present(task_for("example.test"))
    folder = tmp_path / ".well-known" / "acme-challenge"
    (folder / "users-file").write_text("mine")
    await solver.cleanup(handle)
    assert os.listdir(folder) == ["users-file"]

    # A file the user put in place of ours (another inode) is not ours to remove.
    handle = await solver.present(task_for("example.test", TOKEN + "3"))
    replacement = folder / "replacement"
    replacement.write_text("the user's")
    replacement.replace(folder / (TOKEN + "3"))
    await solver.cleanup(handle)
    assert (folder / (TOKEN + "3")).read_text() == "the user's"


async def test_cancelled_present_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    undone: list[object] = []
    original = webroot_module._undo_when_done

    def undo(work: Any) -> None:
        original(work)
        undone.append(work)

    monkeypatch.setattr(webroot_module, "_undo_when_done", undo)
    solver = WebrootSolver(tmp_path)
    for spins in range(1, 5):  # cancel at different points of the worker thread's run
        presenting = asyncio.ensure_future(solver.present(task_for("example.test")))
        for _ in range(spins):
            await asyncio.sleep(0)
        presenting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await presenting
        deadline = time.monotonic() + 10
        while len(undone) < spins and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert len(undone) == spins  # the worker thread finished, and was undone
        assert os.listdir(tmp_path) == []


async def test_concurrent_presents_share_created_folders(tmp_path: Path) -> None:
    solver = WebrootSolver(tmp_path)
    tokens = [f"{TOKEN}{index:02d}" for index in range(20)]
    handles = await asyncio.gather(*(solver.present(task_for("x.test", t)) for t in tokens))
    assert sorted(os.listdir(tmp_path / ".well-known" / "acme-challenge")) == sorted(tokens)
    await asyncio.gather(*(solver.cleanup(handle) for handle in handles))
    assert os.listdir(tmp_path) == []
