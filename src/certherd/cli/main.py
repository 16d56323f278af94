"""The ``certherd`` command: a click group whose commands are imported only when run.

Start-up stays small: this module imports click and nothing heavy; each command's
module (and ``rich``, ``cryptography``, ``httpx``) loads when that command runs.
Exit codes: 0 success, 1 a certificate failed, 2 usage or config error.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.util
import os
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from certherd import __version__
from certherd.cli.signals import Terminated, stop_like_ctrl_c

# Start-up of the command (not of the library): httpx's __init__ imports its own CLI
# (rich, pygments) when those are installed, and httpcore imports trio when it is
# installed; this process uses neither, so they are marked absent before httpx loads.
# Both packages treat the ImportError as "not installed". About 100-170 ms per run.
# httpcore also tries `import sniffio` for every lock it makes (about 8 per request);
# sniffio is a dependency, but should it be missing, answer the failed search at once.
_absent = ["httpx._main", "trio"]
if importlib.util.find_spec("sniffio") is None:
    _absent.append("sniffio")
for _unused in _absent:
    sys.modules.setdefault(_unused, None)  # type: ignore[arg-type]

__all__ = ["Terminated", "entry", "main", "stop_like_ctrl_c"]

# name -> "module:attribute" of the click command, imported on use.
COMMANDS: dict[str, tuple[str, str]] = {
    "account": ("certherd.cli.account:account", "Manage the ACME account for a CA."),
    "apply": ("certherd.cli.apply:apply", "Obtain what certherd.toml lists and is missing."),
    "check": (
        "certherd.cli.check:check",
        "Check what would stop the next renewal, from this host.",
    ),
    "completion": (
        "certherd.cli.completion:completion",
        "Print the shell completion script (bash, zsh, fish).",
    ),
    "delete": ("certherd.cli.lineages:delete", "Delete a lineage and its files."),
    "demo": ("certherd.cli.demo:demo", "Issue a real certificate from a local Pebble test CA."),
    "issue": ("certherd.cli.issue:issue", "Obtain a certificate and save it as a lineage."),
    "import-certbot": (
        "certherd.cli.import_certbot:import_certbot",
        "Adopt the lineages and account of a Certbot setup.",
    ),
    "install": (
        "certherd.cli.installers:install",
        "Serve a lineage's certificate through a web server (--nginx, --apache, --haproxy).",
    ),
    "list": ("certherd.cli.lineages:list_lineages", "List lineages: names, expiry, next renewal."),
    "renew": ("certherd.cli.lineages:renew", "Renew the lineages that are due."),
    "revoke": ("certherd.cli.lineages:revoke", "Revoke a lineage's certificate."),
    "run": ("certherd.cli.run:run", "The daemon: renew on time, serve metrics."),
    "schedule": ("certherd.cli.schedule:schedule", "Install the twice-daily renew timer."),
    "show": ("certherd.cli.lineages:show", "Show one lineage."),
    "storage-key": (
        "certherd.cli.storage_key:storage_key",
        "Seal private keys in the --storage database: new key file, reseal.",
    ),
    "uninstall": (
        "certherd.cli.installers:uninstall",
        "Take certherd's lines out of the web server again.",
    ),
}


GLOBAL_HELP = {
    "config_dir": "Accounts, certificates and config (env CERTHERD_DIR; default /etc/certherd "
    "for root, else ~/.config/certherd).",
    "storage": "Keep accounts, certificates and state in this storage instead of the config "
    "dir: postgresql://USER@HOST[:PORT]/DB (any libpq URL; the password from PGPASSWORD or "
    "PGPASSFILE, never needed here). Env CERTHERD_STORAGE.",
    "storage_key_file": "Seal private keys with the key in FILE before they reach the "
    "--storage database (the same file on every node; `certherd storage-key new FILE` "
    "makes one). Env CERTHERD_STORAGE_KEY_FILE.",
    "storage_timeout": "Seconds one call to the --storage database may take before it "
    "fails (default 30, 1 to 3600; a `run --node` takes at most a third of --lease-ttl). "
    "Env CERTHERD_STORAGE_TIMEOUT.",
    "json_output": "Print one JSON document on stdout (results only; diagnostics on stderr).",
    "quiet": "Print only errors.",
    "verbose": "Log ACME requests, challenge steps, propagation checks and lock waits on "
    "stderr; -vv adds request headers (never secrets).",
}


def _global_options(*, after_command: bool) -> list[click.Option]:
    """The global options; after a command they update what the group already set."""
    late: dict[str, Any] = (
        {"expose_value": False, "callback": _set_late_option} if after_command else {}
    )
    return [
        click.Option(
            ["--config-dir", "config_dir"],
            type=click.Path(file_okay=False, path_type=Path),
            envvar=None if after_command else "CERTHERD_DIR",
            metavar="DIR",
            help=GLOBAL_HELP["config_dir"],
            **late,
        ),
        click.Option(
            ["--storage", "storage"],
            envvar=None if after_command else "CERTHERD_STORAGE",
            metavar="URL",
            help=GLOBAL_HELP["storage"],
            **late,
        ),
        click.Option(
            ["--storage-key-file", "storage_key_file"],
            type=click.Path(dir_okay=False, path_type=Path),
            envvar=None if after_command else "CERTHERD_STORAGE_KEY_FILE",
            metavar="FILE",
            help=GLOBAL_HELP["storage_key_file"],
            **late,
        ),
        click.Option(
            ["--storage-timeout", "storage_timeout"],
            envvar=None if after_command else "CERTHERD_STORAGE_TIMEOUT",
            metavar="SECONDS",
            help=GLOBAL_HELP["storage_timeout"],
            **late,
        ),
        click.Option(
            ["--json", "json_output"], is_flag=True, help=GLOBAL_HELP["json_output"], **late
        ),
        click.Option(["-q", "--quiet"], is_flag=True, help=GLOBAL_HELP["quiet"], **late),
        click.Option(["-v", "--verbose"], count=True, help=GLOBAL_HELP["verbose"], **late),
    ]


def _set_late_option(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A global option written after the command (``certherd list --json``)."""
    from certherd.cli.common import Context

    state = ctx.find_object(Context)
    if state is None or not value:  # shell completion parses without running the group
        return value
    state.update(**{param.name or "": value})
    return value


