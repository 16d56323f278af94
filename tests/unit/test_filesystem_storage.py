"""FilesystemStorage beyond the shared contract: modes, live symlinks, lock files and
leases across processes, failed writes, read-only and forbidden folders, and keys that
try to escape."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from certherd.errors import ConfigError, FencedError, LockTimeoutError, StorageError
from certherd.storage import FilesystemStorage, holding
from certherd.storage.layout import (
    FILES,
    account_key,
    archive_file,
    ca_id,
    check_name,
    lineage_for,
)

NOBODY = 65534


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """Modes are checked under the common umask, whatever the test runner's is."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "certherd"


@pytest.fixture
def storage(root: Path) -> FilesystemStorage:
    return FilesystemStorage(root)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def leftovers(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.startswith("."))


async def write_version(storage: FilesystemStorage, lineage: str, version: int) -> None:
    for file in FILES:
        key = archive_file(lineage, file, version)
        await storage.write(key, f"{file} v{version}".encode(), private=file == "privkey.pem")


# -- modes ----------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o000])
async def test_value_modes_do_not_depend_on_the_umask(
    storage: FilesystemStorage, umask: int
) -> None:
    os.umask(umask)
    await storage.write("accounts/ca-1/default/key.pem", b"secret", private=True)
    await storage.write("state/a.json", b"{}")
    await storage.write("index.json", b"{}")
    assert mode(storage.root / "accounts/ca-1/default/key.pem") == 0o600
    assert mode(storage.root / "state/a.json") == 0o600, "settings and state: owner only"
    assert mode(storage.root / "index.json") == 0o644


async def test_overwriting_a_public_value_as_private_tightens_it(
    storage: FilesystemStorage,
) -> None:
    await storage.write("archive/a/privkey1.pem", b"x")
    await storage.write("archive/a/privkey1.pem", b"secret", private=True)
    assert mode(storage.root / "archive/a/privkey1.pem") == 0o600


async def test_folder_modes(storage: FilesystemStorage, root: Path) -> None:
    await storage.write(account_key("ca-1", "default"), b"k", private=True)
    await write_version(storage, "example.com", 1)
    await storage.publish("example.com", 1, FILES)
    await storage.write("renewal/example.com.json", b"{}")
    await storage.write("state/example.com.json", b"{}")
    for private in ("accounts", "accounts/ca-1", "accounts/ca-1/default", "archive", "renewal"):
        assert mode(root / private) == 0o700, private
    assert mode(root / "archive/example.com") == 0o700
    assert mode(root / "state") == 0o700
    for public in ("", "live", "live/example.com"):
        assert mode(root / public) == 0o755, public
    assert mode(root / "renewal/example.com.json") == 0o600
    assert mode(root / "archive/example.com/privkey1.pem") == 0o600
    assert mode(root / "archive/example.com/cert1.pem") == 0o644


async def test_an_older_install_is_tightened_on_first_use(root: Path) -> None:
    """Folders and settings files an older certherd left readable by everyone (0755,
    0644) are made owner-only by the next run, whatever it does first; symlinks in
    them are not followed."""
    for folder in ("renewal", "state", "accounts", "archive", "locks"):
        (root / folder).mkdir(parents=True, mode=0o755)
        (root / folder).chmod(0o755)
    (root / "renewal/old.json").write_text('{"key_secret": "c2VjcmV0"}')
    (root / "renewal/old.json").chmod(0o644)
    elsewhere = root.parent / "elsewhere.json"
    elsewhere.write_text("{}")
    elsewhere.chmod(0o644)
    (root / "renewal/link.json").symlink_to(elsewhere)
    storage = FilesystemStorage(root)
    assert await storage.list("renewal") == ["renewal/link.json", "renewal/old.json"]
    for folder in ("renewal", "state", "accounts", "archive", "locks"):
        assert mode(root / folder) == 0o700, folder
    assert mode(root / "renewal/old.json") == 0o600
    assert mode(elsewhere) == 0o644, "a symlink is not followed"


