"""The ``exec`` DNS provider: a user's program adds and removes the TXT value.

The program is run without a shell as ``COMMAND present`` or ``COMMAND cleanup`` with a
small, explicit environment: ``PATH``, ``HOME`` and ``LANG`` taken from certherd's own
(plus any names listed in ``pass_env``) and

- ``CERTHERD_DNS_NAME``: the record name, fully qualified with its trailing dot;
- ``CERTHERD_DNS_VALUE``: the TXT value (base64url, 43 characters);
- ``CERTHERD_DNS_DOMAIN``: the name being proven (no ``*.``).

Nothing reaches a shell and ``os.environ`` is never changed (certbot's manual hooks put
values into its own environment; acme.sh's CVE-2023-38198 put CA data into ``eval``).
A non-zero exit or a run past ``timeout`` seconds raises :class:`HookError` naming the
program and showing the start of its stderr, escaped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated

import msgspec

from certherd.dns.base import ProviderInfo, TxtRecord
from certherd.errors import ConfigError, DnsProviderError, HookError, safe_text

__all__ = ["ExecConfig", "ExecOptions", "ExecProvider"]

ENV_PREFIX = "CERTHERD_EXEC_"
INHERITED = ("PATH", "HOME", "LANG")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
OUTPUT_LIMIT = 64 * 1024  # bytes of stdout/stderr kept; the rest is read and dropped
STDERR_SHOWN = 1000  # characters of stderr in the error message
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL for a hook past its timeout

INFO = ProviderInfo(
    name="exec",
    description="Runs your program: COMMAND present|cleanup, with CERTHERD_DNS_* set",
    settings={
        "command": "path of the program to run (no shell); it gets 'present' or 'cleanup'",
        "timeout": "seconds a run may take (default 60)",
        "pass_env": "comma-separated names of more variables to hand to the program",
    },
)


class ExecOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The schema of the settings (see `INFO`); ``CERTHERD_EXEC_*`` may give them too."""

    command: str | None = None
    timeout: Annotated[float, msgspec.Meta(gt=0)] | None = None
    pass_env: str | None = None


@dataclass(frozen=True)
class ExecConfig:
    """What to run and how long to let it run; ``pass_env`` names more variables to pass."""

    command: str
    timeout: float = 60.0
    pass_env: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.command.strip():
            raise ConfigError("exec DNS provider: 'command' is empty; give a program's path")
        if not self.timeout > 0:
            raise ConfigError(f"exec DNS provider: timeout must be > 0, got {self.timeout!r}")
        for name in self.pass_env:
            if not name or "=" in name or "\0" in name:
                raise ConfigError(f"exec DNS provider: bad name in pass_env: {name!r}")


class ExecProvider:
    """A :class:`DnsProvider` that runs a program per add and per remove.

    ``environ`` is where PATH, HOME, LANG and the ``pass_env`` names are read from
    (default: certherd's environment, read once here, never written). Runs may be
    concurrent; a cancelled run's process group is killed.
    """

    info = INFO
    options = ExecOptions

    def __init__(self, config: ExecConfig, environ: Mapping[str, str] | None = None) -> None:
        source = os.environ if environ is None else environ
        self.config = config
        self._base_env = {
            name: source[name] for name in (*INHERITED, *config.pass_env) if name in source
        }
        self._base_env.setdefault("PATH", DEFAULT_PATH)
        found = shutil.which(config.command, path=self._base_env["PATH"])
        if found is None:
            raise ConfigError(
                f"exec DNS provider: {config.command!r} is not an executable program "
                "(give its full path and make it executable)"
            )
        self.command = os.path.abspath(found)

    @classmethod
    def from_settings(cls, settings: Mapping[str, str], environ: Mapping[str, str]) -> ExecProvider:
        """Build from config-file settings, each falling back to ``CERTHERD_EXEC_<NAME>``."""

        def setting(name: str) -> str | None:
            value = settings.get(name)
            return value if value is not None else environ.get(ENV_PREFIX + name.upper())

        unknown = sorted(set(settings) - set(INFO.settings))
        if unknown:
            raise ConfigError(
                f"exec DNS provider: unknown settings {', '.join(unknown)}; "
                f"known: {', '.join(INFO.settings)}"
            )
        command = setting("command")
        if not command:
            raise ConfigError(
                f"exec DNS provider: set 'command' (or {ENV_PREFIX}COMMAND) to your program"
            )
        timeout_text = setting("timeout")
        try:
            timeout = float(timeout_text) if timeout_text else 60.0
        except ValueError:
            raise ConfigError(
                f"exec DNS provider: timeout must be a number of seconds, got {timeout_text!r}"
            ) from None
        pass_env = tuple(n.strip() for n in (setting("pass_env") or "").split(",") if n.strip())
        return cls(ExecConfig(command, timeout, pass_env), environ)

    def environment(self, record: TxtRecord) -> dict[str, str]:
        """The whole environment one run gets for ``record``."""
        values = {
            "CERTHERD_DNS_NAME": record.name if record.name.endswith(".") else record.name + ".",
            "CERTHERD_DNS_VALUE": record.value,
            "CERTHERD_DNS_DOMAIN": record.domain,
        }
        for key, value in values.items():
            if not value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
                raise DnsProviderError(
                    f"exec DNS provider: refusing {key}='{safe_text(value, 80)}' "
                    "(empty or control characters)"
                )
        return {**self._base_env, **values}

    async def add_txt(self, record: TxtRecord) -> None:
        await self._run("present", record)

    async def remove_txt(self, record: TxtRecord) -> None:
        await self._run("cleanup", record)

    async def _run(self, action: str, record: TxtRecord) -> None:
        env = self.environment(record)
        label = f"dns hook {self.command} {action} for {record.name}"
        try:
            process = await asyncio.create_subprocess_exec(
                self.command,
                action,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=True,  # its own process group: a timeout kills it all
                close_fds=True,
            )
        except OSError as err:
            raise HookError(f"{label}: cannot start it: {safe_text(err, 200)}") from None
        assert process.stdout is not None
        assert process.stderr is not None
        try:
            async with asyncio.timeout(self.config.timeout):
                stdout, stderr, _ = await asyncio.gather(
                    _read_capped(process.stdout),
                    _read_capped(process.stderr),
                    process.wait(),
                )
        except TimeoutError:
            await _stop(process)
            raise HookError(
                f"{label}: still running after {self.config.timeout:g}s, killed "
                "(raise the exec provider's timeout if it is just slow)"
            ) from None
        except BaseException:
            await asyncio.shield(_stop(process))
            raise
        if process.returncode != 0:
            raise HookError(f"{label} {_exit_text(process.returncode)}: {_output(stderr, stdout)}")


async def _read_capped(stream: asyncio.StreamReader, limit: int = OUTPUT_LIMIT) -> bytes:
    """Read ``stream`` to its end, keeping the first ``limit`` bytes (a chatty hook
    cannot fill memory, nor block on a full pipe)."""
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < limit:
            kept.extend(chunk[: limit - len(kept)])
    return bytes(kept)


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the hook's process group, SIGKILL it after a grace period, reap it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), KILL_GRACE)


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


def _output(stderr: bytes, stdout: bytes) -> str:
    for name, data in (("stderr", stderr), ("stdout", stdout)):
        text = data.decode("utf-8", "replace").strip()
        if text:
            return f"{name}: {safe_text(text, STDERR_SHOWN)}"
    return "no output"
