"""Challenge solvers: prove control of identifiers (RFC 8555 §8)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from certherd.challenges.base import ChallengeTask, Solver, check_token
    from certherd.challenges.http01 import Http01StandaloneSolver, parse_listen_address

# Loaded on first use, so importing one submodule does not import them all.
_EXPORTS: dict[str, str] = {
    "ChallengeTask": "certherd.challenges.base",
    "Http01StandaloneSolver": "certherd.challenges.http01",
    "Solver": "certherd.challenges.base",
    "check_token": "certherd.challenges.base",
    "parse_listen_address": "certherd.challenges.http01",
}

__all__ = [
    "ChallengeTask",
    "Http01StandaloneSolver",
    "Solver",
    "check_token",
    "parse_listen_address",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
