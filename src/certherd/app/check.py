"""``certherd check``: what, from this host, would stop the next renewal of each lineage.

For every lineage: its settings and secrets can be read; its CA answers (the
directory, once per CA) and this host's clock agrees with the CA's ``Date`` header;
its account is valid at the CA (RFC 8555 §7.3: a POST-as-GET to the account URL; one
the CA no longer accepts is told with how to replace it); each name's solver works:
for http-01 a probe file is published through the configured solver (a webroot,
certherd's own server on its port, the web server it is installed into, the fleet's
shared listeners) and fetched over HTTP from the name as the CA would, a failure
naming what to check for that solver; for dns-01 the provider's credentials are
proven by a harmless call (RFC 2136: a TSIG-signed SOA query); a program (hook, exec)
is not run and says so; the web server it is installed into passes its own config
test and can take the next version (the installer's ``check``: for HAProxy also the
crt dir and the runtime socket or a master-worker reload). Then the free space of the
config dir. Nothing is ordered, nothing is changed at the CA, and every probe is
removed again.

Each finding is one :class:`Finding`: ``ok``, ``warn`` (will probably work, worth a
look), ``fail`` (the next renewal would fail) or ``skip`` (not checkable from here).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from certherd.errors import CertherdError, NotFoundError, SettingsText, safe_text
from certherd.manager.outcome import describe_failure

if TYPE_CHECKING:
    from certherd.acme.messages import Identifier
    from certherd.app.entry import Certherd
    from certherd.challenges.base import ChallengeTask, Solver
    from certherd.manager.accounts import CaOptions
    from certherd.manager.service import Manager
    from certherd.settings import LineageSettings

__all__ = ["CLOCK_SKEW_WARN", "Finding", "Status", "check_lineages"]

Status = Literal["ok", "warn", "fail", "skip"]
CLOCK_SKEW_WARN = 60.0
"""Seconds between this host's clock and the CA's past which ``check`` warns (TSIG
refuses past 300 s; certificates look not yet valid to others)."""
DISK_FAIL = 10 * 2**20
DISK_WARN = 100 * 2**20
TIMEOUT = 10.0


@dataclass(frozen=True)
class Finding:
    """One line of ``certherd check``: ``lineage`` ("" for the host), what was checked
    (``settings``, ``ca``, ``clock``, ``account``, ``http-01 NAME``, ``dns-01 NAME``,
    ``disk``), the status, and one line of text (a
    :class:`~certherd.errors.SettingsText` when it names settings)."""

    lineage: str
    check: str
    status: Status
    text: str

    def to_json(self) -> dict[str, str]:
        return {
            "lineage": self.lineage,
            "check": self.check,
            "status": self.status,
            "text": str(self.text),
        }


class _Checker:
    def __init__(self, certherd: Certherd, http_port: int) -> None:
        self.certherd = certherd
        self.manager: Manager = certherd.manager
        self.http_port = http_port
        self._ca_seen: dict[tuple[str, str | None], list[Finding]] = {}
        self._accounts_seen: dict[tuple[str, str], Finding] = {}

    async def lineage(self, name: str) -> list[Finding]:
        found: list[Finding] = []

        def add(check: str, status: Status, text: str) -> None:
            found.append(Finding(name, check, status, text))

        try:
            settings, _state = await self.certherd.load(name)
            cas = self.manager.cas_for(settings)
            specs = self.manager.solver_specs(settings)
            choice = self.manager.solvers.choice(specs)
        except CertherdError as exc:
            add("settings", "fail", describe_failure(exc, 300))
            return found
        add("settings", "ok", f"{len(settings.names)} name(s), secrets readable")
        found += await self.cas(name, cas)
        from certherd.names import normalize_names

        for identifier in normalize_names(settings.names):
            candidates = choice.candidates(identifier)
            if not candidates:
                add(
                    f"solver {identifier.value}",
                    "fail",
                    SettingsText(
                        "no solver can prove this name: add one for it ({solvers})", ("solvers",)
                    ),
                )
                continue
            found.append(await self.solver(settings, candidates[0], identifier))
        if settings.installer is not None:
            found.append(await self.installer(settings))
        return found

    async def installer(self, settings: LineageSettings) -> Finding:
        """The web server the lineage is installed into: its config passes its own test
        and it can take the next version (the installer's own ``check``)."""
        from certherd.app.installing import check_installer

        assert settings.installer is not None
        kind = settings.installer.kind
        try:
            await check_installer(settings)
        except CertherdError as exc:
            return Finding(settings.name, f"installer {kind}", "fail", describe_failure(exc, 300))
        text = "its config passes its own test and it can take the next version"
        return Finding(settings.name, f"installer {kind}", "ok", text)

    # -- the CA -------------------------------------------------------------------------

    async def cas(self, name: str, cas: Sequence[CaOptions]) -> list[Finding]:
        """Each CA of the lineage (in the order tried) and its account. With several, a
        CA that fails is a warning while another works: the renewal fails over to it."""
        per_ca: list[list[Finding]] = []
        for index, ca in enumerate(cas):
            suffix = f" {index + 1}" if len(cas) > 1 else ""
            findings = await self.ca(ca)
            if all(f.status != "fail" for f in findings):
                findings = [*findings, await self.account(ca)]
            per_ca.append([Finding(name, f.check + suffix, f.status, f.text) for f in findings])
        usable = any(all(f.status != "fail" for f in group) for group in per_ca)
        found = []
        for group in per_ca:
            for finding in group:
                if finding.status == "fail" and usable and len(per_ca) > 1:
                    text = f"{finding.text} (another CA of the list works: it is used)"
                    finding = Finding(name, finding.check, "warn", text)
                found.append(finding)
        return found

    async def ca(self, ca: CaOptions) -> list[Finding]:
        """The directory (once per CA and trust bundle) and the clock against its Date."""
        key = (ca.directory_url, ca.ca_bundle)
        if key not in self._ca_seen:
            self._ca_seen[key] = await self._fetch_directory(ca)
        return self._ca_seen[key]

    async def _fetch_directory(self, ca: CaOptions) -> list[Finding]:
        from certherd.acme.http import http_client_for

        url = safe_text(ca.directory_url, 200)
        try:
            client, _, agent = http_client_for(
                None,
                ca_bundle=ca.ca_bundle,
                timeout=TIMEOUT,
                proxy=None,
                trust_env=None,
                user_agent=None,
            )
        except CertherdError as exc:
            return [Finding("", "ca", "fail", describe_failure(exc, 300))]
        import httpx

        async with client:
            try:
                began = asyncio.get_running_loop().time()
                response = await client.get(ca.directory_url, headers={"User-Agent": agent})
                took = asyncio.get_running_loop().time() - began
            except httpx.HTTPError as exc:
                reason = safe_text(f"{type(exc).__name__}: {exc}", 200)
                return [Finding("", "ca", "fail", f"{url} cannot be reached: {reason}")]
        try:
            directory = response.json() if response.status_code == 200 else None
        except ValueError:
            directory = None
        if not isinstance(directory, dict) or "newNonce" not in directory:
            return [
                Finding(
                    "",
                    "ca",
                    "fail",
                    SettingsText(
                        f"{url} answered HTTP {response.status_code} without an ACME "
                        "directory: check {server}",
                        ("server",),
                    ),
                )
            ]
        found = [Finding("", "ca", "ok", f"{url} answered in {took * 1000:.0f} ms")]
        found.append(self._clock(response.headers.get("date"), took))
        return found

    def _clock(self, date: str | None, took: float) -> Finding:
        if not date:
            return Finding("", "clock", "skip", "the CA sent no Date header")
        try:
            theirs = email.utils.parsedate_to_datetime(date)
        except (TypeError, ValueError):
            return Finding("", "clock", "skip", f"the CA's Date header is not a date: {date!r}")
        if theirs.tzinfo is None:
            theirs = theirs.replace(tzinfo=dt.UTC)
        skew = (self.manager.clock.now() - theirs).total_seconds()  # the injected clock
        allowance = 1.0 + took  # Date has whole seconds; the answer took a while
        if abs(skew) <= max(CLOCK_SKEW_WARN, allowance):
            return Finding("", "clock", "ok", f"within {max(abs(skew), 1):.0f} s of the CA's")
        way = "ahead of" if skew > 0 else "behind"
        return Finding(
            "",
            "clock",
            "warn",
            f"this host's clock is {abs(skew):.0f} s {way} the CA's: sync it (NTP); TSIG "
            "refuses past 300 s",
        )

    async def account(self, ca: CaOptions) -> Finding:
        """The stored account, fetched by POST-as-GET (RFC 8555 §7.3)."""
        key = (ca.ca_id, ca.account)
        if key in self._accounts_seen:
            return self._accounts_seen[key]
        result = await self._account(ca)
        self._accounts_seen[key] = result
        return result

    async def _account(self, ca: CaOptions) -> Finding:
        from certherd.acme.messages import Status as AcmeStatus
        from certherd.manager.accounts import load_account, open_client

        try:
            record = await load_account(self.manager.storage, ca)
        except NotFoundError:
            record = None
        if record is None or record.url is None:
            if not ca.agree_tos:
                return Finding(
                    "",
                    "account",
                    "fail",
                    SettingsText(
                        "no account yet and the CA's terms are not agreed: set {agree_tos}",
                        ("agree_tos",),
                    ),
                )
            return Finding("", "account", "warn", "no account yet: the next renewal creates it")
        from certherd.errors import AccountDoesNotExistError, UnauthorizedError

        try:
            async with await open_client(self.manager.storage, ca) as client:
                account = await client.fetch_account()
        except (UnauthorizedError, AccountDoesNotExistError) as exc:
            # RFC 8555 §7.3.6: once an account is deactivated (by us elsewhere, or by
            # the CA) "the server MUST NOT accept further requests authorized by that
            # account's key": every renewal with it would be refused the same way.
            folder = f"accounts/{ca.ca_id}/{ca.account}/"
            return Finding(
                "",
                "account",
                "fail",
                f"the CA no longer accepts the stored account ({describe_failure(exc, 200)}): "
                f"move {folder} of the config dir away and run `certherd account register` "
                "for a new one",
            )
        except CertherdError as exc:
            return Finding("", "account", "fail", describe_failure(exc, 300))
        if account.status != AcmeStatus.VALID:
            return Finding(
                "",
                "account",
                "fail",
                f"the account is {account.status} at the CA: move accounts/{ca.ca_id}/"
                f"{ca.account}/ of the config dir away and run `certherd account register` "
                "for a new one",
            )
        return Finding("", "account", "ok", f"valid: {safe_text(account.url, 200)}")

    # -- solvers ------------------------------------------------------------------------

    async def solver(
        self, settings: LineageSettings, solver: Solver, identifier: Identifier
    ) -> Finding:
        from certherd.challenges.dns01 import Dns01Solver
        from certherd.challenges.hook import HookSolver

        label = f"{solver.challenge_type} {identifier.value}"
        status: Status
        if isinstance(solver, HookSolver):
            status, text = "skip", "a program answers this challenge: not run by check"
        elif solver.challenge_type == "http-01":  # a webroot, certherd's server, nginx
            status, text = await self._http_probe(solver, identifier)
        elif solver.challenge_type == "tls-alpn-01":
            status, text = await self._publish_only(solver, identifier)
        elif isinstance(solver, Dns01Solver):
            status, text = await self._dns_probe(solver, identifier)
        else:
            status, text = "skip", f"answered by {type(solver).__name__}: not probed"
        return Finding(settings.name, label, status, text)

    async def _publish_only(self, solver: Solver, identifier: Identifier) -> tuple[Status, str]:
        """tls-alpn-01: certherd's own TLS server can take its port (not fetched: that
        takes a TLS client speaking acme-tls/1)."""
        try:
            handle = await solver.present(_probe_task(solver.challenge_type, identifier)[0])
        except CertherdError as exc:
            return "fail", f"cannot answer: {describe_failure(exc, 300)}"
        except OSError as exc:
            return "fail", f"cannot answer: {safe_text(exc.strerror or exc, 200)}"
        await solver.cleanup(handle)
        return "ok", "certherd's tls-alpn-01 server could listen (not fetched)"

    async def _http_probe(self, solver: Solver, identifier: Identifier) -> tuple[Status, str]:
        """Publish a probe token through ``solver`` and fetch it as the CA would."""
        task, token, expected = _probe_task("http-01", identifier)
        try:
            handle = await solver.present(task)
        except CertherdError as exc:
            return "fail", f"cannot publish the probe: {describe_failure(exc, 300)}"
        except OSError as exc:
            return "fail", f"cannot publish the probe: {safe_text(exc.strerror or exc, 200)}"
        try:
            return await self._fetch_probe(identifier, token, expected, solver)
        finally:
            await solver.cleanup(handle)

    async def _fetch_probe(
        self, identifier: Identifier, token: str, expected: str, solver: Solver
    ) -> tuple[Status, str]:
        import httpx

        host = f"[{identifier.value}]" if ":" in identifier.value else identifier.value
        port = "" if self.http_port == 80 else f":{self.http_port}"
        url = f"http://{host}{port}/.well-known/acme-challenge/{token}"
        shown = f"http://{host}{port}/.well-known/acme-challenge/"
        try:
            async with httpx.AsyncClient(
                timeout=TIMEOUT, trust_env=False, follow_redirects=True
            ) as client:
                response = await client.get(url)
        except httpx.HTTPError as exc:
            reason = safe_text(f"{type(exc).__name__}: {exc}", 200)
            return (
                "warn",
                f"published, but {shown} cannot be fetched from this host ({reason}); the "
                "CA may still reach it",
            )
        if response.status_code == 200 and response.text.strip() == expected:
            return "ok", f"the probe was served at {shown}"
        said = f"{shown} answered HTTP {response.status_code} without the probe"
        return "fail", _not_served(solver, said)

    async def _dns_probe(self, solver: Any, identifier: Identifier) -> tuple[Status, str]:
        provider = solver.provider
        check = getattr(provider, "check_credentials", None)
        if check is None:
            kind = type(provider).__name__
            return "skip", f"{kind} offers no harmless call to prove its credentials"
        try:
            said: str = await check(identifier.value)
        except CertherdError as exc:
            return "fail", describe_failure(exc, 300)
        return "ok", said


def _not_served(solver: Solver, said: str) -> str:
    """``said`` (the probe was not served), then why that may be and what to check, for
    each way of answering http-01."""
    from certherd.challenges.http01 import Http01StandaloneSolver
    from certherd.challenges.shared import SharedSolver
    from certherd.challenges.webroot import WebrootSolver
    from certherd.install.http01 import ServerSolver

    if isinstance(solver, ServerSolver):
        return (
            f"{said}: the web server does not answer this name from certherd's include: "
            "check that the name's server block is the one the installer edited"
        )
    if isinstance(solver, WebrootSolver):
        return SettingsText(
            f"{said}: the solver does not publish where this name is served from (check "
            "{webroot.path})",
            ("webroot.path",),
        )
    if isinstance(solver, Http01StandaloneSolver):
        return SettingsText(
            f"{said}: another server answers this name there, not certherd's (check "
            "{http.listen}, port forwarding and the proxy in front)",
            ("http.listen",),
        )
    if isinstance(solver, SharedSolver):
        return SettingsText(
            f"{said}: no fleet node's http-01 listener gets this name's requests: route "
            "/.well-known/acme-challenge/ to the nodes' {http_serve}",
            ("http_serve",),
        )
    return f"{said}: the solver does not publish where this name is served from"


def _probe_task(kind: str, identifier: Identifier) -> tuple[ChallengeTask, str, str]:
    """A challenge of ``kind`` for ``identifier`` that no CA sent: a random token and a
    key authorization that says it is certherd's probe."""
    from certherd.acme.messages import Challenge
    from certherd.acme.messages import Status as AcmeStatus
    from certherd.challenges.base import ChallengeTask

    token = secrets.token_urlsafe(32)
    # Shaped as token.thumbprint (43 base64url characters), as a fleet's listeners
    # require of what they answer (certherd.challenges.shared), and still certherd's.
    expected = f"{token}.{'certherd-check'.ljust(43, '_')}"
    challenge = Challenge("https://check.invalid/", kind, AcmeStatus.PENDING, token)
    return ChallengeTask(identifier, challenge, expected), token, expected


def _disk(config_dir: Path | None) -> Finding:
    if config_dir is None:
        return Finding("", "disk", "skip", "storage is not a folder here")
    try:
        usage = shutil.disk_usage(config_dir)
    except OSError as exc:
        return Finding("", "disk", "fail", f"{config_dir}: {safe_text(exc.strerror or exc)}")
    free = f"{usage.free / 2**20:.0f} MiB free in {config_dir}"
    if usage.free < DISK_FAIL:
        return Finding("", "disk", "fail", f"only {free}: free some space")
    if usage.free < DISK_WARN:
        return Finding("", "disk", "warn", f"only {free}")
    return Finding("", "disk", "ok", free)


async def check_lineages(
    certherd: Certherd, names: Sequence[str] | None = None, *, http_port: int = 80
) -> list[Finding]:
    """Check every lineage (or those named) from this host; see the module docstring."""
    checker = _Checker(certherd, http_port)
    found: list[Finding] = []
    for name in names or await certherd.lineages():
        found += await checker.lineage(name)
    found.append(_disk(certherd.config_dir))
    return found
