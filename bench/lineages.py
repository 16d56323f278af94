"""Make thousands of lineages cheaply: issue one for real, then clone its files on disk.

certherd's layout comes from ``certherd.storage.layout`` and its files from
``LineageSettings``/``LineageState`` (so the clones are what certherd itself writes,
including the ARI re-check time its first ``renew`` stored). Certbot's is
``renewal/<name>.conf`` plus ``live/<name>/*.pem`` symlinks into ``archive/<name>/``.
Clones share the seed's certificate and key; only their names differ, and neither
client looks at the certificate's names to decide that nothing is due.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from certherd.manager.lineage import LineageState
from certherd.settings import LineageSettings
from certherd.storage.layout import FILES, INDEX, archive_file, renewal_settings, state_file

__all__ = ["clone_certbot", "clone_certherd"]


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with open(descriptor, "wb") as handle:
        handle.write(data)


def clone_certherd(root: Path, seed: str, names: list[str]) -> None:
    """Add lineages ``names`` to the certherd config dir ``root``, copies of ``seed``."""
    settings = LineageSettings.from_json((root / renewal_settings(seed)).read_bytes(), seed)
    state = LineageState.from_json((root / state_file(seed)).read_bytes(), seed)
    if state.version is None:
        raise SystemExit(f"bench: seed lineage {seed} has no certificate")
    version = state.version
    contents = {f: (root / archive_file(seed, f, version)).read_bytes() for f in FILES}
    for name in names:
        for file, data in contents.items():
            path = root / archive_file(name, file, version)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write(path, data, 0o600 if file == "privkey.pem" else 0o644)
        live = root / "live" / name
        live.mkdir(parents=True, exist_ok=True)
        for file in FILES:
            target = Path("..", "..", archive_file(name, file, version))
            (live / file).unlink(missing_ok=True)
            os.symlink(target, live / file)
        one = (name,)
        _write(
            root / renewal_settings(name),
            dataclasses.replace(settings, name=name, names=one).to_json(),
        )
        _write(root / state_file(name), dataclasses.replace(state, name=name, names=one).to_json())
    # A summary index, if certherd keeps one, is now stale: make the next run rebuild it.
    (root / INDEX).unlink(missing_ok=True)


def clone_certbot(config: Path, seed: str, names: list[str]) -> None:
    """Add lineages ``names`` to Certbot's ``config`` dir, copies of lineage ``seed``."""
    conf = (config / "renewal" / f"{seed}.conf").read_text()
    archive = config / "archive" / seed
    files = sorted(p.name for p in archive.iterdir())
    contents = {f: (archive / f).read_bytes() for f in files}
    live_seed = config / "live" / seed
    links = {p.name: os.readlink(p) for p in live_seed.iterdir() if p.is_symlink()}
    readme = (live_seed / "README").read_bytes() if (live_seed / "README").exists() else None
    for name in names:
        target_archive = config / "archive" / name
        target_archive.mkdir(parents=True, exist_ok=True)
        for file, data in contents.items():
            _write(target_archive / file, data, 0o600 if file.startswith("privkey") else 0o644)
        live = config / "live" / name
        live.mkdir(parents=True, exist_ok=True)
        for link, target in links.items():
            (live / link).unlink(missing_ok=True)
            os.symlink(target.replace(f"/{seed}/", f"/{name}/"), live / link)
        if readme is not None:
            _write(live / "README", readme)
        text = conf.replace(f"/archive/{seed}\n", f"/archive/{name}\n").replace(
            f"/live/{seed}/", f"/live/{name}/"
        )
        _write(config / "renewal" / f"{name}.conf", text.encode())
