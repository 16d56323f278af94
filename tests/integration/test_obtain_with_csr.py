"""obtain_certificate with a CSR the caller built (issue 11 item 11), against real Pebble.

The key never reaches certherd (as with a key in an HSM): the CSR is sent as it is, the
issued certificate is checked against the CSR's key and the order's names.
"""

from __future__ import annotations

import pytest
from acme_helpers import WireRecorder, http_solver, registered, unique_name
from cryptography import x509

from certherd.crypto.certs import describe_certificate
from certherd.crypto.csr import build_csr
from certherd.crypto.keys import KeyType, generate_key
from certherd.errors import ConfigError
from certherd.manager import IssuedCertificate, IssuedChain, obtain_certificate
from certherd.testing.pebble import PebbleServer

pytestmark = pytest.mark.integration

MUST_STAPLE = x509.TLSFeature([x509.TLSFeatureType.status_request])


async def test_obtain_with_a_caller_built_csr(pebble: PebbleServer) -> None:
    names = [unique_name("csr-a"), unique_name("csr-b")]
    key = generate_key(KeyType.RSA2048)  # stays with the caller
    csr = build_csr(key, names, extensions=[(MUST_STAPLE, False)])
    async with registered(pebble) as client:
        issued = await obtain_certificate(client, names, [http_solver(pebble)], csr=csr)
    assert isinstance(issued, IssuedChain)
    assert not isinstance(issued, IssuedCertificate)
    assert not hasattr(issued, "key")
    leaf = issued.chain.leaf
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
    assert sorted(describe_certificate(leaf).dns_names) == sorted(names)


async def test_a_csr_for_other_names_is_refused_before_any_order(pebble: PebbleServer) -> None:
    name, other = unique_name("csr-mine"), unique_name("csr-other")
    csr = build_csr(generate_key(KeyType.EC256), [name, other])
    recorder = WireRecorder()
    async with registered(pebble, http_client=recorder.http_client(pebble)) as client:
        new_order = (await client.directory()).new_order
        with pytest.raises(ConfigError, match=f"it lacks nothing and adds {other}"):
            await obtain_certificate(client, [name], [http_solver(pebble)], csr=csr)
        with pytest.raises(ConfigError, match="not both"):
            await obtain_certificate(
                client, [name, other], [], csr=csr, key=generate_key(KeyType.EC256)
            )
    assert recorder.created(new_order) == []
