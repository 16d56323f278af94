"""http-01 answered through a running web server (the ``nginx`` and ``apache`` solver
kinds).

The first challenge of a run makes the server answer ``/.well-known/acme-challenge/``
from ``ROOT/certherd/http-01/`` where it serves the name (the installer's
``prepare_http01``: an include certherd owns, tested and reloaded); the answers
themselves are written there by the webroot solver (its symlink-safe writes and exact
cleanup); once the last challenge of the run is cleaned up, the include is taken away
again and the server reloaded (the installer's ``finish_http01``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from certherd.acme.messages import Identifier
from certherd.challenges.base import ChallengeTask
from certherd.challenges.webroot import WebrootSolver
from certherd.errors import CertherdError

__all__ = ["AnsweringServer", "ServerSolver"]

log = logging.getLogger(__name__)


class AnsweringServer(Protocol):
    """An installer that can answer http-01 through its running server."""

    kind: str

    @property
    def challenge_root(self) -> Path: ...

    async def prepare_http01(self, names: Sequence[str]) -> object: ...

    async def finish_http01(self, uses: int = 1) -> None: ...


class ServerSolver:
    """http-01 through the installer's server; shared by a run's orders."""

    challenge_type = "http-01"

    def __init__(self, installer: AnsweringServer) -> None:
        self.installer = installer
        self._webroot = WebrootSolver(installer.challenge_root)
        self._lock = asyncio.Lock()
        self._prepared: set[str] = set()
        self._uses = 0  # prepare_http01 calls not yet finished
        self._active = 0  # presented, not yet cleaned up

    def supports(self, identifier: Identifier) -> bool:
        return self._webroot.supports(identifier)

    async def present(self, task: ChallengeTask) -> object:
        name = task.identifier.value
        async with self._lock:
            self._active += 1
            try:
                if name not in self._prepared:
                    self._uses += 1
                    await self.installer.prepare_http01([name])
                    self._prepared.add(name)
            except BaseException:
                await self._release()
                raise
        try:
            return await self._webroot.present(task)
        except BaseException:
            async with self._lock:
                await self._release()
            raise

    async def cleanup(self, handle: object) -> None:
        try:
            await self._webroot.cleanup(handle)
        finally:
            async with self._lock:
                await self._release()

    async def _release(self) -> None:
        """One presented challenge less; the last one takes the include away."""
        self._active -= 1
        if self._active > 0 or not self._uses:
            return
        uses, self._uses = self._uses, 0
        self._prepared.clear()
        try:
            await self.installer.finish_http01(uses)
        except CertherdError as exc:  # cleanup must not raise: say it, keep going
            log.error(
                "could not take certherd's http-01 include out of %s: %s", self.installer.kind, exc
            )
