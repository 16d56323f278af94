"""The ``exec`` DNS provider: a user's program adds and removes the TXT value.

The program is run without a shell as ``COMMAND present`` or ``COMMAND cleanup`` by
:func:`certherd.programs.run_checked`, with a small, explicit environment: ``PATH``,
``HOME``, ``LANG`` and ``TZ`` taken from certherd's own (plus any names listed in
``pass_env``) and

- ``CERTHERD_DNS_NAME``: the record name, fully qualified with its trailing dot;
- ``CERTHERD_DNS_VALUE``: the TXT value (base64url, 43 characters);
- ``CERTHERD_DNS_DOMAIN``: the name being proven (no ``*.``).

Nothing reaches a shell and ``os.environ`` is never changed (certbot's manual hooks put
values into its own environment; acme.sh's CVE-2023-38198 put CA data into ``eval``).
A non-zero exit or a run past ``timeout`` seconds (its whole process group is then
stopped) raises :class:`HookError` naming the program and showing the end of its stderr
(or stdout), escaped.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated

import msgspec

from certherd.dns.base import ProviderInfo, TxtRecord
from certherd.errors import ConfigError, DnsProviderError, safe_text
from certherd.programs import program_environment, run_checked

__all__ = ["ExecConfig", "ExecOptions", "ExecProvider"]

ENV_PREFIX = "CERTHERD_EXEC_"

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

    ``environ`` is where PATH, HOME, LANG, TZ and the ``pass_env`` names are read from
    (default: certherd's environment, read once here, never written). Runs may be
    concurrent; a cancelled run's process group is killed.
    """

    info = INFO
    options = ExecOptions

    def __init__(self, config: ExecConfig, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self._base_env = program_environment({}, inherit=config.pass_env, parent=environ)
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
        what = f"dns hook {self.command} {action} for {record.name}"
        await run_checked((self.command, action), what=what, env=env, timeout=self.config.timeout)
