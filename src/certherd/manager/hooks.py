"""Running a lineage's pre, post and deploy hooks, reporting failures instead of raising.

A failing hook never undoes a saved certificate: its error is returned, shown by the
CLI, and counted as a failure of the run (exit code 1), while the new certificate stays.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from certherd.errors import CertherdError, safe_text
from certherd.settings import LineageSettings
from certherd.storage.base import LocalPaths, Storage
from certherd.storage.layout import FILES

__all__ = ["run_lineage_hooks"]


async def run_lineage_hooks(
    kind: str,
    settings: LineageSettings,
    storage: Storage,
    version: int | None,
    extra: Mapping[str, str] | None = None,
) -> list[str]:
    """Run the ``kind`` hooks of ``settings``; return one line per failed hook.

    ``extra``: more ``CERTHERD_*`` variables (the failure hooks' error and count).
    """
    commands = getattr(settings.hooks, kind)
    if not commands:
        return []
    from certherd.hooks.runner import run_hook

    files: dict[str, Path] = {}
    if isinstance(storage, LocalPaths):
        live = storage.live_dir(settings.name)
        files = {file.removesuffix(".pem"): live / file for file in FILES}
    errors: list[str] = []
    for command in commands:
        try:
            await run_hook(  # noqa: S604
                command,
                kind=kind,
                lineage=settings.name,
                names=settings.names,
                files=files,
                extra={
                    **({"CERTHERD_VERSION": str(version)} if version is not None else {}),
                    **(extra or {}),
                },
                # The user's own configured command line (Certbot runs hooks in a shell
                # too); nothing from a CA ever reaches it.
                shell=True,
            )
        except CertherdError as exc:
            errors.append(safe_text(exc, 1000))
    return errors
