"""Challenge solvers: prove control of identifiers (RFC 8555 §8)."""

from certherd.challenges.base import ChallengeTask, Solver, check_token
from certherd.challenges.http01 import Http01StandaloneSolver, parse_listen_address

__all__ = [
    "ChallengeTask",
    "Http01StandaloneSolver",
    "Solver",
    "check_token",
    "parse_listen_address",
]
