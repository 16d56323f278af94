"""http-01 through a web server the user already runs: files in its webroot (RFC 8555 §8.3).

RFC 8555 §8.3: the CA fetches ``http://<domain>/.well-known/acme-challenge/<token>`` and
expects the key authorization as the body. This solver writes that file into the
directory the user's web server serves, and removes it again.

Safety, because the token comes from the CA (untrusted) and the solver may run as root:

- the token is refused unless it is plain base64url (:func:`check_token`), so it can
  never hold ``/`` or ``..``;
- directories are walked and created through directory file descriptors, so a
  directory swapped for a symlink mid-way is noticed; a symlink on the way is followed
  only when it resolves inside the webroot;
- the file is written atomically (temporary name, fsync, rename) with mode 0644 and the
  directories created get 0755 whatever the umask, so a web server running as another
  user can read them;
- :meth:`WebrootSolver.cleanup` removes exactly the file written (same inode) and the
  directories this process created, each only once empty and no longer used by another
  presented token, whichever solver object presented it.

Filesystem work runs in a worker thread; a ``present`` cancelled while that thread runs
undoes what the thread made once it finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from certherd.acme.messages import Identifier
from certherd.challenges.base import ChallengeTask, check_token
from certherd.errors import ConfigError, SolverError

__all__ = ["WebrootSolver"]

CHALLENGE_DIRS = (".well-known", "acme-challenge")
"""RFC 8555 §8.3: the path below the webroot, one directory per element."""
DEFAULT_KEY = "*"
"""The mapping key for names without an entry of their own."""
DIR_MODE = 0o755
FILE_MODE = 0o644

_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class _Node:
    """A file system object identified by its device and inode."""

    path: Path
    device: int
    inode: int

    @classmethod
    def of(cls, path: Path, info: os.stat_result) -> _Node:
        return cls(path, info.st_dev, info.st_ino)

    def is_still(self, info: os.stat_result) -> bool:
        return (info.st_dev, info.st_ino) == (self.device, self.inode)


@dataclass(frozen=True)
class _Handle:
    """What one ``present`` made: the file and the created directories it relies on."""

    file: _Node
    directories: tuple[_Node, ...]  # deepest first


class _CreatedDirectories:
    """Directories this process created, with how many presented files rely on each.

    Shared by every WebrootSolver in the process, so two solvers writing into one webroot
    never remove a directory the other still uses, nor leave one behind. Every method
    is called with :data:`_LOCK` held.
    """

    def __init__(self) -> None:
        self.users: dict[_Node, int] = {}

    def adopt(self, node: _Node) -> None:
        self.users[node] = self.users.get(node, 0) + 1

    def known(self, path: Path, info: os.stat_result) -> _Node | None:
        node = _Node.of(path, info)
        return node if node in self.users else None

    def release(self, node: _Node) -> bool:
        """Drop one user of ``node``; True when it was the last and it may be removed."""
        count = self.users.get(node, 0) - 1
        if count > 0:
            self.users[node] = count
            return False
        self.users.pop(node, None)
        return True


_LOCK = threading.Lock()
_CREATED = _CreatedDirectories()


def _normalize(name: str) -> str:
    """Webroot mapping keys and identifiers compare as Identifier values do."""
    if name.strip() == DEFAULT_KEY:
        return DEFAULT_KEY
    return Identifier.parse(name).value


class WebrootSolver:
    """http-01 by writing the key authorization into a served directory.

    ``webroots`` is one directory for every name, or a mapping from name to directory
    where the key ``"*"`` is the default for names not listed. Wildcard names cannot be
    proven over http-01 (RFC 8555 §8.3 is per host name), so ``supports`` refuses them.
    A missing webroot is a :class:`ConfigError` raised by ``present``. ``present`` and
    ``cleanup`` may run concurrently for any tokens; cleanup never raises for a handle
    whose file is already gone.
    """

    challenge_type = "http-01"

    def __init__(self, webroots: Mapping[str, Path | str] | Path | str) -> None:
        if isinstance(webroots, Mapping):
            table: dict[str, Path] = {}
            for name, root in webroots.items():
                if name.strip() != DEFAULT_KEY and "*" in name:
                    raise ConfigError(
                        f"webroot for {name!r}: only exact names and '*' (the default) are "
                        "allowed; wildcard names need dns-01"
                    )
                table[_normalize(name)] = Path(root)
            self.webroots: Mapping[str, Path] = table
        else:
            self.webroots = {DEFAULT_KEY: Path(webroots)}

    def preflight(self) -> None:
        """ConfigError for a webroot that is not an existing directory (checked before an
        order is placed; present() checks again, the folder may go away meanwhile)."""
        for root in self.webroots.values():
            if not root.is_dir():
                raise ConfigError(
                    f"webroot {root} does not exist or is not a directory: give the folder "
                    "your web server serves for the name"
                )

    def webroot_for(self, identifier: Identifier) -> Path | None:
        """The directory serving ``identifier``, or None if this solver has none for it."""
        if identifier.is_wildcard or identifier.type not in ("dns", "ip"):
            return None
        root = self.webroots.get(identifier.value) or self.webroots.get(DEFAULT_KEY)
        return root

    def supports(self, identifier: Identifier) -> bool:
        return self.webroot_for(identifier) is not None

    async def present(self, task: ChallengeTask) -> object:
        token = check_token(task.challenge.token)
        root = self.webroot_for(task.identifier)
        if root is None:
            raise ConfigError(f"no webroot configured for {task.identifier}")
        body = task.key_authorization.encode("ascii")
        work = asyncio.ensure_future(asyncio.to_thread(_present, root, token, body))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            work.add_done_callback(_undo_when_done)
            raise
        except OSError as exc:
            raise SolverError(
                f"cannot write the http-01 response for {task.identifier} under {root}: "
                f"{exc.strerror or exc}"
            ) from None

    async def cleanup(self, handle: object) -> None:
        if not isinstance(handle, _Handle):
            return
        # Shielded: once started, removal finishes even if the caller is cancelled.
        try:
            await asyncio.shield(asyncio.to_thread(_cleanup, handle))
        except OSError as exc:
            raise SolverError(
                f"cannot remove the http-01 response {handle.file.path}: {exc.strerror or exc}"
            ) from None

    def __repr__(self) -> str:
        roots = ", ".join(f"{name}={path}" for name, path in self.webroots.items())
        return f"WebrootSolver({roots})"


def _undo_when_done(work: asyncio.Future[_Handle]) -> None:
    """Done-callback for a cancelled ``present``: remove what its thread made."""
    if work.cancelled() or work.exception() is not None:
        return
    with contextlib.suppress(OSError):
        _cleanup(work.result())


def _open_directory(name: str, dir_fd: int, follow: bool) -> int:
    flags = os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC | (0 if follow else _O_NOFOLLOW)
    return os.open(name, flags, dir_fd=dir_fd)


def _present(root: Path, token: str, body: bytes) -> _Handle:
    """Write ``body`` to ``<root>/.well-known/acme-challenge/<token>`` (in a worker thread)."""
    try:
        real_root = root.resolve(strict=True)
        root_fd = os.open(real_root, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(
            f"webroot {root} does not exist or is not a directory: create it or fix the path"
        ) from None
    except OSError as exc:
        raise ConfigError(f"webroot {root} cannot be opened: {exc.strerror or exc}") from None
    with _LOCK:
        adopted: list[_Node] = []
        try:
            return _present_locked(real_root, root_fd, token, body, adopted)
        except BaseException:
            _release_all(adopted[::-1])
            raise
        finally:
            os.close(root_fd)


def _present_locked(
    real_root: Path, root_fd: int, token: str, body: bytes, adopted: list[_Node]
) -> _Handle:
    directory_fd = os.dup(root_fd)
    here = real_root
    try:
        for name in CHALLENGE_DIRS:
            child_fd, here = _enter(real_root, here, directory_fd, name, adopted)
            os.close(directory_fd)
            directory_fd = child_fd
        file = _write_atomically(directory_fd, here, token, body)
    finally:
        os.close(directory_fd)
    return _Handle(file, tuple(reversed(adopted)))


def _enter(
    real_root: Path, here: Path, parent_fd: int, name: str, adopted: list[_Node]
) -> tuple[int, Path]:
    """Open (creating it if missing) directory ``name`` below ``parent_fd``; stay in the root."""
    path = here / name
    try:
        info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        os.mkdir(name, DIR_MODE, dir_fd=parent_fd)
        child_fd = _open_directory(name, parent_fd, follow=False)
        os.fchmod(child_fd, DIR_MODE)  # mkdir's mode is narrowed by the umask
        node = _Node.of(path, os.fstat(child_fd))
        _CREATED.adopt(node)
        adopted.append(node)
        return child_fd, path
    if stat.S_ISLNK(info.st_mode):
        target = path.resolve()
        if not target.is_relative_to(real_root):
            raise SolverError(
                f"{path} is a symlink to {target}, outside the webroot {real_root}: "
                "refusing to write there"
            )
        child_fd = _open_directory(name, parent_fd, follow=True)
        # The link may have been changed since it was resolved: it must still be `target`.
        if not _Node.of(target, os.stat(target)).is_still(os.fstat(child_fd)):
            os.close(child_fd)
            raise SolverError(f"{path} changed while it was being opened; try again")
        path = target
    else:
        try:
            child_fd = _open_directory(name, parent_fd, follow=False)
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                raise SolverError(f"{path} exists and is not a directory") from None
            raise
    known = _CREATED.known(path, os.fstat(child_fd))
    if known is not None:  # created by an earlier present that is still live
        _CREATED.adopt(known)
        adopted.append(known)
    return child_fd, path


def _write_atomically(directory_fd: int, here: Path, token: str, body: bytes) -> _Node:
    """Write ``token`` in ``directory_fd`` via a temporary name, fsync and rename."""
    temporary = f".{token}.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC
    file_fd = os.open(temporary, flags, FILE_MODE, dir_fd=directory_fd)
    try:
        try:
            os.fchmod(file_fd, FILE_MODE)  # the mode given to open is narrowed by the umask
            view = memoryview(body)
            while view:
                view = view[os.write(file_fd, view) :]
            os.fsync(file_fd)
            info = os.fstat(file_fd)
        finally:
            os.close(file_fd)
        os.replace(temporary, token, src_dir_fd=directory_fd, dst_dir_fd=directory_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=directory_fd)
        raise
    with contextlib.suppress(OSError):  # make the rename durable; not all systems allow it
        os.fsync(directory_fd)
    return _Node.of(here / token, info)


def _cleanup(handle: _Handle) -> None:
    """Remove the file of ``handle`` and the directories no other live file relies on."""
    with _LOCK:
        _unlink_if_same(handle.file)
        _release_all(list(handle.directories))


def _unlink_if_same(node: _Node) -> None:
    try:
        if node.is_still(os.lstat(node.path)):
            os.unlink(node.path)
    except FileNotFoundError:
        pass


def _release_all(directories: list[_Node]) -> None:
    """Release ``directories`` (deepest first); remove each one whose last user this was."""
    for node in directories:
        if not _CREATED.release(node):
            continue
        try:
            if node.is_still(os.lstat(node.path)):
                os.rmdir(node.path)  # fails, and so keeps it, if someone added files
        except OSError:
            pass
