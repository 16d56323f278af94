"""``certherd issue``: obtain a certificate and save it as a lineage that ``renew`` repeats."""

from __future__ import annotations

from typing import Any

import click

from certherd.cli.common import (
    Context,
    ca_options,
    ca_settings,
    exit_for,
    key_type_option,
    pass_context,
    run_async,
    unusable_config_dir,
)
from certherd.cli.installers import installer_options

__all__ = ["issue", "issue_settings", "solver_options", "solver_specs"]


def solver_options(command: Any) -> Any:
    """The solver flags of ``issue`` (shared with other commands that obtain)."""
    options = [
        click.option(
            "--http",
            "http",
            metavar="[ADDR:]PORT",
            is_flag=False,
            flag_value="80",
            default=None,
            help="Answer http-01 with the built-in server (default port 80).",
        ),
        click.option(
            "--webroot",
            "webroots",
            metavar="DIR",
            multiple=True,
            help="Answer http-01 by writing under DIR (once for all names, or once per "
            "-d name, in order).",
        ),
        click.option(
            "--webroot-map",
            "webroot_map",
            metavar="NAME=DIR",
            multiple=True,
            help="The webroot of one name.",
        ),
        click.option(
            "--tls-alpn",
            "tls_alpn",
            metavar="[ADDR:]PORT",
            is_flag=False,
            flag_value="443",
            default=None,
            help="Answer tls-alpn-01 with the built-in server (default port 443).",
        ),
        click.option(
            "--fleet-solver",
            "fleet_solver",
            metavar="CHALLENGE",
            type=click.Choice(["http-01", "tls-alpn-01"]),
            help="Answer CHALLENGE through the shared storage: any node run with "
            "--http-serve / --tls-alpn-serve answers it.",
        ),
        click.option(
            "--dns",
            "dns",
            metavar="PROVIDER",
            help="Answer dns-01 through PROVIDER: rfc2136, exec, or a lexicon provider.",
        ),
        click.option(
            "--dns-opt",
            "dns_opts",
            metavar="KEY=VALUE",
            multiple=True,
            help="A DNS provider setting. A secret by reference: KEY:file=PATH (a file "
            "holding it) or KEY:env=NAME (an environment variable); a secret given as a "
            "value is visible to other users while certherd runs.",
        ),
        click.option(
            "--dns-propagation-timeout",
            type=float,
            metavar="SECONDS",
            help="Wait this long for every name server to serve the record (0 skips).",
        ),
        click.option(
            "--dns-resolver",
            metavar="ADDR[:PORT]",
            help="Check propagation against this server instead of the zone's own.",
        ),
        click.option(
            "--solver-hook",
            "solver_hooks",
            metavar="TYPE=PROGRAM",
            multiple=True,
            help="Answer challenge TYPE by running PROGRAM present|cleanup.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _pairs(values: tuple[str, ...], flag: str) -> list[tuple[str, str]]:
    from certherd.errors import ConfigError

    pairs = []
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {value!r}: write KEY=VALUE")
        pairs.append((key.strip(), rest))
    return pairs


def _dns_settings(values: tuple[str, ...]) -> dict[str, Any]:
    """``--dns-opt`` values: ``KEY=VALUE``, or a secret by reference ``KEY:file=PATH`` /
    ``KEY:env=NAME`` (as ``{"file": PATH}`` / ``{"env": NAME}``)."""
    from certherd.errors import ConfigError

    settings: dict[str, Any] = {}
    for key, value in _pairs(values, "--dns-opt"):
        name, colon, source = key.partition(":")
        if colon:
            if source not in ("file", "env") or not value:
                raise ConfigError(
                    f"--dns-opt {key}=...: write KEY=VALUE, KEY:file=PATH or KEY:env=NAME"
                )
            settings[name] = {source: value}
        else:
            settings[key] = value
    return settings


def _spec(kind: str, options: dict[str, Any], names: tuple[str, ...] = ()) -> Any:
    """A spec checked against its kind's schema; a flag names its mistakes as flags."""
    from certherd.challenges.options import solver_spec
    from certherd.challenges.spec import SecretRef
    from certherd.errors import ConfigError
    from certherd.schema import SchemaError

    try:
        return solver_spec(kind, options, names, strict=False, inline=SecretRef("value"))
    except SchemaError as err:
        if kind != "dns":
            flags = {"http": "--http", "webroot": "--webroot", "tls-alpn": "--tls-alpn"}
            raise ConfigError(f"{flags.get(kind, '--solver-hook')}: {err}") from None
        own = {
            "provider": "--dns",
            "propagation_timeout": "--dns-propagation-timeout",
            "resolver": "--dns-resolver",
        }
        flag = own.get(str(err.path[0])) if err.path else "--dns"
        if flag:
            raise ConfigError(f"{flag}: {err}") from None
        raise ConfigError(f"--dns-opt {err}") from None


def exposed_secrets(specs: Any) -> list[str]:
    """Warnings for the secrets given as values on the command line."""
    return [
        f"--dns-opt {key}=... is visible to other users of this machine while certherd "
        f"runs (ps, /proc): give it as {key}:file=PATH or {key}:env=NAME; it is kept in "
        "the lineage's settings file, readable only by its owner"
        for spec in specs
        for key, ref in spec.secrets.items()
        if ref.source == "value"
    ]


def solver_specs(
    params: dict[str, Any], names: tuple[str, ...], first: tuple[Any, ...] = ()
) -> tuple[Any, ...]:
    """SolverSpecs from the solver flags (popped from ``params``): http, webroot and
    tls-alpn first, so plain names use them; dns last (and for wildcards). Each is
    checked against its kind's schema (and its DNS provider's): a mistake is a usage
    error before any CA is contacted."""
    from certherd.challenges.spec import SolverSpec
    from certherd.errors import ConfigError

    specs: list[SolverSpec] = list(first)
    http = params.pop("http", None)
    if http:
        specs.append(_spec("http", {"listen": http}))
    webroots: tuple[str, ...] = params.pop("webroots", ())
    plain = [n for n in names if not n.startswith("*.")]
    if len(webroots) == 1:
        specs.append(_spec("webroot", {"path": webroots[0]}))
    elif webroots:
        if len(webroots) != len(plain):
            raise ConfigError(
                f"{len(webroots)} --webroot for {len(plain)} names: give one for all names, "
                "one per -d name in order, or use --webroot-map NAME=DIR"
            )
        for name, root in zip(plain, webroots, strict=True):
            specs.append(_spec("webroot", {"path": root}, (name,)))
    for name, root in _pairs(params.pop("webroot_map", ()), "--webroot-map"):
        specs.append(_spec("webroot", {"path": root}, (name,)))
    tls_alpn = params.pop("tls_alpn", None)
    if tls_alpn:
        specs.append(_spec("tls-alpn", {"listen": tls_alpn}))
    fleet = params.pop("fleet_solver", None)
    if fleet:
        specs.append(_spec("fleet", {"challenge": fleet}))
    for kind, program in _pairs(params.pop("solver_hooks", ()), "--solver-hook"):
        specs.append(_spec("hook", {"challenge": kind, "command": program}))
    dns = params.pop("dns", None)
    dns_opts = _dns_settings(params.pop("dns_opts", ()))
    timeout = params.pop("dns_propagation_timeout", None)
    resolver = params.pop("dns_resolver", None)
    if dns:
        options = {"provider": dns, **dns_opts}
        if timeout is not None:
            options["propagation_timeout"] = str(timeout)
        if resolver:
            options["resolver"] = resolver
        specs.append(_spec("dns", options))
    elif dns_opts or timeout is not None or resolver:
        raise ConfigError("--dns-opt, --dns-propagation-timeout and --dns-resolver need --dns")
    if not specs:
        raise ConfigError(
            "say how to prove the names: --http, --webroot DIR, --tls-alpn, --dns PROVIDER, "
            "--fleet-solver CHALLENGE, --nginx or --apache (--haproxy serves the certificate, "
            "it proves no name)"
        )
    return tuple(specs)


def issue_settings(params: dict[str, Any]) -> Any:
    """The certificate's :class:`~certherd.settings.LineageSettings` from the flags of
    ``issue`` (popped from ``params``), checked before any CA is asked: the names as
    the CA will judge them, the CA flags, then the solvers."""
    from certherd.cli.installers import installer_settings, installer_solver
    from certherd.names import canonical_names
    from certherd.settings import HookSettings, LineageSettings
    from certherd.storage.layout import check_name, lineage_for

    names = canonical_names(params.pop("names"))
    lineage = params.pop("lineage", None)
    ca = ca_settings(params)
    installer = installer_settings(params)
    solver = installer_solver(installer) if installer is not None else None
    first = (solver,) if solver is not None else ()
    return LineageSettings(
        name=check_name(lineage) if lineage else lineage_for(names[0]),
        names=names,
        solvers=solver_specs(params, names, first),
        installer=installer,
        key_type=params.pop("key_type"),
        reuse_key=params.pop("reuse_key"),
        profile=params.pop("profile"),
        preferred_chain=params.pop("preferred_chain"),
        hooks=HookSettings(
            pre=params.pop("pre_hooks"),
            post=params.pop("post_hooks"),
            deploy=params.pop("deploy_hooks"),
            failure=params.pop("failure_hooks"),
        ),
        notify=notify_targets(params),
        notify_expiry_days=params.pop("notify_expiry_days"),
        notify_timeout=params.pop("notify_timeout"),
        **ca,
    )


def notify_targets(params: dict[str, Any]) -> tuple[Any, ...]:
    """``--notify-env NAME`` / ``--notify-file FILE``: apprise URLs by reference (a URL
    can hold a password or token, so it is never given on the command line), each read
    once now so a typo fails before any order."""
    import os
    from pathlib import Path

    from certherd.challenges.spec import SecretRef
    from certherd.errors import ConfigError
    from certherd.settings import NotifyTarget

    targets = [NotifyTarget(SecretRef("env", name)) for name in params.pop("notify_env")]
    targets += [
        NotifyTarget(SecretRef("file", str(Path(path).absolute())))
        for path in params.pop("notify_file")
    ]
    for target in targets:
        url = target.read(os.environ)
        if "://" not in url:
            raise ConfigError(
                f"the notify URL from {target.url.describe()} is not a URL: write one as "
                "apprise reads it, like mailtos://user:password@smtp.example.com?to=ops@..."
            )
    return tuple(targets)


@click.command("issue")
@click.option(
    "-d",
    "--domain",
    "names",
    multiple=True,
    required=True,
    metavar="NAME",
    help="A name (or IP address) for the certificate; repeat for more.",
)
@click.option(
    "--name",
    "lineage",
    metavar="LINEAGE",
    help="Lineage name (default: the lineage holding these names, else the first name, "
    "'*' as '_'); an existing lineage's names are replaced by these.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Order a new certificate even if a lineage holding these names is not due.",
)
@solver_options
@key_type_option
@click.option("--profile", metavar="P", help="The CA's certificate profile (e.g. tlsserver).")
@click.option("--preferred-chain", metavar="CN", help="Prefer the chain whose issuer is CN.")
@click.option("--reuse-key", is_flag=True, help="Keep the private key across renewals.")
@click.option(
    "--pre-hook",
    "pre_hooks",
    multiple=True,
    metavar="CMD",
    help="Run before each order (e.g. open the firewall); a failure is reported, the "
    "order goes on. Repeat for more; renew repeats them.",
)
@click.option(
    "--post-hook",
    "post_hooks",
    multiple=True,
    metavar="CMD",
    help="Run after each order, whether it succeeded or not (e.g. close the firewall).",
)
@click.option(
    "--deploy-hook",
    "deploy_hooks",
    multiple=True,
    metavar="CMD",
    help="Run after a new certificate is saved (RENEWED_LINEAGE is set).",
)
@click.option(
    "--failure-hook",
    "failure_hooks",
    multiple=True,
    metavar="CMD",
    help="Run when obtaining or renewing fails (CERTHERD_ERROR is set): tell someone.",
)
@installer_options
@click.option(
    "--notify-env",
    "notify_env",
    multiple=True,
    metavar="NAME",
    help="Tell the apprise URL in environment variable NAME when renewing fails, the "
    "certificate expires soon, or it recovers (docs/notifications.md); repeat for more.",
)
@click.option(
    "--notify-file",
    "notify_file",
    multiple=True,
    metavar="FILE",
    help="Like --notify-env, the URL read from FILE (mode 0600: it may hold a password).",
)
@click.option(
    "--notify-expiry-days",
    type=click.IntRange(1, 60),
    default=7,
    show_default=True,
    metavar="DAYS",
    help="Tell when the certificate expires within DAYS and was not renewed.",
)
@click.option(
    "--notify-timeout",
    type=click.FloatRange(1, 600),  # settings.NOTIFY_TIMEOUTS (not imported: CLI start)
    default=20,
    show_default=True,
    metavar="SECONDS",
    help="How long one message waits for its notify targets; a target that has not "
    "answered by then is logged as not sent.",
)
@ca_options
@pass_context
def issue(ctx: Context, /, **params: Any) -> None:
    """Obtain a certificate and save it as a lineage; again: nothing until it is due.

    Names already held by a lineage that is not due: nothing is ordered (--force
    reissues). A lineage holding some of the names is expanded to all of them."""
    from certherd.names import describe_name

    named = bool(params.get("lineage"))
    force: bool = params.pop("force")
    settings = issue_settings(params)
    shown = [describe_name(n) for n in settings.names]
    if shown != list(settings.names):
        ctx.say(f"names: {', '.join(shown)}")
    ctx.warn(exposed_secrets(settings.solvers))
    outcome = run_async(_issue(ctx, settings, force=force, named=named))
    exit_for(bool(outcome.hook_errors))


async def _issue(ctx: Context, settings: Any, *, force: bool, named: bool) -> Any:
    from certherd.cli.render import outcome_document, print_outcomes
    from certherd.errors import CertherdError, ConfigError, UnavailableError
    from certherd.manager.outcome import Outcome

    try:
        async with ctx.certherd() as certherd:
            outcome = await certherd.issue_lineage(settings, force=force, named=named)
    except CertherdError as exc:
        if ctx.storage is None:
            unusable_config_dir(ctx.config_dir, exc)  # a ConfigError (exit 2) if it is that
        if not ctx.json or isinstance(exc, ConfigError | UnavailableError):
            raise
        # --json promises one document, also when the certificate could not be obtained.
        failed = Outcome(settings.name, "failed", "requested", error=exc.text(1000))
        ctx.emit(outcome_document([failed], ctx.live_root, ctx.words))
        click.echo(f"certherd: error: {ctx.words(exc)}", err=True)  # as without --json
        raise SystemExit(1) from None
    ctx.emit(
        lambda: outcome_document([outcome], ctx.live_root, ctx.words),
        lambda: print_outcomes(ctx, [outcome]),
    )
    ctx.report_failures([outcome])
    return outcome
