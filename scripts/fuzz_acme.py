#!/usr/bin/env python3
"""Coverage-guided fuzzing of everything certherd parses from a CA (issue 9 item 6).

Not part of CI and not imported by the test suite (the property tests in
tests/unit/test_fuzz_ca.py are): a timed run with atheris (libFuzzer for Python) that
instruments certherd and httpx and feeds them bytes. Any exception that is not a
``CertherdError`` is a finding: libFuzzer stops, prints the traceback and writes the
input to ``crash-<sha1>``. An input that runs longer than ``--per-input`` seconds is a
hang and is reported the same way.

    pip install '.[fuzz]'                        # atheris: a manylinux wheel for CPython 3.11
    python scripts/fuzz_acme.py --minutes 5     # every target in turn, 5 min in all
    python scripts/fuzz_acme.py --target client --minutes 2 --corpus /tmp/corpus-client
    python scripts/fuzz_acme.py --target pem crash-0123abcd   # replay one finding

Targets:

- ``headers``: Retry-After, Link and Location parsing (RFC 9110 §10.2.3, RFC 8288).
- ``json``: Problem (RFC 8555 §6.7), Directory, Account, Order, Authorization,
  Challenge and RenewalInfo (RFC 9773) from one JSON body.
- ``pem``: a downloaded chain (RFC 8555 §7.4.2): load, describe, verify against an order.
- ``client``: a whole HTTP answer (status, headers, body) to one client operation,
  through httpx and certherd's transport, retries and polling, on a fake clock.

Each target starts from a seed corpus of honest documents, written to ``--corpus``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    import atheris  # type: ignore[import-untyped,unused-ignore]
except ImportError:  # pragma: no cover - a hint, not a test
    sys.exit("scripts/fuzz_acme.py needs atheris: pip install atheris (CPython 3.8-3.11)")

with atheris.instrument_imports(include=["certherd", "httpx", "email"]):
    import httpx

    from certherd.acme.client import AcmeClient
    from certherd.acme.messages import (
        Account,
        Authorization,
        Challenge,
        Directory,
        Order,
        RenewalInfo,
        UrlPolicy,
    )
    from certherd.acme.retry import PollPolicy, RetryPolicy, parse_retry_after
    from certherd.acme.transport import Response
    from certherd.crypto.certs import describe_certificate, load_pem_chain, verify_issued
    from certherd.errors import MAX_RETRY_AFTER, CertherdError, Problem

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

START = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
BASE = "https://ca.test"
URLS = UrlPolicy()

# -- fixtures: one key, one honest chain --------------------------------------------------


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


ISSUER_KEY = ec.generate_private_key(ec.SECP256R1())
LEAF_KEY = ec.generate_private_key(ec.SECP256R1())
ISSUER = (
    x509.CertificateBuilder()
    .subject_name(_name("Fuzz Intermediate"))
    .issuer_name(_name("Fuzz Intermediate"))
    .public_key(ISSUER_KEY.public_key())
    .serial_number(1)
    .not_valid_before(START - dt.timedelta(days=1))
    .not_valid_after(START + dt.timedelta(days=365))
    .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    .sign(ISSUER_KEY, hashes.SHA256())
)
LEAF = (
    x509.CertificateBuilder()
    .subject_name(_name("example.test"))
    .issuer_name(ISSUER.subject)
    .public_key(LEAF_KEY.public_key())
    .serial_number(2)
    .not_valid_before(START - dt.timedelta(hours=1))
    .not_valid_after(START + dt.timedelta(days=90))
    .add_extension(x509.SubjectAlternativeName([x509.DNSName("example.test")]), critical=False)
    .sign(ISSUER_KEY, hashes.SHA256())
)
CHAIN_PEM = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (LEAF, ISSUER))


def _problem_json() -> dict[str, Any]:
    return {
        "type": "urn:ietf:params:acme:error:compound",
        "detail": "two names failed",
        "status": 403,
        "subproblems": [
            {
                "type": "urn:ietf:params:acme:error:caa",
                "detail": "CAA forbids",
                "identifier": {"type": "dns", "value": "example.test"},
            }
        ],
    }


DIRECTORY = {
    "newNonce": BASE + "/new-nonce",
    "newAccount": BASE + "/new-account",
    "newOrder": BASE + "/new-order",
    "revokeCert": BASE + "/revoke-cert",
    "keyChange": BASE + "/key-change",
    "newAuthz": BASE + "/new-authz",
    "renewalInfo": BASE + "/renewal-info",
    "meta": {"termsOfService": BASE + "/terms", "profiles": {"classic": "the usual"}},
}
CHALLENGE = {"type": "http-01", "url": BASE + "/chall/1", "status": "valid", "token": "A" * 43}
AUTHORIZATION = {
    "identifier": {"type": "dns", "value": "example.test"},
    "status": "valid",
    "expires": "2025-06-08T12:00:00Z",
    "challenges": [CHALLENGE],
}
ORDER = {
    "status": "valid",
    "expires": "2025-06-08T12:00:00Z",
    "identifiers": [{"type": "dns", "value": "example.test"}],
    "authorizations": [BASE + "/authz/1"],
    "finalize": BASE + "/finalize/1",
    "certificate": BASE + "/cert/1",
}
RENEWAL_INFO = {
    "suggestedWindow": {"start": "2025-07-01T00:00:00Z", "end": "2025-07-02T00:00:00Z"},
    "explanationURL": BASE + "/why",
}

# -- targets ------------------------------------------------------------------------------------


def fuzz_headers(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    value = provider.ConsumeUnicodeNoSurrogates(provider.remaining_bytes())
    seconds = parse_retry_after(value, START)
    if seconds is not None and not 0 <= seconds <= MAX_RETRY_AFTER:
        raise AssertionError(f"Retry-After {seconds} outside [0, {MAX_RETRY_AFTER}]")
    raw = value.encode("utf-8", "surrogateescape")
    response = Response(BASE + "/x", 200, httpx.Headers([(b"link", raw), (b"location", raw)]), b"")
    try:
        for rel in ("next", "alternate"):
            for url in response.links(rel):
                URLS.check(url, "link")
        location = response.location
        if location is not None:
            URLS.check(location, "location")
    except CertherdError:
        pass


PARSERS: list[Callable[[Any], object]] = [
    Problem.from_json,
    lambda body: Directory.from_json(body, BASE + "/directory", URLS),
    lambda body: Account.from_json(body, BASE + "/acct/1", URLS),
    lambda body: Order.from_json(body, BASE + "/order/1", URLS),
    lambda body: Authorization.from_json(body, BASE + "/authz/1", URLS),
    lambda body: Challenge.from_json(body, URLS),
    lambda body: RenewalInfo.from_json(body, URLS, None),
]


def fuzz_json(data: bytes) -> None:
    if not data:
        return
    parser = PARSERS[data[0] % len(PARSERS)]
    response = Response(BASE + "/x", 200, httpx.Headers(), data[1:])
    try:
        value = parser(response.json())
        if isinstance(value, Problem):
            value.describe()
        if isinstance(value, RenewalInfo):
            _ = value.start + dt.timedelta(days=3650)
            _ = value.end - dt.timedelta(days=3650)
    except CertherdError:
        pass


def fuzz_pem(data: bytes) -> None:
    try:
        chain = load_pem_chain(data)
        for cert in chain:
            describe_certificate(cert)
        verify_issued(
            chain,
            public_key=LEAF_KEY.public_key(),
            dns_names=["example.test"],
            ip_addresses=[],
            now=START,
        )
    except CertherdError:
        return
    # Accepted: check what that means without certherd's code (raises if it is wrong).
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    leaf = chain[0]
    if leaf.public_key().public_bytes(der, spki) != LEAF_KEY.public_key().public_bytes(der, spki):
        raise AssertionError("accepted a certificate for another key")
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    # DNS names compare without case (RFC 4343); certherd checks the same way.
    if [name.lower() for name in names.get_values_for_type(x509.DNSName)] != ["example.test"]:
        raise AssertionError("accepted a certificate for other names")
    if not leaf.not_valid_before_utc <= START <= leaf.not_valid_after_utc:
        raise AssertionError("accepted a certificate outside its validity")
    # A chain of the leaf alone is allowed (RFC 8555 §7.4.2: intermediates MAY follow),
    # and then no signature can be checked here: trust is the TLS stack's to judge.
    for child, issuer in itertools.pairwise(chain):
        child.verify_directly_issued_by(issuer)


class _FakeClock:
    def __init__(self) -> None:
        self.elapsed = 0.0

    def now(self) -> dt.datetime:
        return START + dt.timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        return self.elapsed

    async def sleep(self, seconds: float) -> None:
        self.elapsed += max(0.0, seconds)
        await asyncio.sleep(0)


OPERATIONS = ["directory", "new_order", "fetch_order", "wait_order", "authorization", "cert", "ari"]


def fuzz_client(data: bytes) -> None:
    """One client operation; the answer to its target URL is the fuzzer's."""
    provider = atheris.FuzzedDataProvider(data)
    operation = OPERATIONS[provider.ConsumeIntInRange(0, len(OPERATIONS) - 1)]
    status = provider.ConsumeIntInRange(100, 599)
    header_count = provider.ConsumeIntInRange(0, 4)
    names = [b"retry-after", b"link", b"location", b"content-type", b"content-encoding"]
    headers = [
        (names[provider.ConsumeIntInRange(0, len(names) - 1)], provider.ConsumeBytes(40))
        for _ in range(header_count)
    ]
    body = provider.ConsumeBytes(provider.remaining_bytes())
    target = {
        "directory": "/directory",
        "new_order": "/new-order",
        "fetch_order": "/order/1",
        "wait_order": "/order/1",
        "authorization": "/authz/1",
        "cert": "/cert/1",
        "ari": "/renewal-info/",
    }[operation]
    nonces = iter(range(1 << 30))

    def handler(request: httpx.Request) -> httpx.Response:
        nonce = [(b"replay-nonce", f"n{next(nonces)}".encode())]
        path = request.url.path
        if path == target or (target.endswith("/") and path.startswith(target)):

            async def stream() -> Any:
                yield body

            return httpx.Response(status, headers=headers + nonce, content=stream())
        if path == "/directory":
            return httpx.Response(200, json=DIRECTORY, headers=nonce)
        if path == "/new-nonce":
            return httpx.Response(200, headers=nonce)
        return httpx.Response(200, json=ORDER, headers=nonce)

    async def run() -> None:
        clock = _FakeClock()
        client = AcmeClient(
            BASE + "/directory",
            LEAF_KEY,
            account_url=BASE + "/acct/1",
            clock=clock,
            retry=RetryPolicy(),
            poll=PollPolicy(timeout=60),
            http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        )
        async with client:
            try:
                if operation == "directory":
                    await client.directory()
                elif operation == "new_order":
                    await client.new_order(["example.test"])
                elif operation == "fetch_order":
                    await client.fetch_order(BASE + "/order/1")
                elif operation == "wait_order":
                    await client.wait_order(BASE + "/order/1")
                elif operation == "authorization":
                    await client.wait_authorization(BASE + "/authz/1")
                elif operation == "cert":
                    chain = await client.download_certificate(BASE + "/cert/1")
                    client.verify_chain(chain, LEAF_KEY.public_key(), [])
                else:
                    leaf_with_aki = _leaf_with_aki()
                    info = await client.renewal_info(leaf_with_aki)
                    _ = info.start + dt.timedelta(days=3650)
            except CertherdError:
                pass
        bound = RetryPolicy().total_budget + 60 + 60
        if clock.elapsed > bound:
            raise AssertionError(f"fake time {clock.elapsed} s past the {bound} s budget")

    asyncio.run(run())


