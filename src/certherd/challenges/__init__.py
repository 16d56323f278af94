"""Challenge solvers: prove control of identifiers (RFC 8555 §8, RFC 8737, RFC 8738)."""

import typing as _typing

from certherd import _lazy

if _typing.TYPE_CHECKING:
    from certherd.acme.messages import DNS_01, HTTP_01, TLS_ALPN_01
    from certherd.challenges.base import ChallengeTask, Solver, check_token
    from certherd.challenges.dns01 import (
        Dns01Handle,
        Dns01Solver,
        dns01_record_name,
        dns01_txt_value,
    )
    from certherd.challenges.factory import SolverPool
    from certherd.challenges.hook import HookSolver, hook_environment
    from certherd.challenges.http01 import Http01StandaloneSolver, parse_listen_address
    from certherd.challenges.propagation import PropagationChecker
    from certherd.challenges.selection import Rule, SolverChoice
    from certherd.challenges.spec import SolverSpec
    from certherd.challenges.tlsalpn01 import TlsAlpn01Solver
    from certherd.challenges.webroot import WebrootSolver

# Loaded on first use, so importing one submodule does not import them all.
_EXPORTS: dict[str, str] = {
    "DNS_01": "certherd.acme.messages",
    "HTTP_01": "certherd.acme.messages",
    "TLS_ALPN_01": "certherd.acme.messages",
    "ChallengeTask": "certherd.challenges.base",
    "Dns01Handle": "certherd.challenges.dns01",
    "Dns01Solver": "certherd.challenges.dns01",
    "HookSolver": "certherd.challenges.hook",
    "Http01StandaloneSolver": "certherd.challenges.http01",
    "PropagationChecker": "certherd.challenges.propagation",
    "Rule": "certherd.challenges.selection",
    "Solver": "certherd.challenges.base",
    "SolverChoice": "certherd.challenges.selection",
    "SolverPool": "certherd.challenges.factory",
    "SolverSpec": "certherd.challenges.spec",
    "TlsAlpn01Solver": "certherd.challenges.tlsalpn01",
    "WebrootSolver": "certherd.challenges.webroot",
    "check_token": "certherd.challenges.base",
    "dns01_record_name": "certherd.challenges.dns01",
    "dns01_txt_value": "certherd.challenges.dns01",
    "hook_environment": "certherd.challenges.hook",
    "parse_listen_address": "certherd.challenges.http01",
}

__all__ = [
    "DNS_01",
    "HTTP_01",
    "TLS_ALPN_01",
    "ChallengeTask",
    "Dns01Handle",
    "Dns01Solver",
    "HookSolver",
    "Http01StandaloneSolver",
    "PropagationChecker",
    "Rule",
    "Solver",
    "SolverChoice",
    "SolverPool",
    "SolverSpec",
    "TlsAlpn01Solver",
    "WebrootSolver",
    "check_token",
    "dns01_record_name",
    "dns01_txt_value",
    "hook_environment",
    "parse_listen_address",
]


if not _typing.TYPE_CHECKING:
    # Hidden from type checkers: a module __getattr__ would make any misspelt import
    # (``from certherd.acme import AcmeClinet``) an Any instead of an error.
    __getattr__ = _lazy.exports_getattr(__name__, _EXPORTS)
