"""Talking to a running HAProxy: its config test, its runtime API, its graceful reload.

- :meth:`HaproxyControl.test`: ``haproxy -c -f CONFIG`` (it also loads every file of
  every ``crt`` directory, so a bad PEM fails it); None, or HAProxy's own first
  ``[ALERT]`` line.
- :class:`RuntimeApi`: the stats socket (management.txt §9.3, "Unix Socket commands"),
  one command per connection. A certificate is swapped in memory by ``set ssl cert
  <file> <<`` + the PEM (chain and key) and ``commit ssl cert <file>`` ("the
  certificate ... will be applied to every SSL contexts using it"); a new one for a
  ``crt`` directory by ``new ssl cert``, ``set``, ``commit``, then ``add ssl crt-list
  <dir> <file>`` ("It can also be used for directories since directories are now loaded
  the same way as the crt-lists"). The payload holds the private key: it goes only over
  that socket and is never logged.
- :meth:`HaproxyControl.reload`: the fallback without a runtime socket, and what a new
  ``bind`` line needs: SIGUSR2 to the master of a master-worker HAProxy (``-W``/``-Ws``,
  Debian's unit; management.txt §4.4: the master re-executes itself, starts new workers
  and the old ones finish their connections), found through the pid file. A HAProxy not
  in master-worker mode is never restarted: that would drop connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from certherd._nofollow import untrusted_reason
from certherd.errors import ConfigError, InstallError, safe_text
from certherd.programs import program_environment, run_program

__all__ = ["HaproxyControl", "RuntimeApi", "haproxy_message"]

RUNTIME_TIMEOUT = 10.0
"""How long one runtime API command may take (seconds)."""
RELOAD_WAIT = 10.0
"""How long a master-worker reload may take until new workers run (seconds)."""


def haproxy_message(output: str) -> str:
    """The line of HAProxy's output that says what is wrong (its first [ALERT])."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if "[ALERT]" in line and "Fatal errors found" not in line and "Error(s) found" not in line:
            return safe_text(line, 400)
    return safe_text(next((x for x in lines if "[NOTICE]" not in x), "no output"), 400)


@dataclass(frozen=True)
class RuntimeApi:
    """HAProxy's runtime API on the UNIX socket at ``path`` (``stats socket ... level
    admin``)."""

    path: Path

    def problem(self) -> str | None:
        """Why ``path`` cannot be HAProxy's socket (None when it is a socket)."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return f"HAProxy's runtime socket {self.path} does not exist"
        except OSError as exc:
            return f"cannot reach HAProxy's runtime socket {self.path}: {exc.strerror}"
        if not stat.S_ISSOCK(info.st_mode):
            return f"HAProxy's runtime socket {self.path} is not a socket"
        # The private key goes down this socket: only to one root (HAProxy's master, which
        # makes its sockets before dropping privileges) or this user made, in a folder no
        # other user can swap entries of.
        if info.st_uid not in (0, os.geteuid()):
            return (
                f"HAProxy's runtime socket {self.path} is owned by uid {info.st_uid}, not "
                "root: certherd sends private keys only to a socket root made"
            )
        reason = untrusted_reason(self.path.parent)
        if reason is not None:
            return f"certherd sends no private key to {self.path}: {reason}"
        return None

    async def command(self, line: str, payload: str | None = None) -> str:
        """Send one command (with an optional ``<<`` payload); HAProxy's answer."""
        if "\n" in line:
            raise ConfigError("a HAProxy runtime command is one line")
        text = f"{line} <<\n{payload.strip()}\n\n" if payload is not None else f"{line}\n"
        try:
            async with asyncio.timeout(RUNTIME_TIMEOUT):
                reader, writer = await asyncio.open_unix_connection(str(self.path))
                try:
                    writer.write(text.encode())
                    await writer.drain()
                    answer = await reader.read()
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
        except TimeoutError:
            raise InstallError(
                f"HAProxy's runtime socket {self.path} did not answer within "
                f"{RUNTIME_TIMEOUT:.0f} s"
            ) from None
        except OSError as exc:
            raise InstallError(
                f"cannot talk to HAProxy's runtime socket {self.path}: "
                f"{exc.strerror or exc}: is HAProxy running?"
            ) from None
        return answer.decode("utf-8", "replace")

    async def expect(self, line: str, success: str, payload: str | None = None) -> str:
        """:meth:`command`, InstallError unless a line of the answer matches the regular
        expression ``success`` (whole lines: a refusal such as "cannot be deleted" must
        not pass for "deleted")."""
        answer = await self.command(line, payload)
        if not re.search(success, answer, re.MULTILINE):
            first = next((x for x in answer.splitlines() if x.strip()), "no answer")
            if "Permission denied" in answer:
                first += " (the socket needs `level admin` in its stats socket line)"
            verb = " ".join(line.split()[:3])
            raise InstallError(f"HAProxy refused `{verb}`: {safe_text(first, 300)}")
        return answer

    async def certificates(self) -> set[str]:
        """The certificate files HAProxy holds in memory (``show ssl cert``)."""
        answer = await self.command("show ssl cert")
        return {x.strip() for x in answer.splitlines() if x.strip() and not x.startswith("#")}

    async def level(self) -> str:
        return (await self.command("show cli level")).strip()

    async def swap(self, name: str, pem: str, *, new: bool, crt_list: str) -> None:
        """Make HAProxy serve ``pem`` (chain and key) as certificate ``name``; ``new``:
        add it to ``crt_list`` too (a crt-list file, or a ``crt`` directory: HAProxy
        loads both alike). Aborted on any refusal."""
        if new:
            await self.expect(f"new ssl cert {name}", r"^New empty certificate store '")
        try:
            await self.expect(
                f"set ssl cert {name}", r"^Transaction (created|updated) for certificate ", pem
            )
            await self.expect(f"commit ssl cert {name}", r"^Success!$")
        except InstallError:
            await self.command(f"abort ssl cert {name}")
            if new:
                await self.command(f"del ssl cert {name}")
            raise
        if new:
            try:
                await self.expect(f"add ssl crt-list {crt_list} {name}", r"^Success!$")
            except InstallError:
                await self.command(f"del ssl cert {name}")
                raise

    async def remove(self, name: str, crt_lists: Sequence[str]) -> None:
        """Stop serving certificate ``name`` from each of ``crt_lists`` (crt-list files
        or ``crt`` directories) and forget it."""
        for crt_list in crt_lists:
            await self.expect(
                f"del ssl crt-list {crt_list} {name}", r"^Entry '.*' deleted in crtlist "
            )
        await self.expect(f"del ssl cert {name}", r"^Certificate '.*' deleted!$")