_AKI_LEAF: list[x509.Certificate] = []


def _leaf_with_aki() -> x509.Certificate:
    if not _AKI_LEAF:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ISSUER_KEY.public_key())
        _AKI_LEAF.append(
            x509.CertificateBuilder()
            .subject_name(_name("example.test"))
            .issuer_name(ISSUER.subject)
            .public_key(LEAF_KEY.public_key())
            .serial_number(3)
            .not_valid_before(START - dt.timedelta(hours=1))
            .not_valid_after(START + dt.timedelta(days=90))
            .add_extension(aki, critical=False)
            .sign(ISSUER_KEY, hashes.SHA256())
        )
    return _AKI_LEAF[0]


TARGETS: dict[str, Callable[[bytes], None]] = {
    "headers": fuzz_headers,
    "json": fuzz_json,
    "pem": fuzz_pem,
    "client": fuzz_client,
}


def seeds(target: str) -> list[bytes]:
    """Honest documents (and a few known-hostile ones) to start the target from."""
    if target == "headers":
        return [
            b"120",
            b"9" * 400,
            b"Fri, 31 Dec 9999 23:59:59 GMT",
            b'<https://ca.test/orders/2>;rel="next", <https://ca.test/alt/1>; rel=alternate',
        ]
    if target == "json":
        documents = [_problem_json(), DIRECTORY, {"status": "valid"}, ORDER, AUTHORIZATION]
        documents += [CHALLENGE, RENEWAL_INFO]
        return [bytes([index]) + json.dumps(doc).encode() for index, doc in enumerate(documents)]
    if target == "pem":
        return [CHAIN_PEM, CHAIN_PEM[: len(CHAIN_PEM) // 2]]
    out = []
    for index, document in enumerate([DIRECTORY, ORDER, ORDER, ORDER, AUTHORIZATION]):
        out.append(bytes([index, 0, 200, 0]) + json.dumps(document).encode())
    out.append(bytes([5, 0, 200, 0]) + CHAIN_PEM)
    out.append(bytes([6, 0, 200, 0]) + json.dumps(RENEWAL_INFO).encode())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=[*TARGETS, "all"], default="all")
    parser.add_argument("--minutes", type=float, default=5.0, help="in all (default 5)")
    parser.add_argument("--per-input", type=int, default=10, help="seconds before a hang")
    parser.add_argument("--corpus", type=Path, help="corpus folder (default: a temp folder)")
    parser.add_argument("inputs", nargs="*", help="replay these inputs instead of fuzzing")
    args = parser.parse_args()
    targets = list(TARGETS) if args.target == "all" else [args.target]
    if args.inputs:
        for target in targets:
            for path in args.inputs:
                TARGETS[target](Path(path).read_bytes())
        print(f"replayed {len(args.inputs)} input(s): no finding")
        return
    seconds = max(1, int(args.minutes * 60 / len(targets)))
    if len(targets) > 1:
        # libFuzzer runs one target per process: run each in a child for its share.
        for target in targets:
            command = [sys.executable, __file__, "--target", target, "--minutes", str(seconds / 60)]
            command += ["--per-input", str(args.per_input)]
            if args.corpus:
                command += ["--corpus", str(args.corpus / target)]
            print(f"== {target}: {seconds} s", flush=True)
            started = time.monotonic()
            code = subprocess.call(command)
            print(f"== {target}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
        return
    target = targets[0]
    corpus = args.corpus or Path(tempfile.mkdtemp(prefix=f"certherd-fuzz-{target}-"))
    corpus.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(seeds(target)):
        (corpus / f"seed-{index}").write_bytes(seed)
    libfuzzer = [
        sys.argv[0],
        f"-max_total_time={seconds}",
        f"-timeout={args.per_input}",
        "-rss_limit_mb=3072",
        "-max_len=65536",
        "-print_final_stats=1",
        str(corpus),
    ]
    atheris.Setup(libfuzzer, TARGETS[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
