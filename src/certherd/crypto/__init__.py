"""Pure cryptographic helpers on ``cryptography``: keys, CSRs, certificates and ARI.

Nothing here touches the network or the ACME wire layer. Bad keys and certificates raise
:class:`~certherd.errors.CryptoError`, bad user input :class:`~certherd.errors.ConfigError`
and an issued certificate that does not match its order
:class:`~certherd.errors.CertificateMismatchError`.
"""

import typing as _typing

from certherd import _lazy

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

# Loaded on first use, so importing one submodule does not import them all.
_EXPORTS: dict[str, str] = {
    "CertificateInfo": "certherd.crypto.certs",
    "KeyType": "certherd.crypto.keys",
    "PrivateKey": "certherd.crypto.keys",
    "PublicKey": "certherd.crypto.keys",
    "atomic_write": "certherd.crypto.files",
    "b64url": "certherd.crypto.encoding",
    "b64url_decode": "certherd.crypto.encoding",
    "build_csr": "certherd.crypto.csr",
    "cert_to_pem": "certherd.crypto.certs",
    "certificate_id": "certherd.crypto.ari",
    "chain_to_pem": "certherd.crypto.certs",
    "csr_der": "certherd.crypto.csr",
    "csr_names": "certherd.crypto.csr",
    "describe_certificate": "certherd.crypto.certs",
    "generate_key": "certherd.crypto.keys",
    "key_type_of": "certherd.crypto.keys",
    "load_pem_chain": "certherd.crypto.certs",
    "load_private_key": "certherd.crypto.keys",
    "load_private_key_file": "certherd.crypto.keys",
    "pick_in_window": "certherd.crypto.ari",
    "private_key_to_pem": "certherd.crypto.keys",
    "public_key_equal": "certherd.crypto.keys",
    "verify_issued": "certherd.crypto.certs",
    "write_private_key": "certherd.crypto.keys",
}

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


if not _typing.TYPE_CHECKING:
    # Hidden from type checkers: a module __getattr__ would make any misspelt import
    # (``from certherd.acme import AcmeClinet``) an Any instead of an error.
    __getattr__ = _lazy.exports_getattr(__name__, _EXPORTS)
