"""Opening directories as root without following a symlink another user could have placed.

Two tools for code that writes, as root, below folders other users own (a webroot):

- :func:`open_directory` opens a configured path once, walking it from ``/`` (or the
  working directory) one component at a time with ``O_NOFOLLOW``. A symlink on the way is
  followed only when the folder holding it is owned by root (or by the user certherd
  runs as) and is not writable by group or others: then only root could have placed or
  changed it (an admin's ``/var/www -> /srv/www``). A symlink in any other folder is
  refused with :class:`UntrustedSymlinkError`, since its owner can point it anywhere at
  any moment.
- :func:`open_below` opens one entry of an already open directory, never through a
  symlink: ``openat2(2)`` with ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
  RESOLVE_NO_MAGICLINKS`` where the kernel has it (Linux 5.6+, called through its
  syscall number on x86_64 and aarch64), else ``openat(2)`` with ``O_NOFOLLOW |
  O_DIRECTORY``. Either way a symlink fails with ``ELOOP`` and the kernel checks it in
  the same step as the open, so a swap between a check and the use cannot happen.

Both return a file descriptor the caller MUST close; work below it goes through
``dir_fd=`` arguments (``mkdir``, ``open``, ``rename``, ``unlink``, ``rmdir``), never
through a path again.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from typing import Any

__all__ = [
    "DIRECTORY_FLAGS",
    "UntrustedSymlinkError",
    "is_trusted_folder",
    "open_below",
    "open_directory",
    "openat2_available",
    "untrusted_reason",
]

DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_WALK_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC
"""To look at folders only (fstat, dir_fd): O_PATH needs no read permission on them."""
MAX_SYMLINKS = 40
"""As the kernel's own limit (``ELOOP`` after 40 links in one lookup)."""

_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437}
"""openat2's syscall number: 437 in the generic table since Linux 5.6."""
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08

_openat2: Any = None
"""The ctypes ``syscall`` function once known to work; False once known to be missing."""


class UntrustedSymlinkError(OSError):
    """A symlink in a folder that someone other than root may write (``errno`` ELOOP)."""

    def __init__(self, path: str, holder: os.stat_result) -> None:
        super().__init__(errno.ELOOP, "untrusted symbolic link", path)
        self.path = path
        self.holder_uid = holder.st_uid
        self.holder_mode = stat.S_IMODE(holder.st_mode)


def is_trusted_folder(info: os.stat_result) -> bool:
    """True when only root (or this process's user) can change the folder's entries."""
    return info.st_uid in (0, os.geteuid()) and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def openat2_available() -> bool:
    """Whether :func:`open_below` uses ``openat2(2)`` (known after its first call)."""
    return _openat2 not in (None, False)


def _load_openat2() -> Any:
    global _openat2
    if _openat2 is None:
        system = os.uname()
        number = _SYS_OPENAT2.get(system.machine)
        if number is None or system.sysname != "Linux":
            _openat2 = False
        else:
            import ctypes  # only here: ctypes is not needed on the CLI's import path

            class OpenHow(ctypes.Structure):  # struct open_how, include/uapi/linux/openat2.h
                _fields_ = (
                    ("flags", ctypes.c_uint64),
                    ("mode", ctypes.c_uint64),
                    ("resolve", ctypes.c_uint64),
                )

            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall.restype = ctypes.c_long
            _openat2 = (libc.syscall, number, OpenHow, ctypes)
    return _openat2


def _call_openat2(dir_fd: int, name: str, flags: int) -> int | None:
    """openat2(dir_fd, name, flags, RESOLVE_BENEATH|NO_SYMLINKS|NO_MAGICLINKS), or None
    when the kernel does not have it (ENOSYS: older than 5.6, or filtered by seccomp)."""
    global _openat2
    loaded = _load_openat2()
    if loaded is False:
        return None
    syscall, number, OpenHow, ctypes = loaded  # noqa: N806 (a class)
    how = OpenHow(flags, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS)
    encoded = os.fsencode(name)
    for _attempt in range(8):  # EAGAIN: a concurrent rename during the lookup; try again
        result = syscall(
            ctypes.c_long(number),
            ctypes.c_long(dir_fd),
            ctypes.c_char_p(encoded),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if result >= 0:
            return int(result)
        code = ctypes.get_errno()
        if code == errno.ENOSYS:
            _openat2 = False
            return None
        if code not in (errno.EAGAIN, errno.EINTR):
            raise OSError(code, os.strerror(code), name)
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN), name)


