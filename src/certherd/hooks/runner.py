"""A lineage's hook commands: their prefixed environment, run by :mod:`certherd.programs`.

A hook never inherits certherd's environment: it gets what :mod:`certherd.programs` passes
to every user program (``PATH``, ``HOME``, ``LANG``, ``TZ``), the ``CERTHERD_*`` variables
that describe the lineage, and for deploy hooks the ``RENEWED_LINEAGE`` /
``RENEWED_DOMAINS`` pair that Certbot users' deploy hooks read. Time-out, process-group
kill, output cap and the failure message are the runner's, the same for every program.

Values that come from a CA (names, file paths derived from them) reach a hook only through
the environment, never its command line, so they are never parsed by a shell (acme.sh's
CVE-2023-38198 came from server data reaching ``eval``; FIELD.md).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from certherd.errors import ConfigError, safe_text
from certherd.programs import ProgramResult, program_environment, run_checked

__all__ = ["HOOK_KINDS", "HookEnvironment", "ProgramResult", "run_hook"]

HOOK_KINDS: Final = ("pre", "post", "deploy", "failure")
"""``pre`` runs before an order, ``post`` after it (success or not), ``deploy`` after a
success, ``failure`` after a failure (with ``CERTHERD_ERROR`` and ``CERTHERD_FAILURES``)."""

FILE_VARIABLES: Final = {
    "cert": "CERTHERD_CERT_PATH",
    "chain": "CERTHERD_CHAIN_PATH",
    "fullchain": "CERTHERD_FULLCHAIN_PATH",
    "privkey": "CERTHERD_KEY_PATH",
}

_EXTRA_NAME = re.compile(r"^CERTHERD_[A-Z0-9_]+$")


@dataclass(frozen=True)
class HookEnvironment:
    """The complete environment of one hook run, built without touching ``os.environ``.

    ``files`` maps some or all of ``cert``, ``chain``, ``fullchain`` and ``privkey`` to
    their paths in the live folder (they need not exist yet for a pre hook); another key
    is a ValueError. ``live_dir`` defaults to the folder of the first given file. A path
    that is not known (storage without local files) leaves its variable, and for the live
    folder ``RENEWED_LINEAGE`` too, unset rather than empty. ``extra`` adds variables
    from the user's own configuration; their names MUST start with ``CERTHERD_`` and MUST
    NOT replace one of the variables set here (ConfigError otherwise).
    """

    kind: str
    lineage: str
    names: Sequence[str]
    files: Mapping[str, Path]
    live_dir: Path | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in HOOK_KINDS:
            raise ValueError(f"hook kind {self.kind!r} is not one of {', '.join(HOOK_KINDS)}")
        unknown = set(self.files) - set(FILE_VARIABLES)
        if unknown:
            raise ValueError(
                f"hook files are named {', '.join(FILE_VARIABLES)}; got {sorted(unknown)}"
            )

    def variables(self, parent: Mapping[str, str] | None = None) -> dict[str, str]:
        """The hook's whole environment, as a new dict.

        ``parent`` (default ``os.environ``, only read) supplies what
        :func:`~certherd.programs.program_environment` passes to every program (PATH,
        HOME, LANG, TZ). ConfigError names a variable whose name or value cannot go into
        an environment.
        """
        live_dir = self.live_dir
        if live_dir is None:
            given = [self.files[key] for key in FILE_VARIABLES if key in self.files]
            live_dir = given[0].parent if given else None
        domains = " ".join(self.names)
        env = {"CERTHERD_HOOK": self.kind, "CERTHERD_LINEAGE": self.lineage}
        if live_dir is not None:
            env["CERTHERD_LIVE_DIR"] = str(live_dir.absolute())
        env["CERTHERD_DOMAINS"] = domains
        for key, variable in FILE_VARIABLES.items():
            if key in self.files:
                env[variable] = str(self.files[key].absolute())
        if self.kind == "deploy":
            # Certbot sets these two for deploy hooks only ("renewed" means just issued).
            if live_dir is not None:
                env["RENEWED_LINEAGE"] = env["CERTHERD_LIVE_DIR"]
            env["RENEWED_DOMAINS"] = domains
        for name, value in self.extra.items():
            if not _EXTRA_NAME.match(name):
                raise ConfigError(
                    f"hook variable {safe_text(name, 100)!r}: extra variables must be named "
                    "CERTHERD_ followed by capital letters, digits or '_'"
                )
            if name in env:
                raise ConfigError(f"hook variable {name} is set by certherd and cannot be replaced")
            env[name] = value
        return program_environment(env, parent=parent)


def _argv(command: str | Sequence[str], shell: bool) -> tuple[str, ...]:
    """The command as an argument vector (or one shell line); ConfigError if unusable."""
    if shell:
        if not isinstance(command, str):
            raise ValueError("shell=True needs the command as one string")
        if not command.strip():
            raise ConfigError("the hook command is empty")
        return (command,)
    if isinstance(command, str):
        try:
            argv = tuple(shlex.split(command))
        except ValueError as exc:
            raise ConfigError(f"hook command {safe_text(command, 300)!r}: {exc}") from None
    else:
        argv = tuple(command)
    if not argv or not argv[0]:
        raise ConfigError("the hook command is empty")
    return argv


def _display(command: str | Sequence[str]) -> str:
    text = command if isinstance(command, str) else shlex.join(command)
    return safe_text(text, 300)


async def run_hook(
    command: str | Sequence[str],
    *,
    kind: str,
    lineage: str,
    names: Sequence[str],
    files: Mapping[str, Path],
    extra: Mapping[str, str] | None = None,
    timeout: float = 300.0,
    shell: bool = False,
    live_dir: Path | None = None,
) -> ProgramResult:
    """Run one hook and return its result; HookError if it fails or runs too long.

    A string ``command`` is split with :func:`shlex.split` and run without a shell; with
    ``shell=True`` it is given to ``/bin/sh -c`` as written, which is meant for hook lines
    from the user's own configuration only. The environment is :class:`HookEnvironment`'s.
    Everything else is :func:`certherd.programs.run_checked`'s: stdin ``/dev/null``, a new
    session whose whole process group is stopped on time-out or cancellation, capped
    output, and a HookError naming the hook kind and command and showing the end of its
    stderr (escaped) for a non-zero exit, a time-out or a command that cannot be started.
    """
    if not timeout > 0:
        raise ValueError(f"hook timeout must be positive, got {timeout!r}")
    env = HookEnvironment(
        kind=kind,
        lineage=lineage,
        names=tuple(names),
        files=files,
        live_dir=live_dir,
        extra=dict(extra or {}),
    ).variables()
    argv = _argv(command, shell)
    if shell:
        argv = ("/bin/sh", "-c", *argv)
    what = f"{kind} hook {_display(command)!r}"
    return await run_checked(argv, what=what, env=env, timeout=timeout)
