"""Logging for the ``certherd`` command. The library only logs (a logger per module,
``logging.getLogger(__name__)``); the command alone decides what is shown, here.

Without ``-v``, warnings (such as waiting for another certherd's lock) and errors;
``-q`` only errors; ``-v`` adds each ACME request (method, URL, status, problem type,
time), challenge steps and propagation checks; ``-vv`` adds request and response
headers, credential-like ones redacted, and the protected header of each JWS (never its
payload or signature). Everything goes to stderr, so stdout stays one JSON document
with ``--json``.
"""

from __future__ import annotations

import logging
import re
import sys

__all__ = ["configure_logging", "level_for"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_PRIVATE_KEY = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
    re.DOTALL,
)


def level_for(verbose: int, quiet: bool) -> int:
    if quiet:
        return logging.ERROR
    return {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)


class _Formatter(logging.Formatter):
    """One line per record; CA text cannot move the cursor or forge lines, and a private
    key that reached a message by mistake is cut out (the library never logs one)."""

    def __init__(self, verbose: bool) -> None:
        super().__init__(datefmt="%H:%M:%S")
        self.verbose = verbose

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        text = _CONTROL.sub("?", _PRIVATE_KEY.sub(r"<\1private key redacted>", record.message))
        if self.verbose:
            name = record.name.removeprefix("certherd.")
            stamp = f"{self.formatTime(record, self.datefmt)}.{int(record.msecs):03d}"
            return f"{stamp} {name}: {text}"
        return f"certherd: {record.levelname.lower()}: {text}"

    def format(self, record: logging.LogRecord) -> str:
        # The message is one line (above); a traceback that follows keeps its lines.
        return _PRIVATE_KEY.sub(r"<\1private key redacted>", super().format(record))


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is now (a live progress display may hold it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def configure_logging(verbose: int, quiet: bool) -> None:
    """Show certherd's log records on stderr at the level the options ask (idempotent)."""
    logger = logging.getLogger("certherd")
    for handler in list(logger.handlers):
        if isinstance(handler, _StderrHandler):
            logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(_Formatter(verbose=verbose > 0 and not quiet))
    logger.addHandler(handler)
    logger.setLevel(level_for(verbose, quiet))
    logger.propagate = False
