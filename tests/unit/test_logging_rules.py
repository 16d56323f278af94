"""Logging rules: a logger per module, lazy %-formatting, only the CLI configures, and the
CLI's formatter keeps CA text to one line and never prints a private key."""

from __future__ import annotations

import ast
import importlib
import logging
import pkgutil
from pathlib import Path

import pytest

import certherd
from certherd.cli.logs import configure_logging, level_for

SOURCE = Path(certherd.__file__).parent
LEVELS = {"debug", "info", "warning", "error", "exception", "critical", "log"}


def _modules() -> list[Path]:
    return sorted(SOURCE.rglob("*.py"))


def _logging_calls(tree: ast.AST) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in LEVELS
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in ("log", "logger", "logging")
    ]


def test_every_logger_is_named_after_its_module() -> None:
    for path in _modules():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "getLogger"
                and path.parent.name != "cli"
            ):
                args = [ast.unparse(a) for a in node.args]
                if path.relative_to(SOURCE).as_posix() in HEARD_FOR_ONE_CALL and args == [
                    "'apprise'"
                ]:
                    continue  # apprise's own logger, heard for one call
                assert [ast.unparse(a) for a in node.args] == ["__name__"], (
                    f"{path}:{node.lineno}: use logging.getLogger(__name__)"
                )


def test_log_messages_are_formatted_lazily() -> None:
    """The message is a constant with %-placeholders: nothing is built when disabled."""
    found = 0
    for path in _modules():
        for call in _logging_calls(ast.parse(path.read_text(), str(path))):
            found += 1
            message = call.args[1 if call.func.attr == "log" else 0]  # type: ignore[attr-defined]
            hint = (
                f"{path}:{call.lineno}: pass a constant message and its arguments "
                "(log.info('%s', value)), not an f-string or a formatted string"
            )
            assert isinstance(message, ast.Constant), hint
            assert isinstance(message.value, str), hint
    assert found >= 10


HEARD_FOR_ONE_CALL = {"manager/notify.py": 1}
"""Modules that put a handler on a logger for the length of one call and take it off
again (apprise's reason for a failed target, heard from its logger), with how many."""


def test_the_library_does_not_configure_logging() -> None:
    for path in _modules():
        if path.parent.name == "cli":
            continue
        text = path.read_text()
        for forbidden in ("basicConfig", "setLevel(", "logging.root", "dictConfig"):
            assert forbidden not in text, f"{path}: the library must not configure logging"
        heard = HEARD_FOR_ONE_CALL.get(path.relative_to(SOURCE).as_posix(), 0)
        assert text.count("addHandler(") == heard, f"{path}: the library must not add handlers"
        assert text.count("removeHandler(") == heard, f"{path}: a handler added is taken off"
    # Other tests may have run the CLI in this process (its handler stays): compare.
    root_handlers = list(logging.getLogger().handlers)
    certherd_handlers = list(logging.getLogger("certherd").handlers)
    for info in pkgutil.walk_packages([str(SOURCE)], "certherd."):
        if not info.name.startswith("certherd.cli"):
            importlib.import_module(info.name)
    assert logging.getLogger("certherd").handlers == certherd_handlers
    assert logging.getLogger().handlers == root_handlers


@pytest.mark.parametrize(
    ("verbose", "quiet", "level"),
    [
        (0, False, logging.WARNING),
        (1, False, logging.INFO),
        (2, False, logging.DEBUG),
        (3, False, logging.DEBUG),
        (2, True, logging.ERROR),
    ],
)
def test_levels(verbose: int, quiet: bool, level: int) -> None:
    assert level_for(verbose, quiet) == level


def test_the_cli_formatter_cuts_keys_and_control_characters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(1, False)
    try:
        log = logging.getLogger("certherd.acme.test")
        key = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBsecretsecret\n-----END EC PRIVATE KEY-----"
        log.info("oops %s", key)
        log.info("detail from the CA: %s", "evil\x1b[2J\rforged line\nsecond")
        log.debug("not shown at -v")
        err = capsys.readouterr().err
    finally:
        logger = logging.getLogger("certherd")
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
    assert "MHcCAQEEIBsecretsecret" not in err
    assert "<EC private key redacted>" in err
    assert "\x1b" not in err
    assert "\r" not in err
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].endswith("acme.test: oops <EC private key redacted>")
    assert lines[1].endswith("acme.test: detail from the CA: evil?[2J?forged line?second")


def test_headers_are_redacted_by_name() -> None:
    from certherd.acme.transport import redact_headers

    shown = redact_headers(
        {
            "Authorization": "Bearer abc123",
            "Proxy-Authorization": "Basic dXNlcjpwYXNz",
            "Cookie": "session=s3cr3t",
            "X-Api-Key": "k3y",
            "X-Auth-Token": "t0k3n",
            "Replay-Nonce": "nonce-is-public",
            "Content-Type": "application/jose+json",
        }
    )
    for secret in ("abc123", "dXNlcjpwYXNz", "s3cr3t", "k3y", "t0k3n"):
        assert secret not in shown
    assert shown.count("<redacted>") == 5
    assert "Replay-Nonce: nonce-is-public" in shown
    assert "Content-Type: application/jose+json" in shown


def test_a_jws_is_described_by_its_protected_header_only() -> None:
    import base64
    import json

    def b64(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    from certherd.acme.transport import _describe_jws

    eab = {"protected": b64({"alg": "HS256"}), "payload": "cHVi", "signature": "TUFDLXNlY3JldA"}
    body = {
        "protected": b64({"alg": "ES256", "jwk": {"kty": "EC", "x": "X", "y": "Y"}, "nonce": "n"}),
        "payload": b64({"externalAccountBinding": eab, "contact": ["mailto:a@b.test"]}),
        "signature": "c2lnbmF0dXJlLWJ5dGVz",
    }
    shown = _describe_jws(json.dumps(body).encode())
    assert shown == (
        'JWS protected {"alg": "ES256", "jwk": "<EC public key>", "nonce": "n"}; '
        "payload and signature <redacted>"
    )
    assert _describe_jws(b"not json") == "body 8 bytes"
