"""What every command shares: the run context, the CA options, output, and running async.

Human output goes through ``rich`` (imported only when something is printed for
humans); ``--json`` prints exactly one JSON document on stdout; ``-q`` prints only
errors. Exit codes: 0 success (nothing due included), 1 a certificate failed, 2 usage or
configuration error.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from certherd.cli.signals import run_async  # commands import it from here
from certherd.key_types import DEFAULT_KEY_TYPE, KEY_TYPE_NAMES

if TYPE_CHECKING:
    from certherd.app import Certherd, Event

__all__ = [
    "Context",
    "build_ca",
    "ca_options",
    "ca_settings",
    "concurrency_option",
    "key_type_option",
    "pass_context",
    "run_async",
]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Context:
    """The global options of one ``certherd`` invocation."""

    config_dir: Path
    json: bool = False
    quiet: bool = False
    verbose: int = 0
    command: str = ""
    """The command run (``issue``, ``account``...): it decides how settings are named."""
    storage: str | None = None
    """``--storage URL`` (a database); None: the config dir holds everything."""
    storage_key_file: Path | None = None
    """``--storage-key-file FILE``: seals private values in the database."""
    storage_timeout: str | None = None
    """``--storage-timeout SECONDS``: how long one database call may take."""

    def update(
        self,
        *,
        config_dir: Path | None = None,
        storage: str | None = None,
        storage_key_file: Path | None = None,
        storage_timeout: str | None = None,
        json_output: bool = False,
        quiet: bool = False,
        verbose: int = 0,
    ) -> None:
        """Take global options (given before or after the command); later ones add up."""
        if config_dir is not None:
            self.config_dir = config_dir
        if storage:
            self.storage = storage
        if storage_key_file is not None:
            self.storage_key_file = storage_key_file
        if storage_timeout is not None:
            self.storage_timeout = storage_timeout
        self.json = self.json or json_output
        self.quiet = self.quiet or quiet
        self.verbose += verbose
        from certherd.cli.logs import configure_logging

        configure_logging(self.verbose, self.quiet)

    def words(self, text: Any, limit: int = 2000, *, lineage: str | None = None) -> str:
        """An error (or an outcome's error or reason) with the settings it names written
        as this command's user sets them: flags, or certherd.toml keys (cli/flags.py);
        ``lineage``: the lineage it is about."""
        if isinstance(text, str) and not getattr(text, "settings", ()):
            return text
        from certherd.cli.flags import words

        return words(text, self.command, self.config_dir, limit, lineage=lineage)

    def certherd(
        self,
        *,
        concurrency: int = 10,
        on_event: Callable[[Event], None] | None = None,
        node: str | None = None,
    ) -> Certherd:
        """The library entry point on this config dir; what it tells goes to ``on_event``
        (default :meth:`tell`); ``node``: this process's name in a fleet."""
        from certherd.app import Certherd

        return Certherd(
            self.storage or self.config_dir,
            concurrency=concurrency,
            on_event=on_event or self.tell,
            host_dir=self.config_dir if self.storage else None,
            node=node,
            storage_key=self.storage_key_file,
            storage_timeout=self.storage_timeout,
        )

    @property
    def live_root(self) -> Path:
        """Where this host's live files are (``live/NAME/``): the config dir, also with a
        database storage (each host keeps its copy of what is live)."""
        return self.config_dir

    @property
    def where(self) -> str:
        """The storage in words: the config dir, or the storage URL (password hidden)."""
        if self.storage is None:
            return str(self.config_dir)
        from certherd.storage.pgschema import redact

        return redact(self.storage)

    def tell(self, event: Event) -> None:
        """Print what the entry point tells as ``issue``, ``demo`` and ``run`` do: each
        step of a lineage's work, DNS propagation rounds, notices (stderr), warnings."""
        if event.kind == "step":
            self.say(f"{event.lineage}: {self.words(event.text, lineage=event.lineage)}")
        elif event.kind == "propagation":
            self.say(f"  {event.text}")
        elif event.kind == "notice":
            self.say(self.words(event.text))
        elif event.kind == "warning":
            self.warn([self.words(event.text)])

    @property
    def interactive(self) -> bool:
        """Whether stdout is a terminal (rich tables) rather than a pipe or a file."""
        return sys.stdout.isatty()

    def say(self, text: str) -> None:
        """Progress for humans (stderr, so stdout stays clean); silent with -q or --json."""
        if not self.quiet and not self.json:
            click.echo(text, err=True)

    def result(self, text: str) -> None:
        """A command's result for humans, on stdout; silent with -q (and --json prints the
        document instead: call it from the ``human`` side of :meth:`emit`)."""
        if not self.quiet:
            click.echo(text)

    def warn(self, warnings: Sequence[str]) -> None:
        """Warnings on stderr (also with --json: stdout stays one document); not with -q."""
        if not self.quiet:
            for warning in warnings:
                click.echo(f"certherd: warning: {warning}", err=True)

    def emit(self, document: Any, human: Callable[[], None] | None = None) -> None:
        """The command's result: one JSON document, or the human rendering.

        ``document`` may be a callable building it, so it is only built for --json.
        """
        if self.json:
            if callable(document):
                document = document()
            click.echo(json.dumps(document, indent=2, sort_keys=True, default=str))
        elif not self.quiet and human is not None:
            human()

    def report_failures(self, outcomes: Any) -> None:
        """With -q (or --json), still say on stderr what failed: cron mails it."""
        if not (self.quiet or self.json):
            return
        for outcome in outcomes:
            if outcome.failed:
                error = self.words(outcome.error, lineage=outcome.lineage)
                click.echo(f"certherd: {outcome.lineage}: failed: {error}", err=True)
            for problem in outcome.hook_errors:
                click.echo(f"certherd: {outcome.lineage}: {problem}", err=True)

    def console(self) -> Any:
        from rich.console import Console

        return Console(highlight=False, soft_wrap=False)


pass_context = click.make_pass_decorator(Context)

concurrency_option = click.option(
    "--concurrency",
    type=click.IntRange(1, 1000),
    default=10,
    show_default=True,
    help="Work on at most this many certificates at once.",
)
"""``--concurrency`` of every command that works on many certificates (apply, renew, run)."""

key_type_option = click.option(
    "--key-type",
    type=click.Choice(KEY_TYPE_NAMES),
    default=DEFAULT_KEY_TYPE,
    show_default=True,
    help="The certificate's key: ECDSA P-256 / P-384, or RSA of 2048-4096 bits.",
)
"""``--key-type`` of the commands that make a certificate key (issue, demo)."""


def ca_options(command: F) -> F:
    """The global CA options of every command that talks to a CA."""
    options = [
        click.option(
            "--server",
            metavar="URL",
            multiple=True,
            help="The CA's ACME directory URL; `issue` takes several, tried in order (fail-over).",
        ),
        click.option(
            "--ca",
            metavar="NAME",
            multiple=True,
            help="A known CA: letsencrypt (default), letsencrypt-staging, zerossl, google, "
            "google-staging, sslcom, actalis (or a directory URL); `issue` takes several, "
            "tried in order (fail-over).",
        ),
        click.option(
            "--ca-bundle",
            metavar="PEM",
            envvar="CERTHERD_CA_BUNDLE",
            type=click.Path(dir_okay=False, exists=True),
            help="Trust these roots for the CA's HTTPS (private CAs). Env CERTHERD_CA_BUNDLE.",
        ),
        click.option("--email", metavar="ADDR", help="Account contact address."),
        click.option("--agree-tos", is_flag=True, help="Agree to the CA's terms of service."),
        click.option("--eab-kid", metavar="KID", help="External Account Binding key id."),
        click.option(
            "--eab-hmac-key-file",
            metavar="FILE",
            type=click.Path(dir_okay=False, exists=True),
            help="File holding the EAB HMAC key (never pass the key on the command line).",
        ),
        click.option(
            "--eab-hmac-key-env",
            metavar="NAME",
            help="Environment variable holding the EAB HMAC key (instead of a file).",
        ),
        click.option("--account", default="default", show_default=True, hidden=True),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def ca_settings(params: dict[str, Any]) -> dict[str, Any]:
    """The CA and account settings of a certificate from the CA flags (popped from
    ``params``), named as :class:`~certherd.settings.LineageSettings` names them. The
    EAB HMAC key is kept by reference (its file, by absolute path, or its variable) and
    read once now, so a bad one is a usage error before any CA is asked."""
    import os
    from pathlib import Path

    from certherd.challenges.spec import SecretRef
    from certherd.config import resolve_directory_url
    from certherd.errors import ConfigError
    from certherd.settings import CaSettings, EabSettings

    servers, names = (params.pop(flag, None) or () for flag in ("server", "ca"))
    servers = (servers,) if isinstance(servers, str) else tuple(servers)  # one, as before
    names = (names,) if isinstance(names, str) else tuple(names)
    if servers and names:
        raise ConfigError(
            "give the CAs as --server URL or as --ca NAME, not both: with several CAs, "
            "--ca also takes directory URLs, in the order they are tried"
        )
    directories = (
        tuple(
            resolve_directory_url(n, None) if "://" in n else resolve_directory_url(None, n)
            for n in names
        )
        or tuple(resolve_directory_url(s, None) for s in servers)
        or (resolve_directory_url(None, None),)
    )
    if len(set(directories)) != len(directories):
        raise ConfigError("a CA is given twice: give each --ca or --server once")
    kid = params.pop("eab_kid", None)
    key_file = params.pop("eab_hmac_key_file", None)
    key_env = params.pop("eab_hmac_key_env", None)
    if key_file and key_env:
        raise ConfigError("give either --eab-hmac-key-file or --eab-hmac-key-env, not both")
    if bool(kid) != bool(key_file or key_env):
        raise ConfigError(
            "External Account Binding needs both --eab-kid and --eab-hmac-key-file "
            "(or --eab-hmac-key-env)"
        )
    email = params.pop("email", None)
    if email:
        from certherd.acme.client import contact_uris

        try:
            contact_uris([email])
        except ConfigError:
            raise ConfigError(
                f"--email {email!r} is not an e-mail address: write NAME@DOMAIN"
            ) from None
    eab = None
    if kid and len(directories) > 1:
        raise ConfigError(
            "External Account Binding belongs to one CA: with several CAs, write the "
            "certificate in certherd.toml and give the EAB in the table of its CA "
            "(see docs/failover.md)"
        )
    if kid:
        flag = "--eab-hmac-key-file" if key_file else "--eab-hmac-key-env"
        ref = SecretRef("file", str(Path(key_file).absolute())) if key_file else None
        eab = EabSettings(kid, ref or SecretRef("env", key_env))
        try:
            eab.binding(os.environ)
        except ConfigError as exc:
            said = exc.naming(lambda setting: "--eab-kid" if setting == "eab_kid" else flag)
            raise ConfigError(f"{flag}: {said}") from None
    cas = [
        CaSettings(
            directory_url=directory,
            account=params.get("account") or "default",
            ca_bundle=params.get("ca_bundle"),
            email=email,
            agree_tos=bool(params.get("agree_tos", False)),
            eab=eab,
        )
        for directory in directories
    ]
    for key in ("account", "ca_bundle", "agree_tos"):
        params.pop(key, None)
    return {**cas[0].as_fields(), "fallback_cas": tuple(cas[1:])}


def build_ca(params: dict[str, Any]) -> Any:
    """CaOptions from the CA flags (popped from ``params``), for the ``account``
    commands (no certificate: the EAB key is read now)."""
    import os

    from certherd.errors import ConfigError
    from certherd.manager.accounts import CaOptions

    settings = ca_settings(params)
    if settings.pop("fallback_cas"):
        raise ConfigError("an account belongs to one CA: give one --ca or --server")
    eab = settings.pop("eab")
    return CaOptions(**settings, eab=None if eab is None else eab.binding(os.environ))


def unusable_config_dir(config_dir: Path, error: BaseException) -> None:
    """After a storage error, raise a ConfigError (exit 2) if the config dir itself cannot
    be written (a mistyped or read-only ``--config-dir``), rather than a certificate
    failure (exit 1). Probed only on this error path: a directory is made and removed
    in the config dir, or in its nearest existing parent when it does not exist yet."""
    import errno
    import tempfile

    from certherd.errors import ConfigError, LockTimeoutError, NotFoundError, StorageError

    if not isinstance(error, StorageError) or isinstance(error, NotFoundError | LockTimeoutError):
        return
    probe = config_dir.absolute()
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.is_dir():
        try:
            tempfile.TemporaryDirectory(dir=probe, prefix=".certherd-probe-").cleanup()
            return
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EIO, errno.EDQUOT):
                return  # the machine's trouble, not a wrong option
            reason = {
                errno.EROFS: "the file system is read-only",
                errno.EACCES: "permission denied",
                errno.EPERM: "permission denied",
            }.get(exc.errno or 0, exc.strerror)
            why = f"cannot create anything in {probe} ({reason})"
    else:
        why = f"{probe} is not a directory"
    raise ConfigError(
        f"the config dir {config_dir} is not usable: {why}: "
        "give a writable --config-dir (or CERTHERD_DIR)"
    ) from error


def exit_for(failed: bool) -> None:
    """Exit 1 when a certificate failed, else return (exit 0)."""
    if failed:
        sys.exit(1)


def wraps_async(function: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Turn an async command body into a click callback."""

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> None:
        run_async(function(*args, **kwargs))

    return call
