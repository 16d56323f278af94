"""Running one Apache's own tools: its config test, its dumps, ``a2enmod``, and a
graceful restart that returns once the new config answers.

``ctl`` is Debian's ``apache2ctl`` (Certbot's ``--apache-ctl`` default), run with
``APACHE_CONFDIR`` set to the server root, so it reads that root's ``envvars`` and
passes ``-d ROOT`` to apache2; ``apachectl`` works the same. A ``ctl`` that is the
server binary itself (``apache2``, ``httpd``) is run with ``-d ROOT`` and no envvars.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from certherd._nofollow import untrusted_reason
from certherd.errors import ConfigError, InstallError, safe_text
from certherd.programs import program_environment, run_program

__all__ = ["RELOAD_WAIT", "ApacheControl", "apache_message"]

RELOAD_WAIT = 10.0
"""How long a graceful restart may take until the new config answers (seconds)."""

_NOISE = re.compile(r"^(AH00558:|Action '.*' failed\.|The Apache error log may have)")


def apache_message(output: str) -> str:
    """What Apache says is wrong, as one line (``AH00526: Syntax error on line 3 of
    FILE: Invalid command 'x', ...``), the hostname warning and apache2ctl's trailer
    left out."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    lines = [line for line in lines if not _NOISE.match(line)]
    for number, line in enumerate(lines):
        if "Syntax error" in line and number + 1 < len(lines):
            return safe_text(f"{line} {lines[number + 1]}", 400)
    return safe_text(lines[0] if lines else "no output", 400)


@dataclass(frozen=True)
class ApacheControl:
    """How to test, inspect and restart one Apache: its control program and root."""

    ctl: str
    root: Path
    timeout: float = 60.0

    @property
    def script(self) -> bool:
        """Whether ``ctl`` is a control script (apache2ctl, apachectl), not the binary."""
        return "ctl" in Path(self.ctl).name

    def _environment(self) -> dict[str, str]:
        # a2enmod keeps Debian's "enabled by admin" markers there (default /var/lib/apache2).
        return program_environment(
            {"APACHE_CONFDIR": str(self.root)}, inherit=("APACHE_STATE_DIRECTORY",)
        )

    async def _run(self, program: str, *args: str) -> tuple[bool, str]:
        reason = untrusted_reason(self.root)
        if reason is not None:  # apache2ctl runs ROOT/envvars as a shell script, as root
            raise ConfigError(f"certherd will not run Apache's tools on {self.root}: {reason}")
        argv = (_binary(program), *args)
        try:
            result = await run_program(argv, env=self._environment(), timeout=self.timeout)
        except OSError as exc:
            raise ConfigError(
                f"cannot run {program}: {exc.strerror or exc}: install apache2, or give the "
                "control program's path as {apache_ctl}",
                settings=("apache_ctl",),
            ) from None
        output = "\n".join(part for part in (result.stderr, result.stdout) if part)
        return result.succeeded, output

    async def _apache(self, *args: str) -> tuple[bool, str]:
        if self.script:
            return await self._run(self.ctl, *args)
        return await self._run(self.ctl, "-d", str(self.root), *args)

    async def test(self) -> str | None:
        """None when Apache accepts its config (``-t``), else its own message."""
        ok, output = await self._apache("-t")
        return None if ok else apache_message(output)

    async def dump(self, what: str) -> str:
        """``-t -D DUMP_<what>``'s output (InstallError with Apache's message on failure)."""
        ok, output = await self._apache("-t", "-D", f"DUMP_{what}")
        if not ok:
            raise InstallError(f"Apache's config fails its own test: {apache_message(output)}")
        return output

    async def modules(self) -> frozenset[str]:
        output = await self.dump("MODULES")
        return frozenset(re.findall(r"^\s*(\w+_module) \(", output, re.MULTILINE))

    async def run_config(self) -> tuple[list[str], Path | None]:
        """The defines and the pid file Apache runs with (``DUMP_RUN_CFG``)."""
        output = await self.dump("RUN_CFG")
        defines = re.findall(r"^Define: (\S+)", output, re.MULTILINE)
        pid = re.search(r'^PidFile: "(.*)"$', output, re.MULTILINE)
        return defines, Path(pid.group(1)) if pid else None

    async def enable_module(self, module: str) -> None:
        """``a2enmod MODULE`` (Debian's; with this root as APACHE_CONFDIR)."""
        ok, output = await self._run("a2enmod", "-q", module)
        if not ok:
            raise InstallError(f"a2enmod {module} failed: {apache_message(output)}")

    async def reload(self) -> str | None:
        """A graceful restart; None once Apache runs children with the new config and
        the old ones stopped accepting connections, else Apache's message."""
        _defines, pid_file = await self.run_config()
        master = _master_pid(pid_file)
        if master is None:
            return (
                f"Apache is not running (no live process in its PidFile {pid_file}): "
                "start it, then try again"
            )
        old = _children(master)
        if self.script:
            ok, output = await self._run(self.ctl, "graceful")
        else:
            ok, output = await self._apache("-k", "graceful")
        if not ok:
            return apache_message(output)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RELOAD_WAIT
        while loop.time() < deadline:
            current = _children(master)
            if current - old and not any(_listening(pid) for pid in current & old):
                return None
            await asyncio.sleep(0.02)
        if _master_pid(pid_file) != master:
            return (
                f"Apache (parent {master}) stopped during the graceful restart: see its error log"
            )
        return (
            f"Apache (parent {master}) did not start children with the new config within "
            f"{RELOAD_WAIT:.0f} s: its error log says why"
        )


def _binary(program: str) -> str:
    """``program`` on PATH, or in /usr/sbin (Debian's, not on every user's PATH)."""
    if "/" in program:
        return program
    found = shutil.which(program)
    if found is None and os.access(f"/usr/sbin/{program}", os.X_OK):
        found = f"/usr/sbin/{program}"
    return found or program


def _master_pid(path: Path | None) -> int | None:
    if path is None:
        return None
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


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


def _listening_inodes() -> set[str]:
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A":  # TCP_LISTEN
                found.add(fields[9])
    return found


def _listening(pid: int) -> bool:
    """Whether process ``pid`` still holds a listening TCP socket (an old child that
    has not yet closed its listeners could take a new connection)."""
    inodes = _listening_inodes()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return True
    return False
