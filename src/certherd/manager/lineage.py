"""A lineage's state: what we know of its certificate (its settings, how to obtain
it, are :class:`certherd.settings.LineageSettings`).

State (``state/<name>.json``) is rewritten after every attempt: the live version, its
expiry, the ARI window and the moment picked inside it, failures and the last error.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from certherd.errors import CertherdError, NotFoundError, StorageError
from certherd.settings import LineageSettings
from certherd.storage.base import Lease, Storage
from certherd.storage.layout import state_file
from certherd.storage.leases import held_lease
from certherd.storage.lineages import live_version

if TYPE_CHECKING:
    from cryptography import x509

__all__ = ["LineageState", "load_lineage"]

SCHEMA = 1


def _time(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    parsed = dt.datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat()


@dataclass(frozen=True)
class LineageState:
    """What certherd knows of a lineage's live certificate and its renewals."""

    name: str
    version: int | None = None
    serial: str | None = None
    names: tuple[str, ...] = ()
    issuer: str | None = None
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    certificate_id: str | None = None
    ari_start: dt.datetime | None = None
    ari_end: dt.datetime | None = None
    ari_pick: dt.datetime | None = None
    ari_retry_at: dt.datetime | None = None
    ari_explanation: str | None = None
    failures: int = 0
    last_failure: dt.datetime | None = None
    last_error: str | None = None
    last_success: dt.datetime | None = None
    next_check: dt.datetime | None = None
    deploy_owed: bool = False
    """The live version's deploy hooks have not all succeeded yet (one failed, or a crash
    came between saving the version and them): the next run runs them again."""
    order_url: str | None = None
    """An order placed and not yet turned into a stored version (its key waits in
    ``archive/<name>/pending-privkey.pem``): the next attempt resumes it instead of
    placing another, after a crash or a CA that asked to be asked later (issue 9.4)."""
    order_names: tuple[str, ...] = ()
    """The names ``order_url`` was placed for: resumed only while the settings agree."""
    order_retry_at: dt.datetime | None = None
    """The CA asked (Retry-After) not to be asked about the order before this moment:
    the lineage is waiting on the CA until then, which is not a failure."""
    revoked_at: dt.datetime | None = None
    """When the live certificate was found revoked (by ``revoke``, or the CA answering
    alreadyRevoked): ``list``/``show`` flag it and the next renewal replaces it at once
    (issue 10.5). A new version starts with a fresh state, without it."""
    revocation_reason: str | None = None
    stored_version: int | None = None
    """A version stored in the archive after issuance but not made live (a later step
    failed): the next attempt makes it live instead of ordering again (issue 10.2)."""
    issued_by: str | None = None
    """The directory URL of the CA that issued the live version (None: written before
    certherd kept it, so the lineage's first CA). Its renewal info (RFC 9773) is asked
    of that CA, and ``replaces`` goes only to it."""
    order_ca: str | None = None
    """The directory URL of the CA ``order_url`` was placed at (None: the first CA):
    an open order is resumed only at its own CA."""
    reissue: str | None = None
    """Why the live certificate must be replaced now although it is not due (the key
    type, profile or CA changed in the desired settings: ``apply --defer`` leaves that
    to a fleet node). A new version starts with a fresh state, without it."""

    _TIMES = (
        "not_before",
        "not_after",
        "ari_start",
        "ari_end",
        "ari_pick",
        "ari_retry_at",
        "last_failure",
        "last_success",
        "next_check",
        "order_retry_at",
        "revoked_at",
    )

    def to_json(self) -> bytes:
        data: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            data[item.name] = _iso(value) if item.name in self._TIMES else value
        data["names"] = list(self.names)
        data["order_names"] = list(self.order_names)
        data["schema"] = SCHEMA
        return json.dumps(data, indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> LineageState:
        try:
            data = json.loads(raw)
            values: dict[str, Any] = {}
            for item in fields(cls):
                if item.name not in data:
                    continue
                value = data[item.name]
                values[item.name] = _time(value) if item.name in cls._TIMES else value
            values["names"] = tuple(values.get("names", ()))
            values["order_names"] = tuple(values.get("order_names", ()))
            return cls(**values)
        except (ValueError, TypeError) as exc:
            raise StorageError(f"{where} is damaged ({exc}): delete it to rebuild") from None

    @classmethod
    def of_certificate(
        cls,
        name: str,
        leaf: x509.Certificate,
        version: int,
        now: dt.datetime,
        *,
        last_success: dt.datetime | None = None,
    ) -> LineageState:
        """The state of a lineage whose live version ``version`` holds ``leaf``: its
        facts, and when to check it next (without ARI: a third of the lifetime left)."""
        from certherd.crypto.ari import certificate_id
        from certherd.crypto.certs import describe_certificate
        from certherd.manager.policy import needs_renewal

        info = describe_certificate(leaf)
        try:
            cert_id: str | None = certificate_id(leaf)
        except CertherdError:
            cert_id = None  # no AKI: no ARI for it
        decision = needs_renewal(not_before=info.not_before, not_after=info.not_after, now=now)
        return cls(
            name=name,
            version=version,
            serial=info.serial_hex,
            names=info.dns_names + info.ip_addresses,
            issuer=info.issuer_cn,
            not_before=info.not_before,
            not_after=info.not_after,
            certificate_id=cert_id,
            last_success=last_success,
            next_check=decision.next_check,
        )

    @classmethod
    async def load(cls, storage: Storage, name: str) -> LineageState:
        key = state_file(name)
        try:
            return cls.from_json(await storage.read(key), key)
        except NotFoundError:
            return cls(name=name)

    async def save(self, storage: Storage, *, fence: Lease | None = None) -> None:
        """Write the state, carrying ``fence`` or else the lease this task holds on the
        lineage (:func:`~certherd.storage.leases.held_lease`), if any."""
        fence = fence or held_lease(self.name)
        await storage.write(state_file(self.name), self.to_json(), fence=fence)

    def with_failure(self, error: str, now: dt.datetime) -> LineageState:
        return replace(self, failures=self.failures + 1, last_failure=now, last_error=error)


async def load_lineage(
    storage: Storage, name: str, now: dt.datetime
) -> tuple[LineageSettings, LineageState]:
    """Settings and state of ``name``; the state follows what is actually live.

    After a crash between switching ``live/`` and saving the state, the state still
    names the old version: it is rebuilt from the live certificate (and saved), so
    renewals, ``replaces`` and revocation concern the certificate being served. The
    failure history is kept, and the deploy hooks, which never ran for it, are owed.
    """
    settings = await LineageSettings.load(storage, name)
    state = await LineageState.load(storage, name)
    live = await live_version(storage, name)
    if live is not None and live != state.version:
        from certherd.crypto.certs import load_pem_chain
        from certherd.storage.layout import archive_file

        pem = await storage.read(archive_file(name, "cert.pem", live))
        rebuilt = LineageState.of_certificate(name, load_pem_chain(pem)[0], live, now)
        state = replace(
            rebuilt,
            failures=state.failures,
            last_error=state.last_error,
            last_failure=state.last_failure,
            last_success=state.last_success,
            deploy_owed=bool(settings.hooks.deploy or settings.installer),  # never ran for it
            # The CA of the version stored (not yet live) when the crash came, else the
            # live one's as known.
            issued_by=state.order_ca if live == state.stored_version else state.issued_by,
        )
        await state.save(storage)
    return settings, state
