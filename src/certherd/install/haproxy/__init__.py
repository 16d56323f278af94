"""The HAProxy installer (issue 13): a lineage's full chain and key as one PEM in a
``crt`` directory, renewals hot-swapped through the runtime API (``set ssl cert`` +
``commit ssl cert``, no reload), a graceful master-worker reload only without a runtime
socket; HAProxy's own test before and after every change, previous bytes restored on
failure. See docs/installers.md.
"""

import typing as _typing

from certherd import _lazy

__all__ = ["HaproxyConfig", "HaproxyInstaller", "RuntimeApi", "read_config"]

if _typing.TYPE_CHECKING:
    from certherd.install.haproxy.config import HaproxyConfig, read_config
    from certherd.install.haproxy.control import RuntimeApi
    from certherd.install.haproxy.installer import HaproxyInstaller
else:
    __getattr__ = _lazy.exports_getattr(__name__)  # the imports above, on first use