# -- live symlinks --------------------------------------------------------------------


async def test_live_files_are_relative_links_into_the_archive(
    storage: FilesystemStorage, root: Path
) -> None:
    await write_version(storage, "example.com", 1)
    await storage.publish("example.com", 1, FILES)
    live = storage.live_dir("example.com")
    assert live == root / "live/example.com"
    for file in FILES:
        link = live / file
        assert link.is_symlink()
        target = os.readlink(link)
        assert not os.path.isabs(target)
        stem = file.removesuffix(".pem")
        assert target == f"../../archive/example.com/{stem}1.pem"
        assert link.read_bytes() == f"{file} v1".encode()
        assert await storage.read(f"live/example.com/{file}") == f"{file} v1".encode()
    assert leftovers(live) == []


async def test_publishing_swaps_every_link(storage: FilesystemStorage, root: Path) -> None:
    await write_version(storage, "example.com", 1)
    await storage.publish("example.com", 1, FILES)
    await write_version(storage, "example.com", 2)
    await storage.publish("example.com", 2, FILES)
    live = storage.live_dir("example.com")
    assert {(live / f).read_bytes() for f in FILES} == {f"{f} v2".encode() for f in FILES}
    assert leftovers(live) == []


async def test_links_survive_moving_the_config_dir(storage: FilesystemStorage, root: Path) -> None:
    await write_version(storage, "example.com", 3)
    await storage.publish("example.com", 3, FILES)
    moved = root.with_name("moved")
    root.rename(moved)
    assert (moved / "live/example.com/fullchain.pem").read_bytes() == b"fullchain.pem v3"
    assert await FilesystemStorage(moved).live_version("example.com") == 3


async def test_unpublish_removes_the_live_folder(storage: FilesystemStorage, root: Path) -> None:
    await write_version(storage, "example.com", 1)
    await storage.publish("example.com", 1, FILES)
    await storage.unpublish("example.com")
    assert not (root / "live/example.com").exists()
    assert (root / "archive/example.com/cert1.pem").is_file()


async def test_publish_removes_only_its_own_staging_leftovers(
    storage: FilesystemStorage, root: Path
) -> None:
    """A crashed publish of example.com leaves ``.example.com.<pid>.new``: removed by the
    next publish of example.com; the staging folders of example.com.au (a lineage whose
    name starts the same, being published by another process) and of other lineages are
    not touched (issue 9 item 10)."""
    live = root / "live"
    live.mkdir(parents=True)
    ours = live / ".example.com.4242.new"
    theirs = [
        live / ".example.com.au.4242.new",
        live / ".example.com.4242.4243.new",
        live / ".example.com.1.4242.new",
        live / ".www.example.com.4242.new",
    ]
    for folder in [ours, *theirs]:
        folder.mkdir()
        (folder / "cert.pem").symlink_to("../../archive/x/cert1.pem")
    await write_version(storage, "example.com", 1)
    await storage.publish("example.com", 1, FILES)
    assert not ours.exists()
    for folder in theirs:
        assert (folder / "cert.pem").is_symlink(), folder
    assert await storage.live_version("example.com") == 1


async def test_a_failed_publish_leaves_no_empty_live_folder(
    storage: FilesystemStorage, root: Path
) -> None:
    with pytest.raises(StorageError, match=r"cert1\.pem is missing"):
        await storage.publish("example.com", 1, FILES)
    assert not (root / "live/example.com").exists()


# -- stat -----------------------------------------------------------------------------


async def test_a_rewrite_within_one_clock_tick_changes_the_stat_token(
    storage: FilesystemStorage, root: Path
) -> None:
    """Kernels without fine-grained timestamps give two quick writes the same mtime."""
    await storage.write("state/a.json", b"aaaa")
    before = (await storage.stat("state/a.json")).token
    old = (root / "state/a.json").stat()
    await storage.write("state/a.json", b"bbbb")
    os.utime(root / "state/a.json", ns=(old.st_atime_ns, old.st_mtime_ns))
    assert (await storage.stat("state/a.json")).token != before
    assert (await storage.stat_all("state"))["state/a.json"].token != before


