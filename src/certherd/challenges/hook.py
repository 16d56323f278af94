"""Any challenge type through a user's program: ``COMMAND present`` and ``COMMAND cleanup``.

The program runs without a shell, with a small explicit environment (STYLE habit 14:
``os.environ`` is read, never changed) and a timeout. What it gets:

==============================  ===========================================================
``PATH``, ``HOME``, ``LANG``,   copied from certherd's own environment when set (``PATH``
``TZ``                          falls back to ``/usr/local/bin:/usr/bin:/bin``)
``CERTHERD_CHALLENGE_TYPE``     ``http-01``, ``dns-01``, ``tls-alpn-01`` or any other type
``CERTHERD_IDENTIFIER``         the name or IP address (``*.example.com`` for a wildcard)
``CERTHERD_IDENTIFIER_TYPE``    ``dns`` or ``ip`` (RFC 8555 §9.7.7, RFC 8738)
``CERTHERD_TOKEN``              the challenge token, base64url (empty for a type without one)
``CERTHERD_KEY_AUTHORIZATION``  ``token.thumbprint`` (RFC 8555 §8.1)
``CERTHERD_DNS_NAME``           dns-01 only: ``_acme-challenge.<name>.`` (RFC 8555 §8.4,
                                the ``*.`` of a wildcard removed)
``CERTHERD_DNS_VALUE``          dns-01 only: base64url(SHA-256(key authorization)) (§8.4)
==============================  ===========================================================

``present`` MUST return only once the response is visible to the CA (for dns-01: on
every authoritative name server). ``cleanup`` gets the same environment and MUST
tolerate being called after a ``present`` that failed or was interrupted part-way: it is
then called too, so nothing is left behind. The program is run by
:func:`certherd.programs.run_checked`: a non-zero exit or a timeout is a :class:`HookError`
naming the program and showing the end of its stderr; on timeout or cancellation the
program's whole process group is killed. Something ``present`` leaves running (a
responder until ``cleanup``) MUST send its output elsewhere (``>/dev/null 2>&1``):
certherd stops reading the program's output shortly after it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from certherd.acme.messages import Identifier
from certherd.challenges.base import ChallengeTask, check_token
from certherd.crypto.encoding import b64url
from certherd.errors import ConfigError, HookError, UnsafeResponseError, safe_text
from certherd.programs import program_environment, run_checked

__all__ = ["HookSolver", "hook_environment"]

PREFIX = "CERTHERD_"
_TOKEN_TYPES = frozenset({"http-01", "dns-01", "tls-alpn-01"})


def _checked(value: str, what: str) -> str:
    """Refuse CA-supplied text that no environment variable should carry."""
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise UnsafeResponseError(
            f"the CA sent a {what} with control characters: {safe_text(value, 80)!r}"
        )
    return value


def hook_environment(
    task: ChallengeTask, parent: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The exact environment a hook gets for ``task`` (see the module docstring).

    ``parent`` defaults to ``os.environ``, which is only read.
    """
    challenge_type = task.challenge.type
    token = task.challenge.token
    if token is not None or challenge_type in _TOKEN_TYPES:
        token = check_token(token)
    identifier = task.identifier
    env = {
        f"{PREFIX}CHALLENGE_TYPE": _checked(challenge_type, "challenge type"),
        f"{PREFIX}IDENTIFIER": _checked(identifier.value, "identifier"),
        f"{PREFIX}IDENTIFIER_TYPE": _checked(identifier.type, "identifier type"),
        f"{PREFIX}TOKEN": token or "",
        f"{PREFIX}KEY_AUTHORIZATION": _checked(task.key_authorization, "key authorization"),
    }
    if challenge_type == "dns-01":
        # RFC 8555 §8.4: the record is at "_acme-challenge." + the domain (no "*." label),
        # its value base64url(SHA-256(key authorization)).
        domain = identifier.value.removeprefix("*.")
        digest = hashlib.sha256(task.key_authorization.encode("ascii")).digest()
        env[f"{PREFIX}DNS_NAME"] = f"_acme-challenge.{domain}."
        env[f"{PREFIX}DNS_VALUE"] = b64url(digest)
    return program_environment(env, parent=parent)


@dataclass(frozen=True)
class _Handle:
    identifier: Identifier
    environment: Mapping[str, str]


class HookSolver:
    """Answers ``challenge_type`` by running ``command present`` / ``command cleanup``.

    ``command`` is a program (path or name looked up in ``PATH``), or a program with
    fixed leading arguments as a sequence; it never goes through a shell. Calls may run
    concurrently, one process each.
    """

    def __init__(
        self,
        challenge_type: str,
        command: str | os.PathLike[str] | Sequence[str],
        timeout: float = 120,
    ) -> None:
        if isinstance(command, str | os.PathLike):
            argv = [os.fspath(command)]
        else:
            argv = [str(part) for part in command]
        if not argv or not argv[0]:
            raise ConfigError("hook command is empty: give the path of a program")
        if not timeout > 0:
            raise ConfigError(f"hook timeout must be positive, not {timeout!r}")
        if not challenge_type or "\x00" in challenge_type:
            raise ConfigError(f"hook challenge type {challenge_type!r} is not valid")
        self.challenge_type = challenge_type
        self.argv: tuple[str, ...] = tuple(argv)
        self.timeout = float(timeout)

    def supports(self, identifier: Identifier) -> bool:
        if self.challenge_type == "dns-01":
            return identifier.type == "dns"  # RFC 8738 §7: no dns-01 for IP addresses
        if self.challenge_type in ("http-01", "tls-alpn-01"):
            return not identifier.is_wildcard  # they prove one host: CAs want dns-01 for "*."
        return True  # an unknown type: the CA decides what it offers it for

    async def present(self, task: ChallengeTask) -> object:
        handle = _Handle(task.identifier, hook_environment(task))
        try:
            await self._run("present", handle)
        except BaseException:
            # A present that failed part-way may have left something: undo it too.
            with contextlib.suppress(HookError):
                await asyncio.shield(self._run("cleanup", handle))
            raise
        return handle

    async def cleanup(self, handle: object) -> None:
        if isinstance(handle, _Handle):
            await asyncio.shield(self._run("cleanup", handle))

    async def _run(self, action: str, handle: _Handle) -> None:
        """Run ``argv + [action]``; raise HookError on failure, timeout or a missing program."""
        what = f"hook {safe_text(self.argv[0], 200)} {action} for {handle.identifier}"
        await run_checked(
            (*self.argv, action), what=what, env=handle.environment, timeout=self.timeout
        )
