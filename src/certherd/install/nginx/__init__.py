"""The nginx installer (issue 13): http-01 through the running nginx, TLS for a lineage
in the matched server blocks, safe edits (nginx's own test, byte-for-byte restore) and
graceful reloads. Needs crossplane: ``pip install 'certherd[nginx]'``. See
docs/installers.md.
"""

import typing as _typing

from certherd import _lazy

__all__ = ["NginxConfig", "NginxInstaller", "ServerBlock", "match_server", "read_config"]

if _typing.TYPE_CHECKING:
    from certherd.install.nginx.installer import NginxInstaller
    from certherd.install.nginx.parse import NginxConfig, ServerBlock, match_server, read_config
else:
    __getattr__ = _lazy.exports_getattr(__name__)  # the imports above, on first use
