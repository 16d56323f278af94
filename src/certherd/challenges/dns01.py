"""dns-01 (RFC 8555 §8.4): publish a TXT record through a DNS provider, then check it.

RFC 8555 §8.4: "The client then computes the SHA-256 digest [FIPS180-4] of the key
authorization. The record provisioned to the DNS contains the base64url encoding of this
digest." and "The client constructs the validation domain name by prepending the label
'_acme-challenge' to the domain name being validated". For a wildcard the ``*.`` label is
removed first (§7.1.3), so ``*.example.com`` and ``example.com`` share one TXT name and
their two values must coexist.

CNAME delegation (the acme-dns pattern): when ``_acme-challenge.<name>`` is a CNAME, CAs
follow it, so the record is written at the end of the chain, typically in a zone the
provider may edit while the main zone stays untouched.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass

from certherd.acme.messages import Identifier
from certherd.challenges.base import ChallengeTask, check_token
from certherd.challenges.propagation import PropagationChecker, normalize_name
from certherd.crypto.encoding import b64url
from certherd.dns.base import DnsProvider, TxtRecord
from certherd.errors import ConfigError

__all__ = ["Dns01Handle", "Dns01Solver", "dns01_record_name", "dns01_txt_value"]

log = logging.getLogger(__name__)

CHALLENGE_LABEL = "_acme-challenge"


def dns01_txt_value(key_authorization: str) -> str:
    """RFC 8555 §8.4: base64url (no padding) of SHA-256 of the key authorization."""
    return b64url(hashlib.sha256(key_authorization.encode("ascii")).digest())


def dns01_record_name(identifier: Identifier | str) -> str:
    """RFC 8555 §8.4: ``_acme-challenge.<name>.`` with any wildcard label removed."""
    if isinstance(identifier, Identifier):
        if identifier.type != "dns":
            raise ConfigError(f"dns-01 proves DNS names only, not {identifier.type} identifiers")
        value = identifier.value
    else:
        value = identifier
    name = normalize_name(value).removeprefix("*.")
    if name in ("", ".") or "*" in name:
        raise ConfigError(f"dns-01 cannot prove {value!r}: only a leading '*.' is allowed")
    return f"{CHALLENGE_LABEL}.{name}"


@dataclass(frozen=True)
class Dns01Handle:
    """Exactly what one :meth:`Dns01Solver.present` added: one value at one name."""

    record: TxtRecord


class Dns01Solver:
    """dns-01 through a :class:`DnsProvider`, with an active propagation check.

    ``present`` adds the value (after following any CNAME at the challenge name), then
    waits for the checker; if either fails it removes what it added before raising.
    ``cleanup`` removes exactly the value of its handle. Any number of ``present`` calls
    may run concurrently, so a batch of names is published first and awaited in parallel.
    """

    challenge_type = "dns-01"

    def __init__(
        self,
        provider: DnsProvider,
        propagation: PropagationChecker | None = None,
        follow_cnames: bool = True,
        *,
        ttl: int = 60,
    ) -> None:
        self.provider = provider
        self.propagation = propagation if propagation is not None else PropagationChecker()
        self.follow_cnames = follow_cnames
        self.ttl = ttl

    def supports(self, identifier: Identifier) -> bool:
        # RFC 8555 §8.4 and RFC 8738 §7: dns-01 proves DNS names, wildcards included; an
        # IP address has no DNS name to prove it under.
        return identifier.type == "dns"

    async def record_for(self, task: ChallengeTask) -> TxtRecord:
        """The TXT record ``present`` would add for ``task`` (CNAMEs followed)."""
        check_token(task.challenge.token)  # untrusted CA input: refuse before any use
        name = dns01_record_name(task.identifier)
        if self.follow_cnames:
            name = await self.propagation.follow_cname(name)
        return TxtRecord(
            name=name,
            value=dns01_txt_value(task.key_authorization),
            domain=task.identifier.value.removeprefix("*."),
            ttl=self.ttl,
        )

    async def present(self, task: ChallengeTask) -> object:
        record = await self.record_for(task)
        try:
            await self.provider.add_txt(record)
            log.info("dns-01: TXT %s added through %s", record.name, type(self.provider).__name__)
            await self.propagation.wait(record.name, record.value)
        except BaseException:
            # The caller only cleans up handles it got back: undo the add here, shielded
            # so a cancellation cannot leave the value behind (STYLE habit 7).
            await _shielded_remove(self.provider, record)
            raise
        return Dns01Handle(record)

    async def cleanup(self, handle: object) -> None:
        if isinstance(handle, Dns01Handle):
            await asyncio.shield(self.provider.remove_txt(handle.record))
            log.info("dns-01: TXT %s removed", handle.record.name)


async def _shielded_remove(provider: DnsProvider, record: TxtRecord) -> None:
    """Remove ``record`` even if we are cancelled meanwhile; its own failure is swallowed
    (the error that made us undo the add says more). A cancellation is re-raised after."""
    removal = asyncio.ensure_future(provider.remove_txt(record))
    cancelled = False
    while not removal.done():
        try:
            await asyncio.shield(removal)
        except asyncio.CancelledError:
            cancelled = True
        except Exception:  # noqa: S112 - see the docstring
            continue
    if not removal.cancelled():
        removal.exception()  # retrieved, so asyncio does not log it as lost
    if cancelled:
        raise asyncio.CancelledError