def open_below(dir_fd: int, name: str) -> int:
    """Open the directory ``name`` (one component, no ``/``) of ``dir_fd``, never through a
    symlink: a symlink fails with ``ELOOP`` (or ``ENOTDIR``: the kernel checks
    ``O_DIRECTORY`` first on some paths), something else than a directory with
    ``ENOTDIR``, a missing entry with ``ENOENT``."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"not a single directory entry: {name!r}")
    opened = _call_openat2(dir_fd, name, DIRECTORY_FLAGS | os.O_NOFOLLOW)
    if opened is not None:
        return opened
    return os.open(name, DIRECTORY_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)


def _components(path: str) -> list[str]:
    """The names of ``path`` in reverse order (a stack), without empty and ``.`` ones."""
    return [part for part in reversed(path.split("/")) if part not in ("", ".")]


def open_directory(path: str | os.PathLike[str]) -> int:
    """Open the directory ``path`` following only symlinks that root placed (see above).

    Raises :class:`UntrustedSymlinkError` for a symlink in a folder others may write,
    ``OSError`` (``ENOENT``, ``ENOTDIR``, ``ELOOP`` after :data:`MAX_SYMLINKS` links,
    ``EACCES``) otherwise, with the path walked so far as its filename.
    """
    text = os.fspath(path)
    if not text:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), text)
    pending = _components(text)
    where = "/" if text.startswith("/") else "."
    fd = os.open(where, DIRECTORY_FLAGS)
    links = 0
    try:
        while pending:
            name = pending.pop()
            here = posixpath.normpath(posixpath.join(where, name))
            try:
                child = os.open(name, DIRECTORY_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise type(exc)(exc.errno, exc.strerror, here) from None
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISLNK(info.st_mode):
                    message = os.strerror(errno.ENOTDIR)
                    raise NotADirectoryError(errno.ENOTDIR, message, here) from None
                holder = os.fstat(fd)
                if not is_trusted_folder(holder):
                    raise UntrustedSymlinkError(here, holder) from None
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), text) from None
                # The folder is root's alone: the link cannot change under us.
                target = os.readlink(name, dir_fd=fd)
                pending.extend(_components(target))
                if target.startswith("/"):
                    os.close(fd)
                    fd = os.open("/", DIRECTORY_FLAGS)
                    where = "/"
                continue
            os.close(fd)
            fd = child
            where = here
    except BaseException:
        os.close(fd)
        raise
    return fd


def _describe(where: str, info: os.stat_result) -> str:
    """``/srv/x (owner alice, mode 0775)``."""
    try:
        import pwd

        owner = pwd.getpwuid(info.st_uid).pw_name
    except (KeyError, ImportError):
        owner = f"uid {info.st_uid}"
    return f"{where} (owner {owner}, mode {stat.S_IMODE(info.st_mode):04o})"


def _may_replace_entries(holder: os.stat_result, entry: os.stat_result | None) -> bool:
    """Whether someone other than root (or us) can add, rename or remove ``entry`` in the
    folder ``holder`` (``entry`` None: a name not there yet, which anyone who may write
    the folder can create first). A sticky folder (``/tmp``) protects entries owned by
    root or us."""
    if is_trusted_folder(holder):
        return False
    if holder.st_mode & stat.S_ISVTX and entry is not None:
        return entry.st_uid not in (0, os.geteuid())
    return True


def untrusted_reason(path: str | os.PathLike[str]) -> str | None:
    """Why another user could change what ``path`` (a folder certherd keeps its state,
    keys and hooks in) holds, or None when only root (or this process's user) can.

    Walks ``path`` from ``/`` as :func:`open_directory` does (following only symlinks
    root placed) and asks of each step whether the folder holding it lets another user
    swap the entry; the folder itself, if it exists, must be owned by root or us and not
    writable by group or others; if it does not exist yet, whoever may write its nearest
    existing parent could make it first. The answer is a phrase for an error message.
    """
    text = os.fspath(path)
    if not os.path.isabs(text):  # getcwd fails once the working folder is removed
        text = os.path.join(os.getcwd(), text)
    pending = _components(text)
    flags = _WALK_FLAGS
    fd = os.open("/", flags)
    where, links = "/", 0
    try:
        while pending:
            name = pending.pop()
            here = posixpath.normpath(posixpath.join(where, name))
            holder = os.fstat(fd)
            try:
                child = os.open(name, flags | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if _may_replace_entries(holder, None):
                    folder = _describe(where, holder)
                    return f"{here} does not exist and {folder} lets other users make it first"
                return None  # made by certherd itself, inside a folder only root can change
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISLNK(info.st_mode):
                    raise
                if not is_trusted_folder(holder):
                    folder = _describe(where, holder)
                    return f"{here} is a symbolic link in {folder}, which other users can change"
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), text) from None
                target = os.readlink(name, dir_fd=fd)
                pending.extend(_components(target))
                if target.startswith("/"):
                    os.close(fd)
                    fd = os.open("/", flags)
                    where = "/"
                continue
            entry = os.fstat(child)
            os.close(fd)
            fd = child
            if name != ".." and _may_replace_entries(holder, entry):
                return f"{_describe(where, holder)} lets other users replace {here}"
            where = here
        final = os.fstat(fd)
        if final.st_uid not in (0, os.geteuid()):
            return f"{_describe(where, final)} belongs to another user"
        if final.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return f"{_describe(where, final)} is writable by group or others"
        return None
    finally:
        os.close(fd)