# -- leases across processes ------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from certherd.storage import FilesystemStorage, holding

    async def main():
        lease = await FilesystemStorage(sys.argv[1]).acquire("example.com", ttl=60, wait=5)
        print(lease.token, flush=True)
        sys.stdin.readline()  # then exit without releasing: the kernel drops the flock

    asyncio.run(main())
    """
)


@contextlib.contextmanager
def lease_holder(root: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lease ``example.com`` until its stdin closes."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip().isdigit()
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(10)
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()


async def test_a_lease_waits_for_another_process_and_says_so(
    storage: FilesystemStorage, root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with lease_holder(root) as child:
        with pytest.raises(LockTimeoutError, match=r"another certherd holds example\.com"):
            await storage.acquire("example.com", ttl=30, wait=0.1)
        waiter = asyncio.create_task(storage.acquire("example.com", ttl=30, wait=10))
        await asyncio.sleep(0.2)
        assert not waiter.done()
        assert "waiting for the lock of example.com" in caplog.text
        assert child.stdin is not None
        child.stdin.close()  # the holder exits without releasing: the kernel drops its flock
        lease = await asyncio.wait_for(waiter, 5)
        assert "got the lock of example.com after" in caplog.text
    await storage.release(lease)


async def test_lock_files_are_private(storage: FilesystemStorage, root: Path) -> None:
    lease = await storage.acquire("example.com", ttl=30, wait=0)
    assert mode(root / "locks") == 0o700
    assert mode(root / "locks/example.com.lock") == 0o600
    assert mode(root / "locks/.held") == 0o700
    assert mode(root / "locks/.held/example.com") == 0o600
    await storage.release(lease)


async def test_a_lock_file_forgotten_while_others_wait_keeps_tokens_growing(
    storage: FilesystemStorage, root: Path
) -> None:
    """The holder removes its lock file (a deleted lineage, a failed first issue) while
    another waits on it: the waiter is granted the lease on the new file with a higher
    token, and that grant keeps everyone else out (issue 10 item 9)."""
    first = await storage.acquire("example.com", ttl=30, wait=0)
    waiter = asyncio.create_task(FilesystemStorage(root).acquire("example.com", ttl=30, wait=5))
    await asyncio.sleep(0.1)
    await storage.forget("example.com")
    assert not (root / "locks/example.com.lock").exists()
    await storage.release(first)
    second = await asyncio.wait_for(waiter, 5)
    assert second.token > first.token
    with pytest.raises(LockTimeoutError):
        await storage.acquire("example.com", ttl=30, wait=0)
    assert (root / "locks/example.com.lock").exists()


async def test_a_killed_holder_is_reported_as_interrupted(
    storage: FilesystemStorage, root: Path
) -> None:
    program = textwrap.dedent(
        """
        import asyncio, os, signal, sys
        from certherd.storage import FilesystemStorage, holding

        async def main():
            async with holding(FilesystemStorage(sys.argv[1]), "example.com"):
                os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    async with holding(storage, "other.test"):
        assert await storage.interrupted() == ["other.test"]  # held now: a live holder
    assert await storage.interrupted() == []
    killed = subprocess.run([sys.executable, "-c", program, str(root)], check=False)
    assert killed.returncode == -signal.SIGKILL
    assert await storage.interrupted() == ["example.com"]
    async with holding(storage, "example.com", wait=0):  # free at once: its holder died
        pass
    assert await storage.interrupted() == []


