"""http-01 answered through the running nginx (the ``nginx`` solver kind).

The first challenge of a run makes nginx answer ``/.well-known/acme-challenge/`` from
``ROOT/certherd/http-01/`` in the server blocks that serve the name
(:meth:`NginxInstaller.prepare_http01`: an include certherd owns, tested and reloaded);
the answers themselves are written there by the webroot solver (its symlink-safe writes
and exact cleanup); once the last challenge of the run is cleaned up, the include is
taken away again and nginx reloaded (:meth:`NginxInstaller.finish_http01`).
"""

from __future__ import annotations

import asyncio
import logging

from certherd.acme.messages import Identifier
from certherd.challenges.base import ChallengeTask
from certherd.challenges.webroot import WebrootSolver
from certherd.errors import CertherdError
from certherd.install.nginx.installer import NginxInstaller

__all__ = ["NginxSolver"]

log = logging.getLogger(__name__)


class NginxSolver:
    """http-01 through nginx at ``installer.server_root``; shared by a run's orders."""

    challenge_type = "http-01"

    def __init__(self, installer: NginxInstaller) -> None:
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
            log.error("could not take certherd's http-01 include out of nginx: %s", exc)
