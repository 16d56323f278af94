"""How to run Pebble: :class:`PebbleOptions`, each field the Pebble knob it sets.

Checked when made (a value Pebble would silently replace or die on is a ConfigError),
turned into Pebble's environment and its ``-config`` JSON by :class:`PebbleServer`.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certherd import addresses
from certherd.errors import ConfigError

__all__ = ["PebbleOptions"]

_MAX_VALIDITY = 100 * 366 * 86400  # seconds; Go's time.Duration overflows past ~292 years


@dataclass
class PebbleOptions:
    """How to run Pebble; each field names the knob it sets. Checked on creation and at start."""

    nonce_reject_percent: int = 5
    """``PEBBLE_WFE_NONCEREJECT``: share of good nonces refused with badNonce (0..100)."""
    authz_reuse_percent: int = 50
    """``PEBBLE_AUTHZREUSE``: chance that a valid authorization is reused in a new order.

    Pebble makes a new one only when ``rand.Intn(100) > authz_reuse_percent``, so 0 still
    reuses about 1 in 100 (measured: 6 of 500 orders): a test whose order must answer
    its challenges deactivates the account's valid authorizations first (RFC 8555 §7.5.2).
    """
    alternate_roots: int = 0
    """``PEBBLE_ALTERNATE_ROOTS``: extra root chains, offered through ``Link: alternate``."""
    chain_length: int | None = None
    """``PEBBLE_CHAIN_LENGTH``: intermediates between leaf and root (Pebble's default: 1)."""
    orders_per_page: int | None = None
    """``PEBBLE_WFE_ORDERS_PER_PAGE``: page size of an account's orders list (default: 3)."""
    va_nosleep: bool = True
    """``PEBBLE_VA_NOSLEEP=1``: validate at once instead of after up to 15 s of sleep."""
    http_port: int = 5002
    """Config ``httpPort``: where Pebble's validator fetches http-01 responses."""
    tls_port: int = 5001
    """Config ``tlsPort``: where Pebble's validator connects for tls-alpn-01."""
    eab_keys: dict[str, str] | None = None
    """Config ``externalAccountMACKeys`` (kid -> base64url HMAC key); set: EAB is required."""
    dns_server: str | None = None
    """``-dnsserver HOST:PORT``; None: the launched challtestsrv (or, without it, the system)."""
    start_challtestsrv: bool = True
    """Also run pebble-challtestsrv as a mock DNS server (and management API)."""
    strict: bool = False
    """``-strict``: Pebble's preview of upcoming breaking changes."""
    certificate_validity_seconds: int | None = None
    """Config ``certificateValidityPeriod``: lifetime of issued certificates (default 5 years)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` for a value Pebble would silently replace or die on."""
        for name, value, low, high in (
            ("nonce_reject_percent", self.nonce_reject_percent, 0, 100),
            ("authz_reuse_percent", self.authz_reuse_percent, 0, 100),
            ("alternate_roots", self.alternate_roots, 0, 100),
            ("chain_length", self.chain_length, 1, 100),
            ("orders_per_page", self.orders_per_page, 1, 100_000),
            ("http_port", self.http_port, 1, 65535),
            ("tls_port", self.tls_port, 1, 65535),
            ("certificate_validity_seconds", self.certificate_validity_seconds, 1, _MAX_VALIDITY),
        ):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"PebbleOptions.{name} must be an integer {low}..{high}")
        for kid, key in (self.eab_keys or {}).items():
            _eab_key(kid, key)
        if self.dns_server is not None:
            addresses.split_host_port(self.dns_server, what="PebbleOptions.dns_server")

    def environment(self) -> dict[str, str]:
        """The ``PEBBLE_*`` variables for the Pebble process."""
        env = {
            "PEBBLE_WFE_NONCEREJECT": str(self.nonce_reject_percent),
            "PEBBLE_AUTHZREUSE": str(self.authz_reuse_percent),
            "PEBBLE_ALTERNATE_ROOTS": str(self.alternate_roots),
        }
        if self.va_nosleep:
            env["PEBBLE_VA_NOSLEEP"] = "1"
        if self.chain_length is not None:
            env["PEBBLE_CHAIN_LENGTH"] = str(self.chain_length)
        if self.orders_per_page is not None:
            env["PEBBLE_WFE_ORDERS_PER_PAGE"] = str(self.orders_per_page)
        return env

    def config(self, *, listen: str, management: str, certificate: Path, key: Path) -> Any:
        """Pebble's JSON config (the ``-config`` file) for these options."""
        eab = self.eab_keys is not None
        validity = {}
        if self.certificate_validity_seconds is not None:
            validity["certificateValidityPeriod"] = self.certificate_validity_seconds
        return {
            "pebble": {
                "listenAddress": listen,
                "managementListenAddress": management,
                "certificate": str(certificate),
                "privateKey": str(key),
                "httpPort": self.http_port,
                "tlsPort": self.tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": eab,
                "externalAccountMACKeys": {
                    kid: _eab_key(kid, mac) for kid, mac in (self.eab_keys or {}).items()
                },
                **validity,
            }
        }


def _eab_key(kid: str, key: str) -> str:
    """``key`` as Pebble wants it (base64url without padding); ConfigError if not base64url."""
    if not kid or not isinstance(key, str):
        raise ConfigError("PebbleOptions.eab_keys needs a non-empty kid and a base64url key")
    unpadded = key.strip().rstrip("=")
    try:
        raw = base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
    except (binascii.Error, ValueError) as err:
        raise ConfigError(f"PebbleOptions.eab_keys[{kid!r}] is not base64url: {err}") from err
    if not raw or not re.fullmatch(r"[A-Za-z0-9_-]+", unpadded):
        raise ConfigError(f"PebbleOptions.eab_keys[{kid!r}] is not base64url")
    return unpadded
