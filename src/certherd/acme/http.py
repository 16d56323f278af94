"""The httpx client a Transport talks through: certherd's own, or the caller's.

certherd's own client trusts the system's CAs or one PEM bundle, follows no redirect,
honours the proxy settings of the environment (or an explicit proxy), and keeps a pool
sized for bulk runs. A caller's client is used as it is and never closed by certherd:
settings that could only apply to a client certherd builds are refused with it.
"""

from __future__ import annotations

import re
import ssl
from typing import TYPE_CHECKING

from certherd import __version__
from certherd.errors import ConfigError, safe_text

if TYPE_CHECKING:
    # httpx is imported when the first client is made (see certherd.acme.transport).
    import httpx

__all__ = ["USER_AGENT", "http_client_for"]

USER_AGENT = f"certherd/{__version__}"
"""certherd's product token. RFC 8555 §6.1 says the User-Agent SHOULD name the ACME
software and the HTTP client software underneath, with their versions: a Transport
sends ``[caller's product] certherd/VERSION httpx/VERSION`` (see Transport.user_agent)."""
_FIELD_VALUE = re.compile(r"^[\x21-\x7e]+(?: [\x21-\x7e]+)*$")  # RFC 9110 §5.5, no controls


def http_client_for(
    http_client: httpx.AsyncClient | None,
    *,
    ca_bundle: str | None,
    timeout: float | None,
    proxy: str | None,
    trust_env: bool | None,
    user_agent: str | None,
) -> tuple[httpx.AsyncClient, bool, str]:
    """The client to use, whether certherd owns it (and closes it), and the User-Agent."""
    if user_agent is not None and not _FIELD_VALUE.fullmatch(user_agent):
        raise ConfigError(
            f"user_agent {safe_text(user_agent, 100)!r} is not a valid User-Agent: "
            "give printable ASCII product tokens such as 'myapp/1.2'"
        )
    import httpx  # see the note at the imports

    owns = http_client is None
    if http_client is None:
        client = _make_client(ca_bundle, timeout, proxy, trust_env)
    else:
        given = {
            "ca_bundle": ca_bundle,
            "timeout": timeout,
            "proxy": proxy,
            "trust_env": trust_env,
        }
        clash = [name for name, value in given.items() if value is not None]
        if clash:
            raise ConfigError(
                f"{', '.join(clash)} cannot apply to an http_client already built: "
                "configure your httpx.AsyncClient with them, or pass them without "
                "http_client"
            )
        client = http_client
        if user_agent is None:
            theirs = http_client.headers.get("user-agent")
            httpx_default = f"python-httpx/{httpx.__version__}"  # not the caller's choice
            if theirs and theirs != httpx_default and _FIELD_VALUE.fullmatch(theirs):
                user_agent = theirs
    # RFC 8555 §6.1: the caller's product first, then certherd's and httpx's.
    ours = f"{USER_AGENT} httpx/{httpx.__version__}"
    return client, owns, (f"{user_agent} {ours}" if user_agent else ours)


def _make_client(
    ca_bundle: str | None, timeout: float | None, proxy: str | None, trust_env: bool | None
) -> httpx.AsyncClient:
    """certherd's own httpx client: no redirects, the pool sized for bulk runs."""
    import httpx  # see the note at the imports

    seconds = 30.0 if timeout is None else timeout
    if not seconds > 0:
        raise ConfigError("the HTTP timeout must be a positive number of seconds")
    try:
        return httpx.AsyncClient(
            verify=_ssl_context(ca_bundle),
            timeout=httpx.Timeout(seconds, connect=min(seconds, 10.0)),
            follow_redirects=False,
            # True (httpx's default): HTTPS_PROXY, ALL_PROXY and NO_PROXY are honoured;
            # an explicit proxy wins over them.
            trust_env=True if trust_env is None else trust_env,
            proxy=proxy,
            # Keep as many idle connections as may be busy: bulk runs reuse them all.
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
        )
    except (ValueError, TypeError, ImportError, httpx.InvalidURL) as exc:
        raise ConfigError(
            f"cannot use proxy {safe_text(proxy, 200)}: {safe_text(exc, 200)}: "
            "give an http://, https:// or socks5:// proxy URL"
        ) from None


def _ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    if ca_bundle is None:
        return ssl.create_default_context()
    try:
        # With cafile, only this bundle is trusted: right for a private CA or Pebble.
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot use the CA bundle {safe_text(ca_bundle, 300)}: "
            f"{safe_text(exc.strerror or exc, 200)}: give a readable PEM file as "
            "{ca_bundle}",
            settings=("ca_bundle",),
        ) from None
