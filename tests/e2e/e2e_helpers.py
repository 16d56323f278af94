"""Checks on what ``certherd`` leaves on disk, and fault injection for its processes."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

FILES = ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem")
_VERSIONED = re.compile(r"^(cert|chain|fullchain|privkey)(\d+)\.pem$")

FAULT_MODULE = '''\
"""Fault injection for certherd's e2e tests, imported at start as ``sitecustomize``.

CERTHERD_E2E_FAULT=ACTION:WHERE:N acts just before the Nth change to the file system
under CERTHERD_E2E_ROOT (a rename, replace, symlink, mkdir, unlink or rmdir by path)
whose first folder is WHERE (archive, live, state) or, for ``any``, anything but locks.
With CERTHERD_E2E_AFTER=FOLDER, counting starts once FOLDER was first changed. ACTION
``kill``: SIGKILL this process. ``pause``: create ``reached`` in CERTHERD_E2E_SYNC and
wait (at most 60 s) for ``release`` there, then go on. ``fail``: that one change fails
with OSError(EIO), as a failing disk would. Changes made another way (such as
renameat2 through ctypes) are not seen; the steps around them are.
"""
import os
import signal
import time

_spec = os.environ.get("CERTHERD_E2E_FAULT")
_root = os.environ.get("CERTHERD_E2E_ROOT")
_sync = os.environ.get("CERTHERD_E2E_SYNC", "")
_after = os.environ.get("CERTHERD_E2E_AFTER")


def _install():
    action, where, nth = _spec.split(":")
    seen = {"count": 0, "started": _after is None}

    def folder_of(path):
        if not isinstance(path, (str, bytes, os.PathLike)):
            return None
        path = os.fsdecode(os.fspath(path))
        if not os.path.isabs(path):
            return None  # relative to a dir_fd (shutil.rmtree): not ours to count
        relative = os.path.relpath(path, _root)
        if relative.startswith(".."):
            return None
        return relative.split(os.sep)[0]

    def pause():
        open(os.path.join(_sync, "reached"), "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(_sync, "release")):
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)

    def before_change(path):
        folder = folder_of(path)
        if folder is None:
            return
        if not seen["started"]:
            seen["started"] = folder == _after
            if not seen["started"]:
                return
        wanted = folder != "locks" if where == "any" else folder == where
        if not wanted:
            return
        seen["count"] += 1
        if seen["count"] != int(nth):
            return
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if action == "fail":
            raise OSError(5, "Input/output error (injected)", os.fspath(path))
        pause()

    def wrap(name, position):
        real = getattr(os, name)

        def changed(*args, **kwargs):
            if "dir_fd" not in kwargs and "src_dir_fd" not in kwargs:
                if len(args) > position:
                    before_change(args[position])
                else:
                    before_change(kwargs.get("dst", kwargs.get("path")))
            return real(*args, **kwargs)

        setattr(os, name, changed)

    for name, position in (("replace", 1), ("rename", 1), ("symlink", 1), ("mkdir", 0),
                           ("unlink", 0), ("remove", 0), ("rmdir", 0)):
        wrap(name, position)


if _spec and _root:
    _install()
'''


def fault_environment(
    folder: Path, config_dir: Path, spec: str, *, after: str | None = None
) -> dict[str, str]:
    """The environment that makes a certherd process act out ``spec`` (see FAULT_MODULE).

    ``folder`` holds the injected module and is the sync folder of a ``pause``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(FAULT_MODULE)
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)
    return {
        "PYTHONPATH": path,
        "CERTHERD_E2E_FAULT": spec,
        "CERTHERD_E2E_ROOT": str(config_dir.resolve()),
        "CERTHERD_E2E_SYNC": str(folder),
        **({"CERTHERD_E2E_AFTER": after} if after else {}),
    }


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def load_chain(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def public_der(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def dns_names(cert: x509.Certificate) -> set[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName))


def archive_versions(archive: Path) -> dict[int, set[str]]:
    """Version -> the files of it in ``archive`` (temp files of a killed write excluded)."""
    versions: dict[int, set[str]] = {}
    if archive.is_dir():
        for entry in archive.iterdir():
            match = _VERSIONED.match(entry.name)
            if match:
                versions.setdefault(int(match.group(2)), set()).add(f"{match.group(1)}.pem")
    return versions


def live_problems(config_dir: Path, name: str) -> list[str]:
    """Everything wrong with ``live/NAME`` as a web server would read it (empty: fine).

    Each of the four files must be a relative symlink into ``archive/NAME/``, all of one
    version, parse, have the certificate match the key and fullchain be cert + chain.
    """
    live = config_dir / "live" / name
    archive = (config_dir / "archive" / name).resolve()
    problems: list[str] = []
    targets: dict[str, int] = {}
    for file in FILES:
        path = live / file
        if not path.is_symlink():
            problems.append(f"{file} is not a symlink")
            continue
        link = os.readlink(path)
        resolved = path.resolve()
        match = _VERSIONED.match(resolved.name)
        if os.path.isabs(link) or resolved.parent != archive or not resolved.is_file():
            problems.append(f"{file} -> {link} does not point to a file in {archive}")
        elif match is None or f"{match.group(1)}.pem" != file:
            problems.append(f"{file} -> {link} is not a {file} version")
        else:
            targets[file] = int(match.group(2))
    if problems:
        return problems
    if len(set(targets.values())) != 1:
        problems.append(f"live files of different versions: {targets}")
    try:
        cert = load_cert(live / "cert.pem")
        chain = load_chain(live / "chain.pem")
        key = serialization.load_pem_private_key((live / "privkey.pem").read_bytes(), None)
    except ValueError as exc:
        return [*problems, f"a live file does not parse: {exc}"]
    if public_der(cert.public_key()) != public_der(key.public_key()):
        problems.append("cert.pem does not match privkey.pem")
    full = (live / "fullchain.pem").read_bytes()
    if full != (live / "cert.pem").read_bytes() + (live / "chain.pem").read_bytes():
        problems.append("fullchain.pem is not cert.pem + chain.pem")
    if not chain:
        problems.append("chain.pem is empty")
    else:
        try:
            cert.verify_directly_issued_by(chain[0])
        except (ValueError, TypeError) as exc:
            problems.append(f"cert.pem is not issued by chain.pem's first certificate: {exc}")
    mode = stat.S_IMODE((live / "privkey.pem").stat().st_mode)
    if mode != 0o600:
        problems.append(f"privkey.pem has mode {mode:o}, not 600")
    return problems


def live_version(config_dir: Path, name: str) -> int:
    """The version ``live/NAME`` serves; fails the test if the live files are not sound."""
    problems = live_problems(config_dir, name)
    assert not problems, f"live/{name}: " + "; ".join(problems)
    match = _VERSIONED.match((config_dir / "live" / name / "cert.pem").resolve().name)
    assert match is not None
    return int(match.group(2))


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under ``root``: symlinks by target, files by hash and mode, folders."""
    entries: dict[str, tuple[object, ...]] = {}
    if not root.exists():
        return entries
    for directory, folders, files in os.walk(root):
        for name in folders + files:
            path = Path(directory) / name
            key = path.relative_to(root).as_posix()
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                entries[key] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                entries[key] = ("dir", stat.S_IMODE(info.st_mode))
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                entries[key] = ("file", digest, stat.S_IMODE(info.st_mode))
    return entries


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def read_env_dump(path: Path) -> dict[str, str]:
    """A file written by ``env -0`` as a dict."""
    pairs = [item.partition("=") for item in path.read_text().split("\0") if item]
    return {key: value for key, _, value in pairs}


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` (the system under test is another process: no clock to fake)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def holds_flock(pid: int, path: Path) -> bool:
    """Whether process ``pid`` holds a ``flock`` on ``path`` (Linux ``/proc/locks``)."""
    try:
        inode = path.stat().st_ino
        table = Path("/proc/locks").read_text()
    except OSError:
        return False
    for line in table.splitlines():
        fields = line.split()
        if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":
            continue
        if fields[4] == str(pid) and fields[5].rsplit(":", 1)[-1] == str(inode):
            return True
    return False


def forget_authorizations(config_dir: Path, directory_url: str, ca_bundle: Path) -> int:
    """Deactivate the valid authorizations of every account ``config_dir`` keeps for the
    CA at ``directory_url`` (no newAccount is sent), so the next orders for those names
    answer their challenges; how many there were. Pebble reuses a valid authorization
    in about 1 order in 100 even with ``authz_reuse_percent=0`` (see
    ``tests/integration/acme_helpers.py``): a renewal meant to fail would then pass."""
    import asyncio
    import json

    from tests.integration.acme_helpers import forget_authorizations as forget

    from certherd.acme.client import AcmeClient
    from certherd.crypto.keys import load_private_key
    from certherd.storage.layout import ca_id

    async def each() -> int:
        forgotten = 0
        for account in sorted((config_dir / "accounts" / ca_id(directory_url)).glob("*")):
            key = load_private_key((account / "key.pem").read_bytes())
            url = json.loads((account / "account.json").read_text())["url"]
            client = AcmeClient(directory_url, key, account_url=url, ca_bundle=str(ca_bundle))
            async with client:
                forgotten += await forget(client)
        return forgotten

    return asyncio.run(each())


@contextlib.contextmanager
def json_receiver(path: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP receiver of apprise's ``json://`` posts: its URL (``path`` after
    the host) and the posts as received."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    posts: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"json://127.0.0.1:{server.server_address[1]}/{path}", posts
    finally:
        server.shutdown()
        server.server_close()