async def test_clearing_leftovers_takes_only_its_own_old_temporary_files(
    storage: FilesystemStorage, root: Path
) -> None:
    """Exact names of this lineage's temporary files and staging folders, older than
    the given moment; never another lineage's, never a file certherd did not name."""
    hex16 = "0123456789abcdef"
    ours = [
        f"archive/example.com/.cert2.pem.{hex16}.tmp",
        f"archive/example.com/.privkey12.pem.{hex16}.tmp",
        f"renewal/.example.com.json.{hex16}.tmp",
        f"state/.example.com.json.{hex16}.tmp",
    ]
    others = [
        f"renewal/.example.com.au.json.{hex16}.tmp",
        f"state/.www.example.com.json.{hex16}.tmp",
        f"archive/example.com.au/.cert2.pem.{hex16}.tmp",
        "archive/example.com/.cert2.pem.swp",
        f"archive/example.com/.cert2.pem.{hex16}.tmp.keep",
        f"archive/example.com/.notes.{hex16}.tmp",
    ]
    for key in [*ours, *others]:
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(b"x")
    (root / "live/.example.com.77.new").mkdir(parents=True)
    (root / "live/.example.com.au.77.new").mkdir()
    (root / f"archive/example.com/.chain2.pem.{hex16}.tmp").symlink_to("/etc/passwd")
    past = time.time() - 60
    for path in root.rglob("*"):
        os.utime(path, (past, past), follow_symlinks=False)
    fresh = root / f"state/.example.com.json.{'f' * 16}.tmp"
    fresh.write_bytes(b"a write in progress")

    removed = await storage.clear_leftovers("example.com", before=time.time() - 1)
    assert sorted(removed) == sorted([*ours, "live/.example.com.77.new"])
    for key in others:
        assert (root / key).exists(), key
    assert (root / "live/.example.com.au.77.new").is_dir()
    assert (root / f"archive/example.com/.chain2.pem.{hex16}.tmp").is_symlink()
    assert fresh.exists()
    assert Path("/etc/passwd").exists()

    account = account_key("ca-1", "default")
    stale = root / f"accounts/ca-1/default/.key.pem.{hex16}.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x")
    os.utime(stale, (past, past))
    assert await storage.clear_temporary(account, before=time.time()) == [
        f"accounts/ca-1/default/.key.pem.{hex16}.tmp"
    ]


async def test_forget_removes_the_empty_archive_folder_and_the_lock(
    storage: FilesystemStorage, root: Path
) -> None:
    async with holding(storage, "example.com"):
        await write_version(storage, "example.com", 1)
        for file in FILES:
            await storage.delete(archive_file("example.com", file, 1))
        await storage.forget("example.com")
    assert not (root / "archive/example.com").exists()
    assert not (root / "locks/example.com.lock").exists()
    assert not (root / "locks/.held/example.com").exists()
    await write_version(storage, "kept.test", 1)
    await storage.forget("kept.test")
    assert (root / "archive/kept.test/cert1.pem").is_file()  # a folder with values stays


async def test_a_lost_lease_cannot_forget_the_new_holders_lock(
    storage: FilesystemStorage, root: Path
) -> None:
    """A run paused past its lease ends its work on a lineage without values: its forget
    must not remove the lock file and marker of the holder that took over."""
    old = await storage.acquire("example.com", ttl=0.2, wait=0)
    await asyncio.sleep(0.3)
    new = await storage.acquire("example.com", ttl=30, wait=0)
    with pytest.raises(FencedError):
        await storage.forget("example.com", fence=old)
    assert (root / "locks/example.com.lock").exists()
    assert (root / "locks/.held/example.com").exists()
    with pytest.raises(LockTimeoutError):
        await storage.acquire("example.com", ttl=30, wait=0)
    await storage.forget("example.com", fence=new)
    assert not (root / "locks/example.com.lock").exists()
    assert not (root / "locks/.held/example.com").exists()
    later = await storage.acquire("example.com", ttl=30, wait=0)
    assert later.token > new.token


# -- failed writes --------------------------------------------------------------------


@pytest.mark.parametrize("step", ["fsync", "replace"])
async def test_a_full_disk_keeps_the_old_value(
    storage: FilesystemStorage, root: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    await storage.write("state/a.json", b"old")

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, step, full)
    with pytest.raises(StorageError) as caught:
        await storage.write("state/a.json", b"new value")
    monkeypatch.undo()
    message = str(caught.value)
    assert "the disk is full" in message
    assert str(root / "state/a.json") in message
    assert "\n" not in message
    assert await storage.read("state/a.json") == b"old"
    assert leftovers(root / "state") == []
    assert await storage.list("state") == ["state/a.json"]


