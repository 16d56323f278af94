"""The library's front door, :class:`Certherd`: one object does what the ``certherd``
commands do, on a config dir or any storage, and returns data (outcomes, settings,
state); what happens meanwhile goes to ``on_event``. Every error it raises is a
:class:`~certherd.errors.CertherdError` (a lineage named that does not exist: a
:class:`~certherd.errors.ConfigError`). ``renew`` with nothing due reads the renewal
index only: no manager, no ACME client imported.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from certherd.app.accounts import AccountCalls
from certherd.app.running import DaemonCalls
from certherd.errors import ConfigError, NotFoundError, refuse_text
from certherd.key_types import DEFAULT_KEY_TYPE

if TYPE_CHECKING:
    from certherd.acme.client import RevocationReason
    from certherd.app.check import Finding
    from certherd.app.events import Event, EventKind, LineageRecord, Revocation
    from certherd.challenges.base import Solver
    from certherd.challenges.factory import SolverPool
    from certherd.challenges.spec import SolverSpec
    from certherd.clock import Clock
    from certherd.config import ConfigFile
    from certherd.manager.accounts import CaOptions
    from certherd.manager.lineage import LineageState
    from certherd.manager.outcome import Outcome
    from certherd.manager.service import Manager
    from certherd.migrate.certbot_import import ImportResult
    from certherd.settings import (
        CaSettings,
        EabSettings,
        HookSettings,
        InstallerSettings,
        LineageSettings,
        NotifyTarget,
    )
    from certherd.storage.base import Lease, Storage
    from certherd.storage.fleet import ScheduleEntry
    from certherd.storage.sealing import Sealer

__all__ = ["Certherd"]


class Certherd(AccountCalls, DaemonCalls):
    """Accounts, certificates and settings in one storage, and what can be done with them.

    ``storage``: a config dir (a path: certherd's own folder layout, created as needed;
    default: the one the ``certherd`` command uses, ``$CERTHERD_DIR``, else
    /etc/certherd for root, else ~/.config/certherd), a storage URL
    (``postgresql://USER@HOST/DB``: the PostgreSQL storage, closed by :meth:`aclose`) or
    any storage object. ``host_dir``: with a storage URL, this host's config dir, where
    each lineage's live files are kept for web servers and deploy hooks
    (:mod:`certherd.storage.hostfiles`); ``node``: this process's name in a fleet
    sharing that storage (default: the host name; ``run(node=True)``).
    ``storage_key``: with a storage URL, the key file (or a
    :class:`~certherd.storage.sealing.Sealer`) that seals private keys before they reach
    the database (:mod:`certherd.storage.sealing`).
    ``storage_timeout``: with a storage URL, seconds one database call may take before it
    fails (default 30; 1 to 3600; a fleet node takes at most a third of its lease).
    ``config_file``: certherd.toml (default: the config dir's, when it exists; none for
    a storage object). ``environ``: where solver secrets given as ``{env = NAME}`` are
    read (default: this process's environment). ``on_event`` hears :class:`Event`
    values; ``client_factory`` opens each CA client (tests).
    One instance per event loop; its methods may run concurrently.
    """

    def __init__(
        self,
        storage: str | os.PathLike[str] | Storage | None = None,
        *,
        config_file: str | os.PathLike[str] | None = None,
        clock: Clock | None = None,
        concurrency: int = 10,
        on_event: Callable[[Event], None] | None = None,
        environ: Mapping[str, str] | None = None,
        client_factory: Callable[[Storage, CaOptions], Any] | None = None,
        host_dir: str | os.PathLike[str] | None = None,
        node: str | None = None,
        storage_key: str | os.PathLike[str] | Sealer | None = None,
        storage_timeout: float | str | None = None,
    ) -> None:
        from certherd.clock import SystemClock

        if storage is None:
            from certherd.config_dir import default_config_dir

            storage = default_config_dir()
        self._owned: Any = None
        if storage_key is not None and not (isinstance(storage, str) and "://" in storage):
            raise ConfigError(
                "{storage_key_file} seals private keys in a shared database: give "
                "{storage} too (the config dir keeps them in 0600 files)",
                settings=("storage_key_file", "storage"),
            )
        if storage_timeout is not None and not (isinstance(storage, str) and "://" in storage):
            raise ConfigError(
                "{storage_timeout} is how long a call to a shared database may take: "
                "give {storage} too",
                settings=("storage_timeout", "storage"),
            )
        if isinstance(storage, str) and "://" in storage:
            from certherd.storage.postgresql import DEADLINE, PostgresStorage, check_deadline
            from certherd.storage.sealing import Sealer, read_key_file

            sealer = (
                storage_key
                if isinstance(storage_key, Sealer) or storage_key is None
                else read_key_file(storage_key)
            )
            deadline = DEADLINE if storage_timeout is None else check_deadline(storage_timeout)
            storage = self._owned = PostgresStorage(
                storage, node=node, sealer=sealer, deadline=deadline
            )
            if host_dir is not None:
                from certherd.storage.filesystem import FilesystemStorage
                from certherd.storage.hostfiles import HostFiles

                storage = HostFiles(self._owned, FilesystemStorage(host_dir))
        if isinstance(storage, str | os.PathLike):
            from certherd.storage.filesystem import FilesystemStorage

            self.config_dir: Path | None = Path(storage)
            self.storage: Storage = FilesystemStorage(self.config_dir)
        else:
            self.config_dir = None
            self.storage = storage
        self._config_file = Path(config_file) if config_file is not None else None
        self.clock: Clock = clock or SystemClock()
        self.concurrency = max(1, concurrency)
        self._on_event = on_event
        self._environ = environ
        self._client_factory = client_factory
        self._solvers: SolverPool | None = None
        self._manager: Manager | None = None
        self._warned: set[str] = set()
        self._daemon: Any = None
        self._stopping = False

    async def __aenter__(self) -> Certherd:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every CA connection opened (and the database connections of a storage
        given as a URL); the object can be used again after."""
        manager, self._manager = self._manager, None
        try:
            if manager is not None:
                await manager.aclose()
        finally:
            if self._owned is not None:
                await self._owned.aclose()

    async def reseal(self) -> tuple[int, int]:
        """Seal every private value in the database with the storage key's first key
        (see :mod:`certherd.storage.sealing`): ``(resealed, already current)``."""
        reseal = getattr(self._owned, "reseal", None)
        if reseal is None:
            raise ConfigError(
                "resealing works on a database: give {storage} and {storage_key_file}",
                settings=("storage", "storage_key_file"),
            )
        result: tuple[int, int] = await reseal()
        return result

    # -- wiring -------------------------------------------------------------------------

    @property
    def config_file(self) -> Path | None:
        """The certherd.toml that ``renew`` and the daemon follow (None: none to follow)."""
        if self._config_file is not None:
            return self._config_file
        if self.config_dir is not None:
            from certherd.config_dir import CONFIG_FILE

            default = self.config_dir / CONFIG_FILE
            if default.exists():
                return default
        return None

    @property
    def solvers(self) -> SolverPool:
        """The solvers of this instance, built from specs and shared by its runs."""
        if self._solvers is None:
            from certherd.challenges.factory import SolverPool

            def progress(name: str, ready: int, total: int) -> None:
                self._emit("propagation", f"{name}: served by {ready} of {total} name server(s)")

            from certherd.app.installing import apache_solver, nginx_solver

            def fleet_solver(spec: SolverSpec) -> Solver:
                from certherd.challenges.shared import SharedSolver

                return SharedSolver(self.storage, spec.options.get("challenge", "http-01"))

            self._solvers = SolverPool(
                environ=self._environ,
                on_progress=progress,
                builders={"nginx": nginx_solver, "apache": apache_solver, "fleet": fleet_solver},
            )
        return self._solvers

    @property
    def manager(self) -> Manager:
        """The certificate manager (built on first use; closed by :meth:`aclose`)."""
        if self._manager is None:
            from certherd.app.tracked import TrackedManager

            self._manager = TrackedManager(
                self.storage,
                clock=self.clock,
                concurrency=self.concurrency,
                solvers=self.solvers,
                on_event=lambda lineage, text: self._emit("step", text, lineage),
                client_factory=self._client_factory,
                on_start=lambda lineage: self._emit("started", lineage=lineage),
                on_finish=self._finished,
            )
        return self._manager

    def _emit(
        self,
        kind: EventKind,
        text: str = "",
        lineage: str = "",
        outcome: Outcome | None = None,
        total: int = 0,
    ) -> None:
        """Tell ``on_event`` (events are built only when someone listens)."""
        if self._on_event is not None:
            from certherd.app.events import Event

            self._on_event(Event(kind, text, lineage, outcome, total))

    def _finished(self, outcome: Outcome) -> None:
        self._emit("finished", lineage=outcome.lineage, outcome=outcome)

    def read_config(self, path: str | os.PathLike[str] | None = None) -> ConfigFile | None:
        """certherd.toml checked (``path``, else :attr:`config_file`; None if there is
        none); its warnings are told once per instance."""
        chosen = Path(path) if path is not None else self.config_file
        if chosen is None:
            return None  # certherd.toml's schema is not even imported
        from certherd.config import load_config_file

        config = load_config_file(chosen)
        for warning in config.warnings:
            if warning not in self._warned:
                self._warned.add(warning)
                self._emit("warning", warning)
        return config

    async def _follow(self, config: ConfigFile | None) -> None:
        """Write the settings ``config`` gives (with its CA and account details and its
        secrets' references: renewals need nothing else from the file)."""
        if config is None:
            return
        from certherd.manager.apply import sync_settings

        await sync_settings(self.storage, config)

    # -- certherd renew / apply / issue -------------------------------------------------

    async def renew(
        self, names: Sequence[str] | None = None, *, force: bool = False, dry_run: bool = False
    ) -> list[Outcome]:
        """``certherd renew``: follow certherd.toml, clear what interrupted runs left, and
        renew what is due (every lineage, or those named; ``force``: due or not;
        ``dry_run``: say what is due and why, write nothing). One outcome per lineage; a
        lineage's failure is its outcome, never an exception."""
        from certherd.manager.index import plan_renewal

        refuse_text(names, "names")
        wanted = tuple(names or ())
        config = self.read_config()
        await self._follow(config)
        from certherd.storage.hostfiles import HostFiles

        if not dry_run and isinstance(self.storage, HostFiles):  # this host's live files
            for name, version in (await self.storage.sync()).items():
                self._emit("step", f"this host's live files brought to v{version}", name)
        if not dry_run:  # what runs killed mid-work left (cheap: one small folder listed)
            from certherd.manager.hygiene import clear_interrupted

            for name, removed in (await clear_interrupted(self.storage)).items():
                self._emit(
                    "step", f"removed what an interrupted run left: {', '.join(removed)}", name
                )
        # The index answers "nothing due" without loading the ACME client at all.
        plan = await plan_renewal(self.storage, wanted or None, force=force, now=self.clock.now())
        _check_known(wanted, plan.index.names)
        if not plan.to_check:
            if not dry_run:  # a dry run writes nothing, not even the index (a cache)
                await plan.index.save()
            return plan.not_due
        self._emit("planned", total=len(plan.to_check))
        return await self.manager.renew(wanted or None, force=force, dry_run=dry_run)

    async def apply(
        self, config_file: str | os.PathLike[str] | None = None, *, defer: bool = False
    ) -> list[Outcome]:
        """``certherd apply``: obtain what certherd.toml (``config_file``, default
        :attr:`config_file`) lists and is missing or changed; renew the rest if due.
        Each lineage is worked on under its lease, so fleet nodes (``run --node``) and
        other applies never obtain one twice. ``defer``: only store what the file wants
        (outcome ``stored``), for the fleet's nodes to obtain."""
        from certherd.config_dir import CONFIG_FILE
        from certherd.manager.apply import apply_config, store_config

        path = config_file if config_file is not None else self.config_file
        if path is None:
            where = self.config_dir / CONFIG_FILE if self.config_dir else CONFIG_FILE
            path = where  # load_config_file says it is missing and how to make one
        config = self.read_config(path)
        assert config is not None
        if defer:
            return await store_config(self.storage, config)
        self._emit("planned", total=len(config.certificates))
        outcomes = await apply_config(self.manager, config)
        if not any(settings.installer for settings in config.certificates):
            return outcomes
        from certherd.app.installing import install_configured

        return await install_configured(self.storage, self.config_dir, config, outcomes)

    async def issue(
        self,
        names: Sequence[str],
        *,
        solvers: Sequence[SolverSpec | Mapping[str, Any]],
        lineage: str | None = None,
        directory_url: str | None = None,
        ca: str | None = None,
        ca_bundle: str | None = None,
        email: str | None = None,
        agree_tos: bool = False,
        eab: EabSettings | None = None,
        account: str = "default",
        fallback_cas: Sequence[CaSettings] = (),
        key_type: str = DEFAULT_KEY_TYPE,
        reuse_key: bool = False,
        profile: str | None = None,
        preferred_chain: str | None = None,
        hooks: HookSettings | None = None,
        notify: Sequence[NotifyTarget] = (),
        notify_expiry_days: int = 7,
        notify_timeout: float = 20.0,
        installer: InstallerSettings | None = None,
        force: bool = False,
    ) -> Outcome:
        """``certherd issue``: a certificate for ``names`` saved as a lineage that
        :meth:`renew` repeats; nothing is ordered while a lineage holding these names is
        not due (``force`` reissues); a lineage holding some of them is expanded.

        ``solvers``: :class:`SolverSpec` values, or tables as in certherd.toml's
        ``solvers`` (``{"kind": "http", "listen": "80"}``; ``names`` limits one to those
        names). ``lineage``: its name (default: the lineage holding these names, else the
        first name). The CA: ``directory_url``, or ``ca``, a known one (``letsencrypt``,
        the default, ``letsencrypt-staging``, ``zerossl``, ``google``...: see
        :data:`certherd.config.CA_PRESETS`); ``ca_bundle`` trusts a private CA's roots.
        ``email``, ``agree_tos`` and ``eab`` (External Account Binding: the
        key id and where its HMAC key comes from, e.g. ``EabSettings("kid",
        SecretRef("file", "/etc/certherd/eab.key"))``) are what the account is created
        with, now or by a later renewal if it is lost. ``fallback_cas``: the CAs tried
        after that one, in order, when it fails in a way another CA could fix, each a
        :class:`~certherd.settings.CaSettings` with its own account details
        (docs/failover.md). ``notify``: apprise URLs told when a renewal fails, the
        certificate expires within ``notify_expiry_days`` unrenewed, or it recovers
        (waiting ``notify_timeout`` seconds at most for them per message), each a
        :class:`~certherd.settings.NotifyTarget` (a reference, like
        ``NotifyTarget(SecretRef("env", "NOTIFY_URL"))``: docs/notifications.md).
        ``installer``: the web server to serve it from once issued, reloaded after each
        renewal (``InstallerSettings("nginx", (("server_root", "/etc/nginx"),))``:
        docs/installers.md). Raises a CertherdError when the certificate cannot be
        obtained."""
        from certherd.challenges.options import solver_from_table
        from certherd.config import resolve_directory_url
        from certherd.names import canonical_names
        from certherd.settings import NOTIFY_TIMEOUTS, HookSettings, LineageSettings
        from certherd.storage.layout import check_name, lineage_for

        refuse_text(names, "names")
        checked = canonical_names(tuple(names))
        if email:
            _check_email(email)
        if not NOTIFY_TIMEOUTS[0] <= notify_timeout <= NOTIFY_TIMEOUTS[1]:
            low, high = NOTIFY_TIMEOUTS
            raise ConfigError(
                f"notify_timeout must be a number of seconds from {low:g} to {high:g}, "
                f"not {notify_timeout!r}"
            )
        specs = tuple(solver_from_table(item) for item in solvers)
        settings = LineageSettings(
            name=check_name(lineage) if lineage else lineage_for(checked[0]),
            names=checked,
            directory_url=resolve_directory_url(directory_url, ca),
            solvers=specs,
            account=account,
            ca_bundle=ca_bundle,
            key_type=key_type,
            reuse_key=reuse_key,
            profile=profile,
            preferred_chain=preferred_chain,
            hooks=hooks or HookSettings(),
            email=email,
            agree_tos=agree_tos,
            eab=eab,
            fallback_cas=tuple(fallback_cas),
            notify=tuple(notify),
            notify_expiry_days=notify_expiry_days,
            notify_timeout=notify_timeout,
            installer=installer,
        )
        return await self.issue_lineage(settings, force=force, named=lineage is not None)

    async def issue_lineage(
        self, settings: LineageSettings, *, force: bool = False, named: bool = False
    ) -> Outcome:
        """:meth:`issue` with the settings built already (they carry the CA and account).
        The solvers are built first, so a bad port or DNS provider (and, without pre
        hooks, which may make it, a missing webroot) is a ConfigError before any account
        is looked up."""
        choice = self.solvers.choice(settings.solvers)
        if not settings.hooks.pre:
            choice.preflight()
        if settings.installer is None:
            return await self.manager.request(settings, force=force, named=named)
        from certherd.app.installing import check_installer, install_lineage

        await check_installer(settings)  # a server that fails its own test: refused
        outcome = await self.manager.request(settings, force=force, named=named)
        if outcome.action != "failed":
            await install_lineage(self.storage, self.config_dir, settings, settings.installer)
        return outcome

    async def install(
        self, name: str, installer: InstallerSettings | None = None
    ) -> LineageSettings:
        """Install lineage ``name``'s live certificate into a web server (``certherd
        install``; default: the installer its settings name) and keep the installer in
        its settings; returns the settings."""
        from certherd.app.installing import install_lineage

        settings, _state = await self.load(name)
        installer = installer or settings.installer
        if installer is None:
            raise ConfigError(
                f"the lineage {name} names no web server: give one ({{installer}})",
                settings=("installer",),
            )
        return await install_lineage(self.storage, self.config_dir, settings, installer)

    async def uninstall(self, name: str) -> bool:
        """Take away what the installer added for ``name`` (``certherd uninstall``)."""
        from certherd.app.installing import uninstall_lineage

        settings, _state = await self.load(name)
        return await uninstall_lineage(self.storage, settings)

    # -- certherd list / show / revoke / delete -----------------------------------------

    async def lineages(self) -> list[str]:
        """The names of every stored lineage."""
        return await self.manager.lineages()

    async def load(self, name: str) -> tuple[LineageSettings, LineageState]:
        """Settings and state of lineage ``name`` (the state follows what is live)."""
        try:
            return await self.manager.load(name)
        except NotFoundError as exc:
            raise ConfigError.saying(exc) from None

    async def check(
        self, names: Sequence[str] | None = None, *, http_port: int = 80
    ) -> list[Finding]:
        """``certherd check``: from this host, what would stop the next renewal of each
        lineage (or those named); nothing is ordered or changed. ``http_port``: where
        the CA fetches http-01 answers (80; a test CA may use another). See
        :mod:`certherd.app.check`."""
        from certherd.app.check import Finding, check_lineages

        refuse_text(names, "names")
        wanted = tuple(names or ())
        _check_known(wanted, await self.lineages())
        found = []
        try:
            self.read_config()
        except ConfigError as exc:
            found.append(Finding("", "config", "fail", exc.text(300)))
        return found + await check_lineages(self, wanted or None, http_port=http_port)

    async def records(self) -> list[LineageRecord]:
        """Every lineage for ``certherd list``: a damaged one is a record with ``error``,
        never the end of the whole list; one deleted meanwhile is left out."""
        from certherd.app.events import LineageRecord
        from certherd.errors import CertherdError, safe_text

        records = []
        for name in await self.lineages():
            try:
                settings, state = await self.manager.load(name)
            except NotFoundError:
                continue  # deleted while we listed
            except CertherdError as exc:
                records.append(LineageRecord(name, None, None, safe_text(exc, 500)))
                continue
            records.append(LineageRecord(name, settings, state))
        return records

    async def leases(self) -> dict[str, Lease]:
        """The leases held now, by name (a lineage's name: a node works on it), where the
        storage can tell (a shared one: PostgreSQL); else none."""
        from certherd.storage.base import LeaseListing

        if isinstance(self.storage, LeaseListing):
            return await self.storage.held()
        return {}

    async def schedule(self) -> dict[str, ScheduleEntry]:
        """A fleet's schedule (a shared storage that keeps one: PostgreSQL), by lineage:
        when each is due, its live version, when and by which node it was obtained;
        else empty."""
        from certherd.storage.fleet import fleet_of

        fleet = fleet_of(self.storage)
        return await fleet.schedule() if fleet is not None else {}

    async def revoke(
        self, name: str, reason: RevocationReason | None = None, *, delete: bool = False
    ) -> Revocation:
        """Revoke the live certificate of ``name`` (the next renew replaces it), then
        with ``delete`` remove the lineage and its files."""
        from certherd.app.events import Revocation

        await self.load(name)
        state = await self.manager.revoke(name, reason)
        removed = await self.manager.delete(name) if delete else None
        return Revocation(state, removed)

    async def delete(self, name: str) -> int:
        """Remove lineage ``name`` and all its files (a damaged one too); how many."""
        from certherd.storage.base import has_value
        from certherd.storage.layout import renewal_settings

        if not await has_value(self.storage, renewal_settings(name)):
            await self.load(name)  # a ConfigError for an unknown name
        return await self.manager.delete(name)

    # -- certherd import-certbot --------------------------------------------------------

    async def import_certbot(
        self,
        directory: str | os.PathLike[str] = "/etc/letsencrypt",
        *,
        ca_bundle: str | None = None,
        hook_dir: str | os.PathLike[str] | None = None,
        replace: bool = False,
        dry_run: bool = False,
    ) -> list[ImportResult]:
        """Adopt a Certbot configuration: its lineages (every version), renewal settings,
        hooks (copied to ``hook_dir``, default the config dir's ``hooks``) and account."""
        from certherd.migrate.certbot_import import import_certbot

        if hook_dir is None and self.config_dir is not None:
            hook_dir = self.config_dir.resolve() / "hooks"
        return await import_certbot(
            Path(directory),
            self.storage,
            ca_bundle=ca_bundle,
            hook_dir=Path(hook_dir) if hook_dir is not None else None,
            replace=replace,
            dry_run=dry_run,
        )


def _check_known(names: Sequence[str], known: list[str]) -> None:
    """A lineage named that does not exist is a ConfigError (as in ``load``, ``revoke``
    and ``delete``); nothing is renewed then."""
    unknown = sorted(set(names).difference(known))
    if unknown:
        listed = ", ".join(repr(name) for name in unknown)
        raise ConfigError(f"no lineage named {listed}: see `certherd list`")


def _check_email(email: str) -> None:
    from certherd.acme.client import contact_uris

    try:
        contact_uris([email])
    except ConfigError:
        raise ConfigError(
            f"{{email}} {email!r} is not an e-mail address: write NAME@DOMAIN", settings=("email",)
        ) from None
