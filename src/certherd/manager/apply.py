"""Converge storage on certherd.toml: obtain what is missing or changed, leave the rest.

A lineage whose names, key type, profile or CA changed is obtained again now; one
whose solvers or hooks changed only has its settings rewritten; an unchanged one is
renewed if due. Lineages not in the file are left alone.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from certherd.config import CertificateConfig, ConfigFile
from certherd.errors import ConfigError, NotFoundError
from certherd.manager.hygiene import clear_interrupted
from certherd.manager.lineage import HookSettings, LineageSettings
from certherd.manager.outcome import Outcome, describe_failure
from certherd.manager.request import earlier_wildcard_lineage
from certherd.manager.tasks import finish_all
from certherd.names import name_set
from certherd.storage.base import Storage

if TYPE_CHECKING:
    from certherd.acme.jws import ExternalAccountBinding
    from certherd.manager.accounts import CaOptions
    from certherd.manager.service import Manager

__all__ = ["apply_config", "ca_options", "follow_config", "settings_for", "sync_settings"]


def settings_for(entry: CertificateConfig) -> LineageSettings:
    """The lineage settings a ``[[certificate]]`` asks for."""
    return LineageSettings(
        name=entry.lineage,
        names=entry.domains,
        directory_url=entry.directory_url,
        solvers=entry.solvers,
        account=entry.account,
        ca_bundle=entry.ca_bundle,
        key_type=entry.key_type,
        reuse_key=entry.reuse_key,
        profile=entry.profile,
        preferred_chain=entry.preferred_chain,
        hooks=HookSettings(
            entry.pre_hooks, entry.post_hooks, entry.deploy_hooks, entry.failure_hooks
        ),
    )


def _eab(config: ConfigFile) -> ExternalAccountBinding | None:
    if not config.eab_kid and not config.eab_hmac_key_file:
        return None
    if not (config.eab_kid and config.eab_hmac_key_file):
        raise ConfigError(f"{config.path}: set both eab_kid and eab_hmac_key_file in [defaults]")
    from certherd.acme.jws import ExternalAccountBinding
    from certherd.challenges.spec import read_secret_file

    key = read_secret_file(config.eab_hmac_key_file, "the EAB HMAC key (eab_hmac_key_file)")
    return ExternalAccountBinding.from_b64url(config.eab_kid, key)


def _reissue_reason(wanted: LineageSettings, stored: LineageSettings) -> str | None:
    if name_set(wanted.names) != name_set(stored.names):
        return "names changed"
    if wanted.key_type != stored.key_type:
        return "key type changed"
    if wanted.profile != stored.profile:
        return "profile changed"
    if wanted.directory_url != stored.directory_url:
        return "CA changed"
    return None


def ca_options(config: ConfigFile) -> dict[tuple[str, str], CaOptions]:
    """The CA and account options of every certificate in ``config``, by (CA, account)."""
    from certherd.manager.accounts import CaOptions

    eab = _eab(config)
    found: dict[tuple[str, str], CaOptions] = {}
    for entry in config.certificates:
        found.setdefault(
            (entry.directory_url, entry.account),
            CaOptions(
                directory_url=entry.directory_url,
                ca_bundle=entry.ca_bundle,
                email=entry.email,
                agree_tos=config.agree_tos,
                eab=eab,
                account=entry.account,
            ),
        )
    return found


async def apply_config(manager: Manager, config: ConfigFile) -> list[Outcome]:
    """Apply every certificate of ``config``, concurrently (bounded by the manager)."""
    from certherd.manager.accounts import CaOptions

    eab = _eab(config)
    manager.configured.update((e.lineage, settings_for(e)) for e in config.certificates)
    await clear_interrupted(manager.storage)  # what runs killed mid-work left behind

    async def one(entry: CertificateConfig) -> Outcome:
        lineage = await earlier_wildcard_lineage(manager.storage, entry.lineage, entry.domains)
        entry = dataclasses.replace(entry, lineage=lineage)
        wanted = settings_for(entry)
        ca = CaOptions(
            directory_url=entry.directory_url,
            ca_bundle=entry.ca_bundle,
            email=entry.email,
            agree_tos=config.agree_tos,
            eab=eab,
            account=entry.account,
        )
        try:
            stored: LineageSettings | None = await LineageSettings.load(
                manager.storage, entry.lineage
            )
        except NotFoundError:
            stored = None
        try:
            if stored is None:
                outcome = await manager.issue(wanted, ca)
                return Outcome(
                    outcome.lineage,
                    outcome.action,
                    "new in the config file",
                    outcome.version,
                    outcome.not_after,
                    hook_errors=outcome.hook_errors,
                )
            reason = _reissue_reason(wanted, stored)
            if reason is not None:
                outcome = await manager.issue(wanted, ca)
                return Outcome(
                    outcome.lineage,
                    "renewed",
                    reason,
                    outcome.version,
                    outcome.not_after,
                    hook_errors=outcome.hook_errors,
                )
            if wanted != stored:
                await wanted.save(manager.storage)
            return await manager.renew_one(entry.lineage)
        except Exception as exc:  # one lineage's failure never stops the others (issue 9.3)
            return Outcome(entry.lineage, "failed", "apply", error=describe_failure(exc))

    # Every lineage to its end; stopped, every one cleans up (not only the first).
    return await finish_all(one(entry) for entry in config.certificates)


async def sync_settings(storage: Storage, config: ConfigFile) -> None:
    """Write the settings of every certificate in ``config`` (``renew`` follows the file);
    a lineage whose names changed becomes due, one not yet obtained is obtained."""
    for entry in config.certificates:
        lineage = await earlier_wildcard_lineage(storage, entry.lineage, entry.domains)
        entry = dataclasses.replace(entry, lineage=lineage)
        wanted = settings_for(entry)
        try:
            stored: LineageSettings | None = await LineageSettings.load(storage, entry.lineage)
        except NotFoundError:
            stored = None
        if stored != wanted:
            await wanted.save(storage)


async def follow_config(manager: Manager, config: ConfigFile) -> None:
    """What ``renew`` and the daemon do with certherd.toml before a run: write the settings
    it gives, and let ``manager`` use its CA options and its secrets."""
    await sync_settings(manager.storage, config)
    manager.known_cas.update(ca_options(config))
    manager.configured.update((e.lineage, settings_for(e)) for e in config.certificates)
