"""Running the ``certherd`` command in a subprocess, as a user runs it."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from certherd.testing.pebble import PebbleServer

PebbleFactory = Callable[..., PebbleServer]
COMMAND_TIMEOUT = 120.0
"""Seconds one certherd command may take before the test fails."""
_RUN_NUMBERS = itertools.count(1)


class Result(NamedTuple):
    """How one certherd command ended."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """stdout parsed: ``--json`` prints exactly one JSON document."""
        return json.loads(self.stdout)

    def describe(self) -> str:
        return f"exit {self.code}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


class Running:
    """A certherd command started with :meth:`Certherd.start` (for kills and races)."""

    def __init__(self, process: subprocess.Popen[bytes], out: Path, err: Path) -> None:
        self.process = process
        self._out, self._err = out, err

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr_so_far(self) -> str:
        """What the command wrote to stderr until now (it may still be running)."""
        return self._err.read_text()

    def wait(self, timeout: float = COMMAND_TIMEOUT) -> Result:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        return Result(code, self._out.read_text(), self._err.read_text())


def ca_flags_for(server: PebbleServer) -> list[str]:
    """The CA options that point certherd at ``server``."""
    return [
        "--server",
        server.directory_url,
        "--ca-bundle",
        str(server.ca_bundle),
        "--agree-tos",
        "--email",
        "e2e@example.com",
    ]


def http_flags_for(server: PebbleServer) -> list[str]:
    """The built-in http-01 server, on the port ``server`` validates."""
    return ["--http", f"127.0.0.1:{server.options.http_port}"]


class Certherd:
    """Runs ``certherd`` against one config dir and, for ``issue``, one Pebble."""

    def __init__(self, config_dir: Path, server: PebbleServer, scratch: Path) -> None:
        self.config_dir = config_dir
        self.server = server
        self._scratch = scratch
        self._started: list[Running] = []

    @property
    def ca(self) -> list[str]:
        return ca_flags_for(self.server)

    @property
    def http(self) -> list[str]:
        return http_flags_for(self.server)

    def elsewhere(self, config_dir: Path) -> Certherd:
        """The same runner on another config dir."""
        return Certherd(config_dir, self.server, self._scratch)

    def on(self, server: PebbleServer) -> Certherd:
        """The same config dir, issuing from another Pebble."""
        return Certherd(self.config_dir, server, self._scratch)

    def live(self, name: str) -> Path:
        return self.config_dir / "live" / name

    def archive(self, name: str) -> Path:
        return self.config_dir / "archive" / name

    def environment(self, env: Mapping[str, str] | None) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("CERTHERD_")}
        return {**base, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})}

    def argv(self, args: Sequence[str]) -> list[str]:
        command = [sys.executable, "-m", "certherd.cli.main"]
        return [*command, "--config-dir", str(self.config_dir), *args]

    def __call__(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout: float = COMMAND_TIMEOUT,
    ) -> Result:
        """Run to the end; with ``check`` a non-zero exit fails the test with the output."""
        done = subprocess.run(
            self.argv(args),
            env=self.environment(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        result = Result(done.returncode, done.stdout, done.stderr)
        if check and result.code != 0:
            pytest.fail(f"certherd {' '.join(args)} failed: {result.describe()}", pytrace=False)
        return result

    def start(self, *args: str, env: Mapping[str, str] | None = None) -> Running:
        """Start without waiting; output goes to files, so a killed run loses none of it."""
        number = next(_RUN_NUMBERS)
        out = self._scratch / f"run{number}.out"
        err = self._scratch / f"run{number}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                self.argv(args),
                env=self.environment(env),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
            )
        running = Running(process, out, err)
        self._started.append(running)
        return running

    def issue(self, *names: str, args: Sequence[str] = (), check: bool = True) -> Result:
        """``--json issue -d NAME ...`` with this Pebble and its http-01 port."""
        domains = [flag for name in names for flag in ("-d", name)]
        return self("--json", "issue", *domains, *self.http, *self.ca, *args, check=check)

    def stop_all(self) -> None:
        for running in self._started:
            if running.process.poll() is None:
                running.process.kill()
                running.process.wait()
