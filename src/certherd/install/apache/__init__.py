"""The Apache installer (issue 13): http-01 through the running Apache, a TLS copy of
the matched vhost per lineage (``NAME-certherd.conf``, enabled as ``a2ensite`` does),
``a2enmod ssl``, safe edits (Apache's own config test, byte-for-byte restore) and
graceful restarts. See docs/installers.md.
"""

import typing as _typing

from certherd import _lazy

__all__ = ["ApacheConfig", "ApacheInstaller", "VirtualHost", "match_vhost", "read_config"]

if _typing.TYPE_CHECKING:
    from certherd.install.apache.installer import ApacheInstaller
    from certherd.install.apache.parse import ApacheConfig, VirtualHost, match_vhost, read_config
else:
    __getattr__ = _lazy.exports_getattr(__name__)  # the imports above, on first use
