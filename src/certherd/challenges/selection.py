"""Which solvers may prove which identifier: an ordered list of (pattern, solver) rules.

A pattern is one of:

- ``"*"``: every identifier (the default rule; put it last);
- ``"*.example.com"``: the names one label below ``example.com`` -- ``www.example.com``
  and the wildcard identifier ``*.example.com`` itself, as a wildcard certificate
  covers them (not ``example.com``, not ``a.b.example.com``);
- an exact name or IP address (``example.com``, ``192.0.2.1``, ``*.example.com`` is
  already taken by the form above);
- a predicate ``Callable[[Identifier], bool]`` for anything else.

Names compare as :class:`Identifier` values do: case and a trailing dot do not matter.
:meth:`SolverChoice.candidates` returns the solver of every matching rule, in rule
order, without duplicates, and only solvers whose ``supports`` accepts the identifier.
The order flow then takes the first candidate whose challenge type the CA offers, so a
specific rule wins over the default, and later rules are fallbacks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from certherd.acme.messages import Identifier
from certherd.challenges.base import Solver
from certherd.errors import ConfigError

__all__ = ["Pattern", "Rule", "SolverChoice"]

Pattern = str | Callable[[Identifier], bool]
"""``"*"``, ``"*.example.com"``, an exact name or address, or a predicate."""

DEFAULT = "*"


def _normalize(name: str) -> str:
    return Identifier.parse(name).value


@dataclass(frozen=True)
class Rule:
    """One rule: identifiers matching ``pattern`` may be proven by ``solver``."""

    pattern: Pattern
    solver: Solver

    def __post_init__(self) -> None:
        if callable(self.pattern):
            return
        text = self.pattern.strip()
        if not text:
            raise ConfigError("solver rule: the pattern is empty; use '*' for every name")
        if text == DEFAULT:
            return
        suffix = text[2:] if text.startswith("*.") else text
        if "*" in suffix or not suffix.strip("."):
            raise ConfigError(
                f"solver rule {self.pattern!r}: write an exact name, '*.example.com' or '*'"
            )

    def matches(self, identifier: Identifier) -> bool:
        """Whether ``identifier`` falls under this rule's pattern."""
        if callable(self.pattern):
            return bool(self.pattern(identifier))
        text = self.pattern.strip()
        if text == DEFAULT:
            return True
        if text.startswith("*."):
            if identifier.type != "dns":
                return False
            label, _, parent = identifier.value.partition(".")
            return bool(label) and parent == _normalize(text[2:])
        return identifier.value == _normalize(text)


class SolverChoice:
    """Maps identifiers to the solvers that may prove them (see the module docstring).

    Immutable after construction; safe to share between concurrent orders.
    """

    def __init__(self, rules: Iterable[tuple[Pattern, Solver] | Rule]) -> None:
        self.rules: tuple[Rule, ...] = tuple(
            rule if isinstance(rule, Rule) else Rule(*rule) for rule in rules
        )

    @classmethod
    def simple(
        cls, default: Sequence[Solver], wildcard: Sequence[Solver] | None = None
    ) -> SolverChoice:
        """``default`` for every identifier; wildcard identifiers use ``wildcard`` instead
        when it is given (e.g. a dns-01 provider just for them)."""
        if wildcard is None:
            return cls((DEFAULT, solver) for solver in default)
        return cls(
            [(_is_wildcard, solver) for solver in wildcard]
            + [(_is_not_wildcard, solver) for solver in default]
        )

    @classmethod
    def of(cls, solvers: Sequence[Solver] | SolverChoice) -> SolverChoice:
        """``solvers`` as a choice: a plain sequence means "these, in order, for everyone"."""
        if isinstance(solvers, SolverChoice):
            return solvers
        return cls((DEFAULT, solver) for solver in solvers)

    @property
    def solvers(self) -> tuple[Solver, ...]:
        """Every solver of the rules, in rule order, each once."""
        return _unique(rule.solver for rule in self.rules)

    def preflight(self) -> None:
        """Let each solver that can check its setup before an order (a ``preflight()``
        method, such as a webroot that must exist) do so: a mistake found here costs no
        order and no failed validation (which CAs rate-limit)."""
        for solver in self.solvers:
            check = getattr(solver, "preflight", None)
            if callable(check):
                check()

    def candidates(self, identifier: Identifier) -> list[Solver]:
        """The solvers to try for ``identifier``, best first (may be empty)."""
        matching = (rule.solver for rule in self.rules if rule.matches(identifier))
        return [solver for solver in _unique(matching) if solver.supports(identifier)]

    def __repr__(self) -> str:
        rules = ", ".join(f"{rule.pattern!r}: {rule.solver!r}" for rule in self.rules)
        return f"SolverChoice({rules})"


def _unique(solvers: Iterable[Solver]) -> tuple[Solver, ...]:
    seen: set[int] = set()
    result: list[Solver] = []
    for solver in solvers:
        if id(solver) not in seen:
            seen.add(id(solver))
            result.append(solver)
    return tuple(result)


def _is_wildcard(identifier: Identifier) -> bool:
    """Predicate: a wildcard identifier (``*.example.com``)."""
    return identifier.is_wildcard


def _is_not_wildcard(identifier: Identifier) -> bool:
    """Predicate: anything but a wildcard identifier."""
    return not identifier.is_wildcard
