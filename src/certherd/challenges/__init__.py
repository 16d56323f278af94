"""Challenge solvers: prove control of identifiers (RFC 8555 §8, RFC 8737, RFC 8738)."""

import typing as _typing

from certherd import _lazy

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
else:
    __getattr__ = _lazy.exports_getattr(__name__)  # the imports above, on first use
