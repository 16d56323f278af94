"""http-01 through a web server the user already runs: files in its webroot (RFC 8555 §8.3).

RFC 8555 §8.3: the CA fetches ``http://<domain>/.well-known/acme-challenge/<token>`` and
expects the key authorization as the body. This solver writes that file into the
directory the user's web server serves, and removes it again.

Safety, because certherd runs as root, the webroot usually belongs to the web-app user
(who may be hostile, and may swap a folder for a symlink at any moment), and the token
comes from the CA (untrusted):

- **the token** is refused unless it is plain base64url (:func:`check_token`), so it can
  never hold ``/`` or ``..``;
- **the webroot** is opened once per ``present`` (and by ``preflight``), walking the
  configured path from ``/`` one component at a time with ``O_NOFOLLOW``; everything after
  goes through that directory descriptor, never through the path again. A symlink on
  the way to (or as) the webroot is followed only when the folder holding it is owned by
  root and not writable by group or others, so that only root could have placed it
  (``/var/www -> /srv/www`` set up by the admin). A symlink in a folder another user can
  write (``/home/alice/public_html -> ...`` with ``/home/alice`` hers) is refused with a
  :class:`ConfigError` naming it: give the real folder as the webroot;
- **below the webroot nothing is followed through a symlink**: ``.well-known`` and
  ``acme-challenge`` are opened one at a time from the parent's descriptor with
  ``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`` where the kernel has it, else
  ``openat`` with ``O_NOFOLLOW | O_DIRECTORY`` (:mod:`certherd._nofollow`), and created
  with ``mkdirat`` when missing. If either is a symlink (even one pointing inside the
  webroot) ``present`` fails with a :class:`SolverError` naming it: make it a folder, or
  give the folder the web server really reads as the webroot. The check is made by the
  kernel in the same step as the open, so a folder swapped for a link in between is
  refused too, not followed;
- the file is created in the ``acme-challenge`` descriptor with ``O_CREAT | O_EXCL |
  O_NOFOLLOW`` under a temporary name, fsynced, and renamed into place within that same
  directory (``renameat``), with mode 0644; the directories created get 0755, whatever
  the umask, so a web server running as another user can read them;
- :meth:`WebrootSolver.cleanup` works through the same directory descriptors, held by
  the handle from ``present`` until ``cleanup``: it removes exactly the file written
  (same inode, ``unlinkat``) and the directories this process created (``rmdir`` through
  their parent's descriptor, same inode, only once empty and no longer used by another
  presented token, whichever solver object presented it). A folder the user moved away
  or replaced meanwhile is still cleaned where it went; nothing at the old names is
  touched.

Filesystem work runs in a worker thread; a ``present`` cancelled while that thread runs
undoes what the thread made once it finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import stat
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from certherd._nofollow import UntrustedSymlinkError, open_below, open_directory
from certherd.acme.messages import Identifier
from certherd.challenges.base import ChallengeTask, check_token
from certherd.errors import ConfigError, SolverError

__all__ = ["WebrootSolver"]

log = logging.getLogger(__name__)

CHALLENGE_DIRS = (".well-known", "acme-challenge")
"""RFC 8555 §8.3: the path below the webroot, one directory per element."""
DEFAULT_KEY = "*"
"""The mapping key for names without an entry of their own."""
DIR_MODE = 0o755
FILE_MODE = 0o644


@dataclass(frozen=True)
class _Node:
    """A file system object identified by its device and inode."""

    device: int
    inode: int

    @classmethod
    def of(cls, info: os.stat_result) -> _Node:
        return cls(info.st_dev, info.st_ino)


@dataclass(frozen=True)
class _Created:
    """A directory this process created: its node, and its name in the parent ``parent_fd``."""

    node: _Node
    parent_fd: int
    name: str


class _Handle:
    """What one ``present`` made, and the directory descriptors to remove it through.

    The descriptors stay open until :func:`_cleanup` (or, should cleanup never run, until
    the handle is garbage-collected); they are closed exactly once.
    """

    def __init__(
        self, path: Path, file: _Node, folder_fd: int, directories: tuple[_Created, ...]
    ) -> None:
        self.path = path  # for messages only: the file is reached through folder_fd
        self.file = file
        self.folder_fd = folder_fd
        self.directories = directories  # deepest first
        descriptors = {folder_fd, *(created.parent_fd for created in directories)}
        self._finalizer = weakref.finalize(self, _close_all, descriptors)

    @property
    def live(self) -> bool:
        """False once cleaned up (its descriptors are closed)."""
        return self._finalizer.alive

    def close(self) -> None:
        self._finalizer()


class _Remove(Protocol):
    """``os.unlink`` or ``os.rmdir``."""

    def __call__(self, path: str, *, dir_fd: int | None = ...) -> None: ...


def _close_all(descriptors: set[int]) -> None:
    for descriptor in descriptors:
        with contextlib.suppress(OSError):
            os.close(descriptor)


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

    def known(self, info: os.stat_result) -> _Node | None:
        node = _Node.of(info)
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
        """ConfigError for a webroot that is not an existing directory, or is reached through
        a symlink another user could change (checked before an order is placed; present()
        checks again, the folder may go away meanwhile)."""
        for root in self.webroots.values():
            os.close(_open_webroot(root))

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
            handle = await asyncio.shield(work)
            log.info("webroot: %s written for %s", handle.path, task.identifier)
            return handle
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
            log.info("webroot: %s removed", handle.path)
        except OSError as exc:
            raise SolverError(
                f"cannot remove the http-01 response {handle.path}: {exc.strerror or exc}"
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


def _open_webroot(root: Path) -> int:
    """The webroot's directory descriptor (see the module docstring for which symlinks
    on the way are followed); ConfigError naming what is wrong."""
    try:
        return open_directory(root)
    except UntrustedSymlinkError as exc:
        raise ConfigError(
            f"webroot {root}: {exc.path} is a symbolic link in a folder that another user "
            f"can change (owner uid {exc.holder_uid}, mode {exc.holder_mode:04o}), so it "
            "could point anywhere when certherd writes as root; give the real folder as "
            "the webroot"
        ) from None
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(
            f"webroot {root} does not exist or is not a directory: create it or fix the path"
        ) from None
    except OSError as exc:
        raise ConfigError(f"webroot {root} cannot be opened: {exc.strerror or exc}") from None


def _present(root: Path, token: str, body: bytes) -> _Handle:
    """Write ``body`` to ``<root>/.well-known/acme-challenge/<token>`` (in a worker thread)."""
    root_fd = _open_webroot(root)
    descriptors = [root_fd]  # the webroot, then each folder entered, deepest last
    adopted: list[_Created] = []
    with _LOCK:
        try:
            path = root
            for name in CHALLENGE_DIRS:
                path = path / name
                descriptors.append(_enter(descriptors[-1], name, path, adopted))
            file = _write_atomically(descriptors[-1], path, token, body)
        except BaseException:
            _release_all(adopted[::-1])
            _close_all(set(descriptors))
            raise
    folder_fd = descriptors[-1]
    handle = _Handle(path / token, file, folder_fd, tuple(adopted[::-1]))
    kept = {folder_fd, *(created.parent_fd for created in adopted)}
    _close_all(set(descriptors) - kept)
    return handle


def _enter(parent_fd: int, name: str, path: Path, adopted: list[_Created]) -> int:
    """Open directory ``name`` of ``parent_fd`` (creating it if missing), never through a
    symlink; record it in ``adopted`` if this process created it."""
    made = False
    try:
        try:
            child_fd = open_below(parent_fd, name)
        except FileNotFoundError:
            with contextlib.suppress(FileExistsError):  # made meanwhile by someone else
                os.mkdir(name, DIR_MODE, dir_fd=parent_fd)
                made = True
            child_fd = open_below(parent_fd, name)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_symlink(parent_fd, name):
            raise SolverError(
                f"{path} is a symbolic link: certherd never follows one below a webroot "
                "(whoever can write there could point it anywhere); make it a folder, or "
                "give the folder the web server really reads as the webroot"
            ) from None
        if exc.errno == errno.ENOTDIR:
            raise SolverError(f"{path} exists and is not a directory") from None
        raise
    info = os.fstat(child_fd)
    if made and info.st_uid == os.geteuid():  # ours, not a folder swapped in after mkdir
        os.fchmod(child_fd, DIR_MODE)  # mkdir's mode is narrowed by the umask
        node = _Node.of(info)
        _CREATED.adopt(node)
        adopted.append(_Created(node, parent_fd, name))
        return child_fd
    known = _CREATED.known(info)
    if known is not None:  # created by an earlier present that is still live
        _CREATED.adopt(known)
        adopted.append(_Created(known, parent_fd, name))
    return child_fd


def _is_symlink(parent_fd: int, name: str) -> bool:
    """Whether ``name`` in ``parent_fd`` is a symlink (to word an error: the open that
    failed already refused it; a swap since changes only the message)."""
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _write_atomically(directory_fd: int, here: Path, token: str, body: bytes) -> _Node:
    """Write ``token`` in ``directory_fd`` via a temporary name, fsync and rename."""
    temporary = f".{token}.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
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
    return _Node.of(info)


def _cleanup(handle: _Handle) -> None:
    """Remove the file of ``handle`` and the directories no other live file relies on."""
    with _LOCK:
        if not handle.live:
            return  # cleaned up already
        try:
            _remove_if_same(handle.folder_fd, handle.path.name, handle.file, os.unlink)
            _release_all(list(handle.directories))
        finally:
            handle.close()


def _remove_if_same(parent_fd: int, name: str, node: _Node, remove: _Remove) -> None:
    """``remove(name)`` in ``parent_fd`` if that entry is still ``node`` (a file the user
    put in its place is not ours to remove)."""
    try:
        if _Node.of(os.stat(name, dir_fd=parent_fd, follow_symlinks=False)) == node:
            remove(name, dir_fd=parent_fd)
    except FileNotFoundError:
        pass


def _release_all(directories: list[_Created]) -> None:
    """Release ``directories`` (deepest first); remove each one whose last user this was."""
    for created in directories:
        if not _CREATED.release(created.node):
            continue
        # rmdir fails, and so keeps the folder, if someone added files to it.
        with contextlib.suppress(OSError):
            _remove_if_same(created.parent_fd, created.name, created.node, os.rmdir)
