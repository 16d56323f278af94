"""Moving to certherd from another client: adopting a Certbot configuration (its lineages,
every archived version, renewal settings, hooks and ACME account) into certherd storage.

:func:`import_certbot` does the whole import (or a dry run); :mod:`certbot_conf` reads
Certbot's renewal files and JWK account keys. Sits above :mod:`certherd.manager`.
"""

import typing as _typing

from certherd import _lazy

__all__ = ["ImportResult", "import_certbot"]

if _typing.TYPE_CHECKING:
    from certherd.migrate.certbot_import import ImportResult, import_certbot
else:
    __getattr__ = _lazy.exports_getattr(__name__)  # the imports above, on first use