async def test_a_cancelled_write_keeps_the_old_value(
    storage: FilesystemStorage, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await storage.write("state/a.json", b"old")

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        await storage.write("state/a.json", b"new")
    monkeypatch.undo()
    assert await storage.read("state/a.json") == b"old"
    assert leftovers(root / "state") == []


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.EROFS, "read-only"),
        (errno.EACCES, "permission denied"),
        (errno.EPERM, "permission denied"),
    ],
)
async def test_os_errors_are_explained(
    storage: FilesystemStorage, monkeypatch: pytest.MonkeyPatch, code: int, words: str
) -> None:
    await storage.write("state/a.json", b"old")

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(StorageError, match=words):
        await storage.write("state/a.json", b"new")


@contextlib.contextmanager
def tmpfs(folder: Path) -> Iterator[bool]:
    """A small tmpfs on ``folder`` (True), or False where mounting is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    can_mount = os.geteuid() == 0 and shutil.which("mount") is not None
    if can_mount:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(folder)],
            capture_output=True,
            check=False,
        )
        can_mount = mounted.returncode == 0
    try:
        yield can_mount
    finally:
        if can_mount:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def attempt_write(root: Path) -> str:
    """Read, then try to overwrite, ``live/a.json`` (in a folder others may read); the
    StorageError text or "written"."""

    async def attempt() -> str:
        storage = FilesystemStorage(root)
        assert await storage.read("live/a.json") == b"old"
        try:
            await storage.write("live/a.json", b"new")
        except StorageError as exc:
            return str(exc)
        return "written"

    return asyncio.run(attempt())


def forbidden_write_message(root: Path) -> str:
    """:func:`attempt_write` as an unprivileged user (root ignores folder modes)."""
    if os.geteuid() != 0:
        return attempt_write(root)
    # Fork and drop to nobody: no exec, so the interpreter may live in root's home.
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(reader)
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            text = attempt_write(root)
        except BaseException as exc:
            text = f"child failed: {exc!r}"
        os.write(writer, text.encode())
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        text = pipe.read().decode()
    os.waitpid(pid, 0)
    return text


def test_a_forbidden_folder_gives_a_clear_message() -> None:
    base = Path(tempfile.mkdtemp(prefix="certherd-perm-"))  # not below pytest's 0700 folders
    try:
        base.chmod(0o755)
        root = base / "certherd"
        asyncio.run(FilesystemStorage(root).write("live/a.json", b"old"))
        (root / "live").chmod(0o555)
        message = forbidden_write_message(root)
        assert message.startswith(f"cannot write {root / 'live/a.json'}: permission denied")
        assert "fix its permissions" in message
        assert (root / "live/a.json").read_bytes() == b"old"
        assert leftovers(root / "live") == []
    finally:
        (base / "certherd/live").chmod(0o755)
        shutil.rmtree(base)


async def test_a_read_only_file_system_gives_a_clear_message(tmp_path: Path) -> None:
    folder = tmp_path / "mnt"
    with tmpfs(folder) as mounted:
        if not mounted:
            # No mount here: a folder we may not write into is the closest we can get.
            message = await asyncio.to_thread(forbidden_check_without_mount)
            assert "permission denied" in message
            return
        storage = FilesystemStorage(folder)
        await storage.write("state/a.json", b"old")
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        with pytest.raises(StorageError) as caught:
            await storage.write("state/a.json", b"new")
        assert str(caught.value) == (
            f"cannot write {folder / 'state/a.json'}: the file system is read-only: "
            "keep certherd's state on a writable one"
        )
        with pytest.raises(StorageError, match="read-only"):
            await storage.write("renewal/new.json", b"{}")
        with pytest.raises(StorageError, match="read-only"):
            await storage.delete("state/a.json")
        assert await storage.read("state/a.json") == b"old"


def forbidden_check_without_mount() -> str:
    base = Path(tempfile.mkdtemp(prefix="certherd-ro-"))
    try:
        base.chmod(0o755)
        root = base / "certherd"
        asyncio.run(FilesystemStorage(root).write("state/a.json", b"old"))
        (root / "state").chmod(0o555)
        return forbidden_write_message(root)
    finally:
        (base / "certherd/state").chmod(0o755)
        shutil.rmtree(base)


# -- keys that try to leave the folder ------------------------------------------------

BAD_NAMES = ["", ".", "..", "..foo", "a..b", "../etc", "a/b", "/etc", "a\\b", "a\0b", ".hidden"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_check_name_refuses_path_tricks(name: str) -> None:
    with pytest.raises(ConfigError, match="not usable"):
        check_name(name)


@pytest.mark.parametrize(
    "name", ["example.com", "www_2.example-x.com", "a", "A" * 128, "_.example.com", "__1"]
)
def test_check_name_accepts_plain_names(name: str) -> None:
    assert check_name(name) == name


def test_check_name_limits_the_length() -> None:
    with pytest.raises(ConfigError):
        check_name("a" * 129)


def test_lineage_for_and_ca_id_build_safe_names() -> None:
    assert lineage_for("Example.COM.") == "example.com"
    assert lineage_for("2001:db8::1") == "2001_db8__1"
    assert lineage_for("::1") == "__1"
    assert lineage_for("bücher.example") == "xn--bcher-kva.example"
    with pytest.raises(ConfigError):
        lineage_for("../../etc")
    long_name = ".".join(["a" * 60] * 4)  # 243 characters: a valid name, too long a folder
    assert len(lineage_for(long_name)) == 128
    assert lineage_for(long_name) != lineage_for(long_name.replace("a", "b", 1))


def test_a_wildcard_and_its_apex_are_two_lineages() -> None:
    # issue 9 item 9: both used to be "example.com", the second replaced the first.
    assert lineage_for("*.Example.COM.") == "_.example.com"
    assert lineage_for("example.com") == "example.com"
    ident = ca_id("https://acme.example:14000/dir")
    assert ident.startswith("acme.example_14000-")
    assert ident == ca_id("https://acme.example:14000/dir")
    assert ident != ca_id("https://acme.example:14000/other")
    assert check_name(ca_id("not a url")) == ca_id("not a url")


BAD_KEYS = [
    "",
    "..",
    "../escape",
    "state/../../escape",
    "state/./a.json",
    "/etc/passwd",
    "state//a.json",
    "state/",
    "state\\..\\a.json",
    "state/a\0.json",
]


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_the_storage_refuses_keys_that_leave_its_folder(
    storage: FilesystemStorage, tmp_path: Path, key: str
) -> None:
    with pytest.raises(ValueError, match="bad storage key"):
        await storage.write(key, b"x")
    with pytest.raises(ValueError, match="bad storage key"):
        await storage.read(key)
    with pytest.raises(ValueError, match="bad storage key"):
        await storage.delete(key)
    with pytest.raises(ValueError, match="bad storage key"):
        await storage.stat(key)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("prefix", ["..", "../x", "state/..", "a\0"])
async def test_listing_refuses_prefixes_that_leave_its_folder(
    storage: FilesystemStorage, prefix: str
) -> None:
    with pytest.raises(ValueError, match="bad storage key"):
        await storage.list(prefix)
    with pytest.raises(ValueError, match="bad storage key"):
        await storage.stat_all(prefix)


@pytest.mark.parametrize("name", ["..", "../etc", "a/b", "a\0b"])
async def test_lineage_and_lock_names_are_checked(storage: FilesystemStorage, name: str) -> None:
    with pytest.raises(ConfigError):
        storage.live_dir(name)
    with pytest.raises(ConfigError):
        await storage.unpublish(name)
    with pytest.raises(ConfigError):
        await storage.acquire(name, ttl=30, wait=0)
