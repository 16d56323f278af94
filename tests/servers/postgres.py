"""Launcher for Debian's PostgreSQL in a temporary folder (no system service).

``initdb`` and ``postgres`` refuse to run as root: as root they run as the ``postgres``
user (the Debian package makes it), in a folder it owns. The server listens on a unix
socket only (``listen_addresses=''``, socket in its own folder, a free port number
naming it), so test runs never collide. Logins: ``postgres`` (superuser, trusted on the
socket, for the tests' own setup) and ``certherd`` (no superuser, a password checked with
SCRAM), which owns every database the tests make: what certherd connects as.
Stopped with a fast shutdown (SIGINT), then SIGKILL; the folder is removed.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.servers.net import ServerStartError, free_port, log_tail

__all__ = ["INSTALL_HINT", "PASSWORD", "PostgresServer", "find_binary"]

INSTALL_HINT = "PostgreSQL is not installed: run `apt-get install -y postgresql`"
PASSWORD = "certherd-test-password"  # a throw-away test server's
_START_TIMEOUT = 30.0


def find_binary(name: str) -> str | None:
    """``initdb``/``postgres`` on PATH, else Debian's /usr/lib/postgresql/<newest>/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    candidates.sort(
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0
    )
    return candidates[-1] if candidates else None


class PostgresServer:
    """One PostgreSQL server for a test session; :meth:`database` makes a fresh database."""

    def __init__(
        self,
        *,
        fsync: bool = False,
        tls: tuple[Path, Path] | None = None,
        preload: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port()
        self.preload = preload  # shared_preload_libraries (pg_stat_statements: count queries)
        self.fsync = fsync  # off for the tests (speed); bench/ turns it on (durable commits)
        self.tls = tls  # (certificate, key): also listen on 127.0.0.1, TLS only there
        self.folder: Path | None = None
        self.socket_dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._made = 0

    def _user(self) -> dict[str, Any]:
        """Run as ``postgres`` when we are root (initdb refuses root)."""
        if os.getuid() != 0:
            return {}
        try:
            entry = pwd.getpwnam("postgres")
        except KeyError:
            raise ServerStartError(f"there is no postgres user: {INSTALL_HINT}") from None
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def start(self) -> None:
        initdb, postgres = find_binary("initdb"), find_binary("postgres")
        if initdb is None or postgres is None:
            raise ServerStartError(INSTALL_HINT)
        as_user = self._user()
        self.folder = Path(tempfile.mkdtemp(prefix="certherd-postgres-"))
        self.folder.chmod(0o711)
        data, self.socket_dir = self.folder / "data", self.folder / "socket"
        self.socket_dir.mkdir()
        log = self.folder / "postgres.log"
        if as_user:
            os.chown(self.socket_dir, as_user["user"], as_user["group"])
            log.touch()
            os.chown(log, as_user["user"], as_user["group"])
            data.mkdir()
            os.chown(data, as_user["user"], as_user["group"])
        subprocess.run(
            [initdb, "-D", str(data), "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8",
             "--auth-local=trust", "--auth-host=reject", "--no-sync"],
            check=True, capture_output=True, **as_user,
        )  # fmt: skip
        # The superuser is trusted on the socket (the tests' setup); every other role
        # logs in with its password.
        hba = "local all postgres trust\nlocal all all scram-sha-256\n"
        listen = ["-c", "listen_addresses="]
        if self.tls is not None:  # TCP on loopback, TLS only (no plain "host" line)
            hba += "hostssl all all 127.0.0.1/32 scram-sha-256\n"
            listen = ["-c", "listen_addresses=127.0.0.1", "-c", "ssl=on"]
            for name, source in zip(("server.pem", "server-key.pem"), self.tls, strict=True):
                target = data / name
                target.write_bytes(source.read_bytes())
                target.chmod(0o600)
                if as_user:
                    os.chown(target, as_user["user"], as_user["group"])
                listen += ["-c", f"ssl_{'key' if 'key' in name else 'cert'}_file={target}"]
        (data / "pg_hba.conf").write_text(hba)
        durable = "on" if self.fsync else "off"
        if self.preload:
            listen += ["-c", f"shared_preload_libraries={','.join(self.preload)}"]
        with log.open("ab") as output:
            self._process = subprocess.Popen(
                [postgres, "-D", str(data), "-p", str(self.port), "-k", str(self.socket_dir),
                 *listen, "-c", f"fsync={durable}", "-c", "max_connections=200",
                 "-c", "shared_buffers=16MB"],
                stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, **as_user,
            )  # fmt: skip
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            try:
                self.execute("SELECT 1")
                break
            except Exception as exc:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise ServerStartError(
                        f"PostgreSQL did not start: {exc}\n{log_tail(log)}"
                    ) from None
                time.sleep(0.05)
        self.execute(f"CREATE ROLE certherd LOGIN PASSWORD '{PASSWORD}'")
        self.execute("CREATE ROLE monitor NOLOGIN")

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}&port={self.port}"

    def url(self, database: str, *, password: str | None = PASSWORD, user: str = "certherd") -> str:
        """certherd's URL of ``database`` (the password in it, unless None)."""
        login = f"{user}:{password}" if password is not None else user
        return f"postgresql://{login}@/{database}?host={self.socket_dir}&port={self.port}"

    def execute(
        self, sql: str, database: str = "postgres", *, role: str | None = None
    ) -> list[tuple[Any, ...]]:
        """Run ``sql`` as the superuser (or as ``role``); the rows it returns."""
        import psycopg

        with psycopg.connect(self.admin_url(database), autocommit=True) as connection:
            if role is not None:
                connection.execute(f"SET ROLE {role}".encode())
            cursor = connection.execute(sql.encode())
            return cursor.fetchall() if cursor.description else []

    def database(self) -> str:
        """A new empty database owned by ``certherd``: its name."""
        self._made += 1
        name = f"test_{os.getpid()}_{self._made}"
        self.execute(f"CREATE DATABASE {name} OWNER certherd")
        return name

    def pause(self) -> None:
        """Stop answering (SIGSTOP to every server process): a database that hangs."""
        assert self._process is not None
        os.killpg(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        os.killpg(self._process.pid, signal.SIGCONT)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGCONT)
                process.send_signal(signal.SIGINT)  # fast shutdown: ends open sessions
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