def _with_global_options(command: click.Command) -> click.Command:
    """Let the global options follow ``command`` (and its subcommands) too."""
    if getattr(command, "_certherd_globals", False):
        return command
    taken = {opt for param in command.params for opt in getattr(param, "opts", ())}
    for option in _global_options(after_command=True):
        if not taken.intersection(option.opts):
            command.params.append(option)
    if isinstance(command, click.Group):
        for child in command.commands.values():
            _with_global_options(child)
    command._certherd_globals = True  # type: ignore[attr-defined]
    return command


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target[0].split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command)
        return _with_global_options(command)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            from certherd.cli.common import Context, unusable_config_dir

            state = ctx.find_object(Context)
            if state is not None:
                if state.storage is None:  # the config dir holds the state
                    unusable_config_dir(state.config_dir, exc)  # raises ConfigError (exit 2)
                if getattr(exc, "settings", ()):
                    # Printed by main(): the settings it names, as this command sets them.
                    exc.args = (state.words(exc),)
            raise

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, help_text) in sorted(COMMANDS.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Global options may also follow the command: `certherd list --json`.",
)
@click.version_option(__version__, prog_name="certherd", message="%(prog)s %(version)s")
@click.pass_context
def cli(
    ctx: click.Context,
    config_dir: Path | None,
    storage: str | None,
    storage_key_file: Path | None,
    storage_timeout: str | None,
    json_output: bool,
    quiet: bool,
    verbose: int,
) -> None:
    """certherd: obtain, install and renew certificates over ACME (RFC 8555)."""
    from certherd.cli.common import Context
    from certherd.config_dir import default_config_dir

    ctx.obj = Context(
        config_dir=config_dir or default_config_dir(), command=ctx.invoked_subcommand or ""
    )
    ctx.obj.update(
        storage=storage,
        storage_key_file=storage_key_file,
        storage_timeout=storage_timeout,
        json_output=json_output,
        quiet=quiet,
        verbose=verbose,
    )


cli.params.extend(_global_options(after_command=False))


class _Interrupted(SystemExit):
    """Exit code 128 + ``signum``; :func:`entry` then ends the process by that signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


def _interrupted(exc: BaseException | None) -> NoReturn:
    signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
    click.echo(f"certherd: interrupted ({signal.Signals(signum).name})", err=True)
    raise _Interrupted(signum)


def main(argv: list[str] | None = None) -> Any:
    """Entry point: run the CLI and turn certherd errors into one line and an exit code."""
    try:
        return cli.main(args=argv, prog_name="certherd", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:  # click's form of KeyboardInterrupt
        _interrupted(exc.__cause__)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except KeyboardInterrupt as exc:
        _interrupted(exc)
    except Exception as exc:
        from certherd.errors import CertherdError, ConfigError, UnavailableError, safe_text

        if not isinstance(exc, CertherdError):
            raise
        click.echo(f"certherd: error: {safe_text(exc, 2000)}", err=True)
        sys.exit(2 if isinstance(exc, ConfigError | UnavailableError) else 1)


def entry() -> NoReturn:
    """The ``certherd`` program: :func:`main`, then an exit without interpreter teardown.

    Tearing down the modules of an issuance (asyncio, httpx, cryptography) costs about
    40 ms and does nothing for a process about to end. Everything that teardown would
    do for us still happens: atexit handlers (logging's flush, weakref finalizers) run
    and stdout/stderr are flushed. The normal exit is taken when other threads still
    run (they are waited for) and under a profiler, tracer or coverage. Stopped by a
    signal (Ctrl-C, SIGTERM, SIGHUP), the process ends by that signal once cleaned up.
    """
    stop_like_ctrl_c()
    signum: int | None = None
    try:
        result = main()
        code: object = result if isinstance(result, int) else 0
    except SystemExit as exc:
        code = exc.code
        if isinstance(exc, _Interrupted):
            signum = exc.signum
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)  # a closed or broken stream: let Python report it as usual
    if signum is not None:
        # Cleaned up: now end by the signal itself, so a parent (a shell, systemd) sees
        # the process killed by it, not an ordinary exit (as CPython does for Ctrl-C).
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    threading = sys.modules.get("threading")  # never imported: no other thread exists
    if threading is not None and threading.active_count() > 1:
        sys.exit(code)
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)  # a profiler or coverage writes its report at teardown
    os._exit(code)


if __name__ == "__main__":
    entry()
