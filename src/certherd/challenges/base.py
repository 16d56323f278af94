"""The solver interface: prove control of one identifier by one challenge type.

Lifecycle (STYLE habit 7): ``present()`` returns a handle holding exactly what it
created; ``cleanup(handle)`` removes exactly that and is always called, shielded from
cancellation, whatever happened in between.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from certherd.acme.messages import Challenge, Identifier
from certherd.errors import UnsafeResponseError, safe_text

__all__ = ["ChallengeTask", "Solver", "check_token"]

# RFC 8555 §8.3/§8.4: tokens are base64url; 128 bits of entropy at least, so >= 22 chars.
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,512}$")


def check_token(token: str | None) -> str:
    """Return ``token`` if it is plain base64url, else refuse it before it reaches a path,
    a DNS name or a hook (the CA is untrusted input; see CVE-2023-38198)."""
    if token is None or not _TOKEN.fullmatch(token):
        raise UnsafeResponseError(
            f"the CA sent a challenge token that is not base64url: {safe_text(token, 80)!r}"
        )
    return token


@dataclass(frozen=True)
class ChallengeTask:
    """One identifier to prove, the challenge chosen for it and its key authorization."""

    identifier: Identifier
    challenge: Challenge
    key_authorization: str

    @property
    def token(self) -> str:
        return check_token(self.challenge.token)


@runtime_checkable
class Solver(Protocol):
    """Answers one challenge type.

    ``present`` MUST make the response visible to the CA before it returns, and MUST
    refuse tokens that are not base64url; if it fails or is cancelled before it returns,
    it MUST undo what it created itself (no handle reaches the caller). ``cleanup`` MUST
    NOT raise for a handle whose resources are already gone. Both may be called
    concurrently for different tasks.
    """

    challenge_type: str

    def supports(self, identifier: Identifier) -> bool:
        """Whether this solver can prove ``identifier`` (dns-01 alone can do wildcards)."""
        ...

    async def present(self, task: ChallengeTask) -> object:
        """Publish the response for ``task``; return a handle for ``cleanup``."""
        ...

    async def cleanup(self, handle: object) -> None:
        """Remove exactly what ``present`` created for ``handle``."""
        ...
