"""A fleet node's markers of deploys owed to its own host (``CONFIG_DIR/deploying/``).

Before this host's live files of a lineage may switch (the node obtains a version, or
copies one another node obtained), the node writes ``deploying/<lineage>.json`` with the
version the files hold now, and deletes it once the deploy hooks of whatever version
they switch to have succeeded. A node killed in between finds the marker at its next
start: the files moved since it was written, so their deploy hooks are owed here. A
marker whose files did not move is a run stopped before the switch: it is deleted.
"""

from __future__ import annotations

import contextlib
import json
import logging

from certherd.errors import CertherdError
from certherd.storage.filesystem import FilesystemStorage
from certherd.storage.layout import DEPLOY_MARKERS, deploy_marker

__all__ = ["DeployMarkers"]

log = logging.getLogger(__name__)


class DeployMarkers:
    """The markers in one host's config dir (its :class:`FilesystemStorage`)."""

    def __init__(self, local: FilesystemStorage) -> None:
        self.local = local

    async def mark(self, name: str) -> int | None:
        """The marker of ``name`` (before its files may switch); the version they hold
        now. A marker that cannot be written is logged (the deploy then runs once, as
        before, but a crash right after the switch would skip it)."""
        try:
            before = await self.local.live_version(name)
            marker = json.dumps({"before": before}).encode()
            await self.local.write(deploy_marker(name), marker)
        except (CertherdError, ValueError) as exc:
            log.warning("%s: cannot mark the deploy owed on this host: %s", name, exc)
            return None
        return before

    async def unmark(self, name: str) -> None:
        """The deploy hooks of ``name`` succeeded here (or nothing switched)."""
        with contextlib.suppress(CertherdError, ValueError):
            await self.local.delete(deploy_marker(name))

    async def owed(self, on_disk: dict[str, int], known: set[str]) -> set[str]:
        """At start: the lineages (of ``known``) whose files here switched since their
        marker was written (``on_disk``: the versions this host's files hold); the
        other markers are deleted."""
        try:
            keys = await self.local.list(DEPLOY_MARKERS)
        except CertherdError:
            return set()
        found = set()
        for key in keys:
            name = key.removeprefix(DEPLOY_MARKERS + "/").removesuffix(".json")
            try:
                data = json.loads(await self.local.read(key))
                before = data.get("before") if isinstance(data, dict) else None
            except (CertherdError, ValueError):
                before = None
            if name in on_disk and name in known and on_disk[name] != before:
                found.add(name)
                log.warning(
                    "%s v%d was switched on this host by a run stopped before its deploy "
                    "hooks finished: running them",
                    name,
                    on_disk[name],
                )
            else:
                with contextlib.suppress(CertherdError, ValueError):
                    await self.local.delete(key)
        return found
