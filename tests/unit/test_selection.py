"""SolverChoice: which solvers may prove which identifier, in which order."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pytest

from certherd.acme.messages import Identifier
from certherd.challenges.base import ChallengeTask, Solver
from certherd.challenges.selection import Rule, SolverChoice
from certherd.errors import ConfigError


@dataclass(eq=False)
class FakeSolver:
    """A solver that only names itself; wildcards only for dns-01, IPs not for dns-01."""

    name: str
    challenge_type: str = "http-01"

    def supports(self, identifier: Identifier) -> bool:
        if self.challenge_type == "dns-01":
            return identifier.type == "dns"
        return not identifier.is_wildcard

    async def present(self, task: ChallengeTask) -> object:
        return None

    async def cleanup(self, handle: object) -> None:
        return None


WEBROOT = FakeSolver("webroot")
STANDALONE = FakeSolver("standalone")
DNS = FakeSolver("dns", "dns-01")
OTHER_DNS = FakeSolver("other-dns", "dns-01")


def names(solvers: Iterable[Solver]) -> list[str]:
    result = []
    for solver in solvers:
        assert isinstance(solver, FakeSolver)
        result.append(solver.name)
    return result


def dns(name: str) -> Identifier:
    return Identifier.dns(name)


def test_rules_in_order_every_match_contributes() -> None:
    choice = SolverChoice(
        [
            ("www.example.test", WEBROOT),
            ("*.internal.test", DNS),
            ("*", STANDALONE),
        ]
    )
    assert names(choice.candidates(dns("www.example.test"))) == ["webroot", "standalone"]
    assert names(choice.candidates(dns("api.internal.test"))) == ["dns", "standalone"]
    assert names(choice.candidates(dns("other.test"))) == ["standalone"]


def test_wildcard_pattern_is_one_label_and_covers_the_wildcard_identifier() -> None:
    choice = SolverChoice([("*.example.test", DNS)])
    assert names(choice.candidates(dns("*.example.test"))) == ["dns"]
    assert names(choice.candidates(dns("www.example.test"))) == ["dns"]
    assert choice.candidates(dns("example.test")) == []
    assert choice.candidates(dns("a.b.example.test")) == []
    assert choice.candidates(dns("wwwexample.test")) == []
    assert choice.candidates(Identifier.ip("127.0.0.1")) == []


def test_exact_names_compare_like_identifiers() -> None:
    choice = SolverChoice([("WWW.Example.TEST.", WEBROOT), ("2001:DB8:0::0:1", STANDALONE)])
    assert names(choice.candidates(dns("www.example.test"))) == ["webroot"]
    assert names(choice.candidates(Identifier.ip("2001:db8::1"))) == ["standalone"]
    assert choice.candidates(dns("example.test")) == []


def test_predicates_and_rule_objects() -> None:
    choice = SolverChoice(
        [
            Rule(lambda identifier: identifier.type == "ip", STANDALONE),
            (lambda identifier: identifier.value.endswith(".lan"), WEBROOT),
        ]
    )
    assert names(choice.candidates(Identifier.ip("192.0.2.1"))) == ["standalone"]
    assert names(choice.candidates(dns("printer.lan"))) == ["webroot"]
    assert choice.candidates(dns("printer.test")) == []


def test_solvers_that_cannot_prove_the_identifier_are_left_out() -> None:
    choice = SolverChoice([("*", STANDALONE), ("*", DNS)])
    assert names(choice.candidates(dns("*.example.test"))) == ["dns"]
    assert names(choice.candidates(Identifier.ip("127.0.0.1"))) == ["standalone"]


def test_a_solver_is_listed_once() -> None:
    choice = SolverChoice([("a.test", DNS), ("*.test", STANDALONE), ("*", DNS)])
    assert names(choice.candidates(dns("a.test"))) == ["dns", "standalone"]
    assert names(choice.solvers) == ["dns", "standalone"]


def test_simple_without_wildcard_solvers() -> None:
    choice = SolverChoice.simple([STANDALONE, DNS])
    assert names(choice.candidates(dns("a.test"))) == ["standalone", "dns"]
    assert names(choice.candidates(dns("*.a.test"))) == ["dns"]


def test_simple_with_wildcard_solvers_replaces_the_default_for_wildcards() -> None:
    choice = SolverChoice.simple([WEBROOT, DNS], wildcard=[OTHER_DNS])
    assert names(choice.candidates(dns("*.a.test"))) == ["other-dns"]
    assert names(choice.candidates(dns("a.test"))) == ["webroot", "dns"]
    assert names(choice.solvers) == ["other-dns", "webroot", "dns"]


def test_of_keeps_a_plain_sequence_as_today() -> None:
    choice = SolverChoice.of([STANDALONE, DNS])
    assert names(choice.candidates(dns("a.test"))) == ["standalone", "dns"]
    assert SolverChoice.of(choice) is choice
    assert SolverChoice.of([]).candidates(dns("a.test")) == []


@pytest.mark.parametrize("pattern", ["", "  ", "a.*.test", "*a.test", "**.test", "*.", "*.*"])
def test_malformed_patterns_are_config_errors(pattern: str) -> None:
    with pytest.raises(ConfigError, match="solver rule"):
        SolverChoice([(pattern, STANDALONE)])


def test_repr_lists_the_rules() -> None:
    text = repr(SolverChoice([("*.a.test", DNS)]))
    assert "'*.a.test'" in text
    assert "dns" in text
