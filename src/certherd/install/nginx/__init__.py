"""The nginx installer (issue 13): http-01 through the running nginx, TLS for a lineage
in the matched server blocks, safe edits (nginx's own test, byte-for-byte restore) and
graceful reloads. Needs crossplane: ``pip install 'certherd[nginx]'``. See
docs/installers.md.
"""

import typing as _typing

from certherd import _lazy

if _typing.TYPE_CHECKING:
    from certherd.install.nginx.installer import NginxInstaller
    from certherd.install.nginx.parse import NginxConfig, ServerBlock, match_server, read_config

_EXPORTS: dict[str, str] = {
    "NginxInstaller": "certherd.install.nginx.installer",
    "NginxConfig": "certherd.install.nginx.parse",
    "ServerBlock": "certherd.install.nginx.parse",
    "match_server": "certherd.install.nginx.parse",
    "read_config": "certherd.install.nginx.parse",
}

__all__ = ["NginxConfig", "NginxInstaller", "ServerBlock", "match_server", "read_config"]


if not _typing.TYPE_CHECKING:
    __getattr__ = _lazy.exports_getattr(__name__, _EXPORTS)
