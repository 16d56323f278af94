"""Solvers built from data (:class:`SolverSpec`), shared across concurrent orders.

A ``SolverPool`` keeps one standalone listener per address (so a hundred orders on port
80 share one http-01 server) and one DNS provider per configuration. Kinds:

- ``http``      ``listen=[ADDR:]PORT`` (default 80): the built-in http-01 server;
- ``webroot``   ``path=DIR``: files under the web server's root;
- ``tls-alpn``  ``listen=[ADDR:]PORT`` (default 443): the built-in tls-alpn-01 server;
- ``dns``       ``provider=NAME`` plus the provider's settings, ``propagation_timeout``
  (seconds, 0 skips), ``propagation_interval``, ``resolver=ADDR[:PORT]``;
- ``hook``      ``challenge=TYPE``, ``command=PATH``, ``timeout``.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from certherd.challenges.base import Solver
from certherd.challenges.http01 import Http01StandaloneSolver
from certherd.challenges.options import (
    DNS_OWN,
    KINDS,
    parse_listen_address,
    parse_resolver,
    solver_spec,
)
from certherd.challenges.selection import SolverChoice
from certherd.challenges.spec import SolverSpec
from certherd.errors import ConfigError

__all__ = ["KINDS", "SolverPool", "parse_resolver"]

ProgressCallback = Callable[[str, int, int], None]


def _number(options: Mapping[str, str], key: str, default: float) -> float:
    value = options.get(key)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"solver option {key}={value!r} is not a number") from None


class SolverPool:
    """Builds solvers from specs and shares them; one pool per process run."""

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        on_progress: ProgressCallback | None = None,
        builders: Mapping[str, Callable[[SolverSpec], Solver]] | None = None,
    ) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        self.builders = dict(builders or {})
        """Kinds built above this layer (``nginx``: by the installer, in certherd.app)."""
        self.on_progress = on_progress
        self._solvers: dict[tuple[Any, ...], Solver] = {}
        self._listeners: dict[tuple[str, int], tuple[str, Solver]] = {}

    def choice(self, specs: Sequence[SolverSpec]) -> SolverChoice:
        """The rules for one lineage: named specs first (in order), then the defaults."""
        if not specs:
            raise ConfigError(
                "no way to answer challenges: give at least one solver ({solvers})",
                settings=("solvers",),
            )
        rules: list[tuple[str, Solver]] = []
        for spec in specs:
            for name in spec.names:
                rules.append((name, self.solver(spec)))
        for spec in specs:
            if not spec.names:
                rules.append(("*", self.solver(spec)))
        return SolverChoice(rules)

    def solver(self, spec: SolverSpec) -> Solver:
        """The (shared) solver for ``spec``, whose secrets are read from where they come
        from (environment variables: this pool's ``environ``) if not already resolved."""
        spec = spec.resolve(self.environ)
        key = (spec.kind, tuple(sorted(spec.options.items())))
        existing = self._solvers.get(key)
        if existing is None:
            existing = self._build(spec)
            self._solvers[key] = existing
        return existing

    def _build(self, spec: SolverSpec) -> Solver:
        # The schema again: a spec may come from a settings file written by hand or by
        # an older certherd. Secrets are already values here.
        solver_spec(spec.kind, spec.options, spec.names, strict=False)
        options = spec.options
        if spec.kind == "http":
            host, port = parse_listen_address(options.get("listen", "80"))
            return self._listening("http", host, port) or Http01StandaloneSolver(port, host)
        if spec.kind == "tls-alpn":
            from certherd.challenges.tlsalpn01 import TlsAlpn01Solver

            host, port = parse_listen_address(options.get("listen", "443"))
            return self._listening("tls-alpn", host, port) or TlsAlpn01Solver(port, host)
        if spec.kind == "webroot":
            from certherd.challenges.webroot import WebrootSolver

            path = options.get("path")
            if not path:
                raise ConfigError(
                    "the webroot solver needs a folder: give {webroot.path}",
                    settings=("webroot.path",),
                )
            return WebrootSolver(Path(path))
        if spec.kind == "hook":
            from certherd.challenges.hook import HookSolver

            command = options.get("command")
            if not command:
                raise ConfigError(
                    "the hook solver needs a program: give {hook.command}",
                    settings=("hook.command",),
                )
            # A configured command may carry fixed arguments; it never goes through a shell.
            return HookSolver(
                options.get("challenge", "http-01"),
                shlex.split(command),
                _number(options, "timeout", 120),
            )
        if spec.kind == "dns":
            return self._dns(options)
        if spec.kind in self.builders:
            return self.builders[spec.kind](spec)
        raise ConfigError(f"unknown solver kind {spec.kind!r}: use one of {', '.join(KINDS)}")

    def share(self, kind: str, host: str, port: int, listener: Solver) -> None:
        """A listener this process runs anyway (``run --http-serve``): the ``http`` or
        ``tls-alpn`` solver on its port is that listener, not a second one that could not
        bind the port."""
        self._listeners[(kind, port)] = (host, listener)

    def _listening(self, kind: str, host: str, port: int) -> Solver | None:
        found = self._listeners.get((kind, port))
        if found is None:
            return None
        where, listener = found
        return listener if where in ("", "0.0.0.0", "::", host) else None  # noqa: S104

    def _dns(self, options: Mapping[str, str]) -> Solver:
        from certherd.challenges.dns01 import Dns01Solver
        from certherd.challenges.propagation import PropagationChecker
        from certherd.dns.registry import create_provider

        name = options.get("provider")
        if not name:
            raise ConfigError(
                "the dns solver needs a provider: give {dns.provider}",
                settings=("dns.provider",),
            )
        settings = {k: v for k, v in options.items() if k not in DNS_OWN}
        provider = create_provider(name, settings, self.environ)
        resolver: tuple[str, int] | None = None
        if options.get("resolver"):
            resolver = parse_resolver(options["resolver"])
        checker = PropagationChecker(
            timeout=_number(options, "propagation_timeout", 120),
            interval=_number(options, "propagation_interval", 2),
            resolver=resolver,
            on_progress=self.on_progress,
        )
        return Dns01Solver(provider, checker)
