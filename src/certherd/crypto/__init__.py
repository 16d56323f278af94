"""Pure cryptographic helpers on ``cryptography``: keys, CSRs, certificates and ARI.

Nothing here touches the network or the ACME wire layer. Bad keys and certificates raise
:class:`~certherd.errors.CryptoError`, bad user input :class:`~certherd.errors.ConfigError`
and an issued certificate that does not match its order
:class:`~certherd.errors.CertificateMismatchError`.
"""

import typing as _typing

from certherd import _lazy

__all__ = [
    "CertificateInfo",
    "KeyType",
    "PrivateKey",
    "PublicKey",
    "atomic_write",
    "b64url",
    "b64url_decode",
    "build_csr",
    "cert_to_pem",
    "certificate_id",
    "chain_to_pem",
    "csr_der",
    "csr_names",
    "describe_certificate",
    "generate_key",
    "key_type_of",
    "load_pem_chain",
    "load_private_key",
    "load_private_key_file",
    "pick_in_window",
    "private_key_to_pem",
    "public_key_equal",
    "verify_issued",
    "write_private_key",
]

if _typing.TYPE_CHECKING:
    from certherd.crypto.ari import certificate_id, pick_in_window
    from certherd.crypto.certs import (
        CertificateInfo,
        cert_to_pem,
        chain_to_pem,
        describe_certificate,
        load_pem_chain,
        verify_issued,
    )
    from certherd.crypto.csr import build_csr, csr_der, csr_names
    from certherd.crypto.encoding import b64url, b64url_decode
    from certherd.crypto.files import atomic_write
    from certherd.crypto.keys import (
        KeyType,
        PrivateKey,
        PublicKey,
        generate_key,
        key_type_of,
        load_private_key,
        load_private_key_file,
        private_key_to_pem,
        public_key_equal,
        write_private_key,
    )
else:
    __getattr__ = _lazy.exports_getattr(__name__)  # the imports above, on first use
