"""WebrootSolver against a hostile web-app user who owns the webroot (issue 9, item 1).

The attacker is a real process running as ``nobody`` that swaps directories for symlinks
to a victim folder with ``renameat2(RENAME_EXCHANGE)`` in a tight loop while root runs
thousands of ``present()`` + ``cleanup()``. Nothing may ever appear in the victim folders,
and every token file must be gone afterwards. The deterministic tests below place the
symlink before ``present()`` (or move folders before ``cleanup()``).

Needs root (to act as ``nobody``): the suite runs as root, as CI does.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from certherd import _nofollow
from certherd.acme.messages import Challenge, Identifier, Status
from certherd.challenges.base import ChallengeTask
from certherd.challenges.webroot import WebrootSolver
from certherd.errors import ConfigError, SolverError

ITERATIONS = 2000
SYSTEM_PYTHON = "/usr/bin/python3"
"""Runs the attacker: one `nobody` can execute (the test's own may sit below /root)."""

# Runs as `nobody` with the webroot as its working directory: exchanges each pair of
# names (argv) with renameat2(RENAME_EXCHANGE) as fast as it can until SIGTERM, then
# prints how many exchanges succeeded.
ATTACKER = r"""
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
pairs = [pair.split(":") for pair in sys.argv[1:]]
pairs = [(a.encode(), b.encode()) for a, b in pairs]
done = 0
def stop(*_):
    print(done, flush=True)
    os._exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
while True:
    for a, b in pairs:
        if libc.renameat2(-100, a, -100, b, 2) == 0:
            done += 1
"""


@pytest.fixture(autouse=True, params=["openat2", "openat"])
def lookup(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs twice: with openat2(2), and with the O_NOFOLLOW walk used by kernels
    older than 5.6 (openat2 marked missing, as after its first ENOSYS)."""
    if request.param == "openat":
        monkeypatch.setattr(_nofollow, "_openat2", False)
    else:
        top = os.open("/", os.O_RDONLY)
        os.close(_nofollow.open_below(top, "tmp"))
        os.close(top)
        assert _nofollow.openat2_available(), "this kernel has openat2: it must be used"
    return str(request.param)


def task_for(token: str) -> ChallengeTask:
    challenge = Challenge("https://ca.test/chall/1", "http-01", Status.PENDING, token=token)
    return ChallengeTask(Identifier.dns("example.test"), challenge, f"{token}.thumbprint")


def tree(root: Path) -> set[str]:
    """Every path below ``root`` (not following symlinks), relative to it."""
    found: set[str] = set()
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            found.add(str(Path(folder, name).relative_to(root)))
    return found


def give_to_nobody(*paths: Path) -> None:
    user = pwd.getpwnam("nobody")
    for path in paths:
        os.lchown(path, user.pw_uid, user.pw_gid)


@pytest.fixture
def victim(served_dir: Path) -> Path:
    """A root-owned folder the attacker wants root to write into (like sites-enabled)."""
    folder = served_dir / "victim"
    (folder / "acme-challenge").mkdir(parents=True)
    (folder / "site.conf").write_text("server { }\n")
    return folder


@pytest.fixture
def webroot(served_dir: Path) -> Path:
    """A webroot owned by the web-app user ``nobody``."""
    folder = served_dir / "site"
    folder.mkdir(mode=0o755)
    give_to_nobody(folder)
    return folder


class Attacker:
    """The ``nobody`` process exchanging names below the webroot; stopped by its pid."""

    def __init__(self, webroot: Path, pairs: list[tuple[str, str]]) -> None:
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, "-c", ATTACKER, *(f"{a}:{b}" for a, b in pairs)],
            cwd=webroot,
            user="nobody",
            group="nogroup",
            extra_groups=[],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"

    def stop(self) -> int:
        """Stop it; how many exchanges it made."""
        self.process.send_signal(signal.SIGTERM)
        output, _ = self.process.communicate(timeout=10)
        return int(output.strip() or 0)


@pytest.fixture
def attack() -> Iterator[list[Attacker]]:
    attackers: list[Attacker] = []
    yield attackers
    for attacker in attackers:
        if attacker.process.poll() is None:
            attacker.process.kill()
            attacker.process.wait()


def setup_exchange(webroot: Path, victim: Path) -> list[tuple[str, str]]:
    """`.well-known` and `.well-known/acme-challenge` swap places with links to the victim."""
    well_known = webroot / ".well-known"
    (well_known / "acme-challenge").mkdir(parents=True)
    (well_known / "swap").symlink_to(victim)
    (webroot / "swap").symlink_to(victim)
    give_to_nobody(well_known, well_known / "acme-challenge", well_known / "swap", webroot / "swap")
    return [(".well-known/acme-challenge", ".well-known/swap"), (".well-known", "swap")]


def setup_link_inside(webroot: Path, victim: Path) -> list[tuple[str, str]]:
    """`acme-challenge` links to a folder inside the webroot that swaps with a victim link."""
    well_known = webroot / ".well-known"
    well_known.mkdir()
    (well_known / "acme-challenge").symlink_to("../shared")
    (webroot / "shared").mkdir()
    (webroot / "swap").symlink_to(victim)
    give_to_nobody(well_known, well_known / "acme-challenge", webroot / "shared", webroot / "swap")
    return [("shared", "swap")]


@pytest.mark.parametrize("setup", [setup_exchange, setup_link_inside])
async def test_racing_symlink_swaps_never_write_outside_the_webroot(
    webroot: Path, victim: Path, attack: list[Attacker], setup: object
) -> None:
    pairs = setup(webroot, victim)  # type: ignore[operator]
    victim_before = tree(victim)
    solver = WebrootSolver(webroot)
    attacker = Attacker(webroot, pairs)
    attack.append(attacker)
    tokens = [f"race{index:06d}_ABCDEFGHIJKLMNOP" for index in range(ITERATIONS)]
    written = refused = 0
    for token in tokens:
        try:
            handle = await solver.present(task_for(token))
        except SolverError:
            refused += 1  # a symlink was in the way at that moment: refusing is right
        else:
            written += 1
            assert tree(victim) == victim_before, f"root wrote into the victim folder ({token})"
            await solver.cleanup(handle)
        assert tree(victim) == victim_before, f"root changed the victim folder ({token})"
    exchanges = attacker.stop()
    assert exchanges > ITERATIONS  # the attacker really raced
    assert written + refused == ITERATIONS
    print(f"{written} written, {refused} refused, {exchanges} exchanges")
    if setup is setup_exchange:
        assert written > 0  # the write path ran under attack, not only refusals
    assert tree(victim) == victim_before
    leftovers = [path for path in tree(webroot.parent) if "race" in path or ".tmp" in path]
    assert leftovers == []  # cleanup complete: no token (or temporary) file anywhere


# -- the same attacks, placed before present() or cleanup() -------------------------------


async def test_well_known_linked_to_a_victim_is_refused(webroot: Path, victim: Path) -> None:
    (webroot / ".well-known").symlink_to(victim)
    with pytest.raises(SolverError, match=r"\.well-known is a symbolic link") as caught:
        await WebrootSolver(webroot).present(task_for("tok_ABCDEFGHIJKLMNOPQRSTUV"))
    assert "\n" not in str(caught.value)
    assert tree(victim) == {"acme-challenge", "site.conf"}


async def test_acme_challenge_linked_inside_the_webroot_is_refused(webroot: Path) -> None:
    (webroot / "shared").mkdir()
    (webroot / ".well-known").mkdir()
    (webroot / ".well-known" / "acme-challenge").symlink_to("../shared")
    before = tree(webroot)
    with pytest.raises(SolverError, match="acme-challenge is a symbolic link"):
        await WebrootSolver(webroot).present(task_for("tok_ABCDEFGHIJKLMNOPQRSTUV"))
    assert tree(webroot) == before


async def test_cleanup_removes_its_file_from_where_it_was_moved(
    webroot: Path, victim: Path
) -> None:
    """The user moves `.well-known` away and links the name to a victim holding a file of
    the same name: cleanup removes our file (through the folder it wrote in), not theirs."""
    token = "tok_ABCDEFGHIJKLMNOPQRSTUV"
    solver = WebrootSolver(webroot)
    handle = await solver.present(task_for(token))
    (webroot / ".well-known").rename(webroot / "moved")
    (webroot / ".well-known").symlink_to(victim)
    (victim / "acme-challenge" / token).write_text("the victim's own file")
    await solver.cleanup(handle)
    assert (victim / "acme-challenge" / token).read_text() == "the victim's own file"
    assert tree(webroot) == {"moved", ".well-known"}  # our file and acme-challenge/ are gone


async def test_webroot_linked_from_a_folder_the_user_owns_is_refused(
    served_dir: Path, victim: Path
) -> None:
    home = served_dir / "home"
    home.mkdir()
    (home / "public_html").symlink_to(victim)
    give_to_nobody(home, home / "public_html")
    solver = WebrootSolver(home / "public_html")
    with pytest.raises(ConfigError, match="public_html is a symbolic link in a folder") as caught:
        solver.preflight()
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="public_html is a symbolic link in a folder"):
        await solver.present(task_for("tok_ABCDEFGHIJKLMNOPQRSTUV"))
    assert tree(victim) == {"acme-challenge", "site.conf"}


async def test_webroot_linked_by_root_is_followed(served_dir: Path) -> None:
    """A link only root could have placed (its folder is root's, 0755) is the admin's own."""
    real = served_dir / "srv-site"
    real.mkdir()
    links = served_dir / "var-www"
    links.mkdir(mode=0o755)
    (links / "site").symlink_to(real)
    solver = WebrootSolver(links / "site")
    solver.preflight()
    handle = await solver.present(task_for("tok_ABCDEFGHIJKLMNOPQRSTUV"))
    assert (real / ".well-known" / "acme-challenge" / "tok_ABCDEFGHIJKLMNOPQRSTUV").is_file()
    await solver.cleanup(handle)
    assert os.listdir(real) == []

    links.chmod(0o775)  # group-writable: someone else could have placed it
    with pytest.raises(ConfigError, match="site is a symbolic link in a folder"):
        solver.preflight()


def test_attacker_runs_as_nobody(webroot: Path) -> None:
    """The fixture really drops to `nobody` (else the race tests prove nothing)."""
    output = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import os; print(os.geteuid())"],
        user="nobody",
        cwd=webroot,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert int(output) == pwd.getpwnam("nobody").pw_uid