@dataclass(frozen=True)
class HaproxyControl:
    """How to test and reload one HAProxy: its binary, config and pid file."""

    ctl: str
    config: Path
    pidfile: Path
    master_worker: bool = False  # ``master-worker`` in the config's global section
    timeout: float = 60.0

    async def test(self) -> str | None:
        """None when HAProxy accepts its config (and every certificate it loads), else
        HAProxy's own message (one line)."""
        argv = (_binary(self.ctl), "-c", "-f", str(self.config))
        try:
            result = await run_program(argv, env=program_environment({}), timeout=self.timeout)
        except OSError as exc:
            raise ConfigError(
                f"cannot run {self.ctl}: {exc.strerror or exc}: install haproxy, or give "
                "its path as the haproxy installer's ctl"
            ) from None
        if result.succeeded:
            return None
        return haproxy_message(result.stderr or result.stdout)

    def master(self) -> int | None:
        """The pid of a running master-worker HAProxy from the pid file, else None."""
        try:
            pid = int(self.pidfile.read_text().split()[0])
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            return None
        if not command or b"haproxy" not in os.path.basename(command[0]):
            return None
        flags = {arg for arg in command[1:] if arg.startswith(b"-W")}
        return pid if flags or self.master_worker else None

    def reload_problem(self) -> str | None:
        """Why :meth:`reload` would fail (None when it can reload)."""
        if not self.pidfile.exists():
            return f"its pid file {self.pidfile} does not exist (is HAProxy running?)"
        if self.master() is None:
            return (
                f"the HAProxy of {self.pidfile} does not run in master-worker mode "
                "(haproxy -W or `master-worker` in global), so it cannot reload without "
                "a restart that drops connections"
            )
        return None

    async def reload(self) -> None:
        """Reload gracefully (SIGUSR2 to the master); returns once new workers run and
        the old ones stopped listening (they finish their connections on their own), so
        every new connection gets the new config."""
        master = self.master()
        if master is None:
            raise InstallError(
                f"cannot reload HAProxy: no master-worker HAProxy runs with the pid in "
                f"{self.pidfile} (start it with -W, or give it a runtime socket)"
            )
        old = _children(master)
        os.kill(master, signal.SIGUSR2)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RELOAD_WAIT
        while loop.time() < deadline:
            if _children(master) - old:
                break
            await asyncio.sleep(0.02)
        else:
            raise InstallError(
                f"HAProxy (master {master}) did not start new workers within "
                f"{RELOAD_WAIT:.0f} s after SIGUSR2: its log says why"
            )
        while loop.time() < deadline and any(_listening(pid) for pid in old):
            await asyncio.sleep(0.01)
        if any(_listening(pid) for pid in old):
            raise InstallError(
                f"HAProxy (master {master}): its old workers still listen {RELOAD_WAIT:.0f} s "
                "after the reload: its log says why"
            )


def _listening(pid: int) -> bool:
    """Whether process ``pid`` holds a listening TCP socket (its fds against the
    LISTEN entries of /proc/PID/net/tcp and tcp6)."""
    try:
        inodes = {
            os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1]
            for fd in os.listdir(f"/proc/{pid}/fd")
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")
        }
    except OSError:
        return False  # gone
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:
                return True
    return False


def _children(parent: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 1 and fields[1] == str(parent):
            found.add(int(entry.name))
    return found


def _binary(ctl: str) -> str:
    """``ctl`` on PATH, or in /usr/sbin (Debian's haproxy, not on every user's PATH)."""
    if "/" in ctl:
        return ctl
    found = shutil.which(ctl)
    if found is None and os.access(f"/usr/sbin/{ctl}", os.X_OK):
        found = f"/usr/sbin/{ctl}"
    return found or ctl
