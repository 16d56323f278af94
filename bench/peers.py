"""The three clients under test and how each one is installed, asked to issue and renew.

Each client gets its own state folder, EC P-256 keys, its own http-01 responder on the
port Pebble's validator uses, and trusts Pebble's listener CA its own way:

- certherd: ``--ca-bundle`` (the bench's own venv, ``bench/out/venv-certherd``, with
  certherd installed editable from this checkout, so a change in ``src/`` is measured);
- Certbot: latest from PyPI in ``bench/out/venv-certbot``, ``REQUESTS_CA_BUNDLE``;
- lego: Debian's package, ``LEGO_CA_CERTIFICATES``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Ca", "Certbot", "Certherd", "Client", "Lego", "base_env", "ensure_venv"]

EMAIL = "bench@certherd.test"


@dataclass(frozen=True)
class Ca:
    """The Pebble every client talks to."""

    directory: str
    bundle: Path
    http_port: int


def base_env() -> dict[str, str]:
    """A small, explicit environment: nothing of the caller's CA or client settings."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.setdefault("LANG", "C.UTF-8")
    return env


def ensure_venv(venv: Path, packages: list[str], *, upgrade: bool = False) -> Path:
    """Create ``venv`` with ``packages`` if it is missing (or upgrade them); its python."""
    python = venv / "bin" / "python"
    marker = venv / ".bench-installed"
    if marker.exists() and not upgrade:
        return python
    print(f"bench: installing {' '.join(packages)} into {venv} (this may take a minute)")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--upgrade", *packages],
        check=True,
    )
    marker.write_text(" ".join(packages) + "\n")
    return python


def _output(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    return (result.stdout + result.stderr).strip()


def _dpkg_version(package: str) -> str:
    if not shutil.which("dpkg-query"):
        return "unknown"
    return _output(["dpkg-query", "-W", "-f=${Version}", package]) or "unknown"


class Client:
    """One ACME client: its commands for issuing and renewing."""

    name = ""

    def __init__(self, ca: Ca) -> None:
        self.ca = ca

    def version(self) -> str:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return base_env()

    def issue(self, state: Path, domain: str) -> list[str]:
        raise NotImplementedError

    def renew(self, state: Path) -> list[str]:
        raise NotImplementedError


class Certherd(Client):
    name = "certherd"

    def __init__(self, ca: Ca, bin_dir: Path) -> None:
        super().__init__(ca)
        self.bin = bin_dir / "certherd"
        self.python = bin_dir / "python"

    def version(self) -> str:
        result = subprocess.run(
            [str(self.bin), "--version"],
            env=self.env(),
            capture_output=True,
            text=True,
            check=False,
        )
        return result.stdout.strip().removeprefix("certherd ")

    def env(self) -> dict[str, str]:
        """The run's source snapshot first on the path (see suite.snapshot_source)."""
        env = base_env()
        snapshot = os.environ.get("BENCH_CERTHERD_PYTHONPATH")
        if snapshot:
            env["PYTHONPATH"] = snapshot
        return env

    def issue(self, state: Path, domain: str) -> list[str]:
        return [
            str(self.bin),
            "--config-dir",
            str(state),
            "issue",
            "-d",
            domain,
            "--http",
            f"127.0.0.1:{self.ca.http_port}",
            "--server",
            self.ca.directory,
            "--ca-bundle",
            str(self.ca.bundle),
            "--agree-tos",
            "--email",
            EMAIL,
            "--key-type",
            "ec256",
        ]

    def register(self, state: Path) -> list[str]:
        return [
            str(self.bin),
            "-q",
            "--config-dir",
            str(state),
            "account",
            "register",
            "--server",
            self.ca.directory,
            "--ca-bundle",
            str(self.ca.bundle),
            "--agree-tos",
            "--email",
            EMAIL,
        ]

    def apply(self, state: Path, concurrency: int) -> list[str]:
        return [
            str(self.bin),
            "--config-dir",
            str(state),
            "apply",
            "--concurrency",
            str(concurrency),
        ]

    def config_file(self, domains: list[str]) -> str:
        """certherd.toml with one ``[[certificate]]`` per domain."""
        lines = [
            "[defaults]",
            f'server = "{self.ca.directory}"',
            f'ca_bundle = "{self.ca.bundle}"',
            "agree_tos = true",
            f'email = "{EMAIL}"',
            'key_type = "ec256"',
            'solver = "http"',
            f'solver_options = {{ listen = "127.0.0.1:{self.ca.http_port}" }}',
            "",
        ]
        for domain in domains:
            lines += ["[[certificate]]", f'domains = ["{domain}"]', ""]
        return "\n".join(lines)

    def renew(self, state: Path) -> list[str]:
        return [str(self.bin), "-q", "--config-dir", str(state), "renew"]


class Certbot(Client):
    name = "certbot"

    def __init__(self, ca: Ca, bin_dir: Path) -> None:
        super().__init__(ca)
        self.bin = bin_dir / "certbot"

    def version(self) -> str:
        return _output([str(self.bin), "--version"]).removeprefix("certbot ").strip()

    def env(self) -> dict[str, str]:
        return {**base_env(), "REQUESTS_CA_BUNDLE": str(self.ca.bundle)}

    def _dirs(self, state: Path) -> list[str]:
        return [
            "--config-dir",
            str(state / "config"),
            "--work-dir",
            str(state / "work"),
            "--logs-dir",
            str(state / "logs"),
        ]

    def issue(self, state: Path, domain: str) -> list[str]:
        return [
            str(self.bin),
            "certonly",
            "--non-interactive",
            "--standalone",
            "--http-01-address",
            "127.0.0.1",
            "--http-01-port",
            str(self.ca.http_port),
            "-d",
            domain,
            "--server",
            self.ca.directory,
            "--agree-tos",
            "-m",
            EMAIL,
            "--no-eff-email",
            "--key-type",
            "ecdsa",
            "--elliptic-curve",
            "secp256r1",
            *self._dirs(state),
        ]

    def renew(self, state: Path) -> list[str]:
        # -q as in Certbot's own cron/systemd timer; no random sleep before renewing.
        return [str(self.bin), "-q", "renew", "--no-random-sleep-on-renew", *self._dirs(state)]


class Lego(Client):
    name = "lego"

    def __init__(self, ca: Ca, binary: Path) -> None:
        super().__init__(ca)
        self.bin = binary

    def version(self) -> str:
        return _dpkg_version("lego")

    def env(self) -> dict[str, str]:
        return {**base_env(), "LEGO_CA_CERTIFICATES": str(self.ca.bundle)}

    def issue(self, state: Path, domain: str) -> list[str]:
        return [
            str(self.bin),
            "--server",
            self.ca.directory,
            "--email",
            EMAIL,
            "--accept-tos",
            "--path",
            str(state),
            "--key-type",
            "ec256",
            "--http",
            "--http.port",
            f"127.0.0.1:{self.ca.http_port}",
            "--domains",
            domain,
            "run",
        ]

    def renew(self, state: Path) -> list[str]:
        raise NotImplementedError("lego renews one certificate per command")


def pebble_version() -> str:
    return _dpkg_version("pebble")
