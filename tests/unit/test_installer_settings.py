"""The installer as part of a lineage's settings: certherd.toml's ``installer`` table,
the stored ``renewal/NAME.json``, and the Installer built from them (issue 13)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from certherd.challenges.spec import SolverSpec
from certherd.config import load_config_file
from certherd.errors import ConfigError
from certherd.install.base import installer_for
from certherd.install.nginx.installer import NginxInstaller
from certherd.settings import InstallerSettings, LineageSettings


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "certherd.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_certherd_toml_installer_table(tmp_path: Path) -> None:
    path = config(
        tmp_path,
        """
        [[certificate]]
        domains = ["shop.example.org"]
        installer = { kind = "nginx", server_root = "/srv/nginx", https_port = 8443, redirect = true }

        [[certificate]]
        domains = ["api.example.org"]
        solver = "http"
        installer = { kind = "nginx" }
        """,  # noqa: E501
    )
    shop, api = load_config_file(path).certificates
    assert shop.installer == InstallerSettings(
        "nginx",
        (
            ("ctl", "nginx"),
            ("https_port", "8443"),
            ("redirect", "true"),
            ("server_root", "/srv/nginx"),
        ),
    )
    # No solver of its own: http-01 through that same nginx.
    assert shop.solvers == (SolverSpec("nginx", {"server_root": "/srv/nginx", "ctl": "nginx"}),)
    assert api.solvers == (SolverSpec("http"),)  # its own solver wins
    assert installer_for(shop.installer) == NginxInstaller(Path("/srv/nginx"), "nginx", 8443, True)
    assert api.installer is not None
    assert installer_for(api.installer) == NginxInstaller()


@pytest.mark.parametrize(
    ("table", "wrong"),
    [
        ('{ kind = "lighttpd" }', "kind"),
        ('{ kind = "nginx", https_port = 0 }', "https_port"),
        ('{ kind = "nginx", reload = true }', "reload"),
    ],
)
def test_certherd_toml_installer_mistakes(tmp_path: Path, table: str, wrong: str) -> None:
    path = config(tmp_path, f'[[certificate]]\ndomains = ["a.example.org"]\ninstaller = {table}\n')
    with pytest.raises(ConfigError) as caught:
        load_config_file(path)
    message = str(caught.value)
    assert wrong in message
    assert "certherd.toml:3" in message
    assert "\n" not in message


def test_stored_settings_keep_the_installer() -> None:
    installer = InstallerSettings("nginx", (("https_port", "443"), ("server_root", "/etc/nginx")))
    settings = LineageSettings(
        name="a.example.org",
        names=("a.example.org",),
        directory_url="https://ca.test/dir",
        solvers=(SolverSpec("nginx"),),
        installer=installer,
    )
    again = LineageSettings.from_json(settings.to_json(), "renewal/a.example.org.json")
    assert again == settings
    assert again.installer == installer
    # A settings file written before installers existed reads as "no installer".
    old = settings.to_json().replace(b'"installer"', b'"unrelated"')
    assert LineageSettings.from_json(old, "renewal/a.example.org.json").installer is None


def test_installer_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="unknown installer kind 'lighttpd'"):
        installer_for(InstallerSettings("lighttpd"))
    with pytest.raises(ConfigError, match="https_port"):
        installer_for(InstallerSettings("nginx", (("https_port", "x"),)))
    with pytest.raises(ConfigError, match="unknown nginx installer option 'listen'"):
        installer_for(InstallerSettings("nginx", (("listen", "80"),)))


def test_certherd_toml_haproxy_installer(tmp_path: Path) -> None:
    """``kind = "haproxy"``: its own options; it proves no name, so the certificate
    needs a solver of its own (or the file's defaults)."""
    from certherd.install.haproxy.installer import HaproxyInstaller

    path = config(
        tmp_path,
        """
        [[certificate]]
        domains = ["lb.example.org"]
        solver = "http"
        installer = { kind = "haproxy", crt_dir = "/srv/certs", socket = "/run/hap.sock", https_port = 8443 }
        """,  # noqa: E501
    )
    (lb,) = load_config_file(path).certificates
    assert lb.installer == InstallerSettings(
        "haproxy",
        (
            ("config", "/etc/haproxy/haproxy.cfg"),
            ("crt_dir", "/srv/certs"),
            ("ctl", "haproxy"),
            ("https_port", "8443"),
            ("socket", "/run/hap.sock"),
        ),
    )
    assert lb.solvers == (SolverSpec("http"),)
    assert installer_for(lb.installer) == HaproxyInstaller(
        Path("/etc/haproxy/haproxy.cfg"), Path("/srv/certs"), Path("/run/hap.sock"), "haproxy", 8443
    )
    bad = config(
        tmp_path,
        '[[certificate]]\ndomains = ["a.example.org"]\nsolver = "http"\n'
        'installer = { kind = "haproxy", server_root = "/etc/nginx" }\n',
    )
    with pytest.raises(ConfigError, match="server_root"):
        load_config_file(bad)
    chosen = config(
        tmp_path,
        '[[certificate]]\ndomains = ["b.example.org"]\nsolver = "http"\n'
        'installer = { kind = "haproxy", frontend = "www" }\n',
    )
    (www,) = load_config_file(chosen).certificates
    assert www.installer is not None
    assert dict(www.installer.options)["frontend"] == "www"
    assert installer_for(www.installer) == HaproxyInstaller(frontend="www")
    with pytest.raises(ConfigError, match="unknown haproxy installer option 'redirect'"):
        installer_for(InstallerSettings("haproxy", (("redirect", "true"),)))


def test_apache_flags_make_the_apache_installer_settings() -> None:
    from certherd.cli.installers import installer_settings, installer_solver

    settings = installer_settings({"apache": True, "https_port": 8443})
    assert settings == InstallerSettings(
        "apache",
        (
            ("ctl", "apache2ctl"),
            ("https_port", "8443"),
            ("redirect", "false"),
            ("server_root", "/etc/apache2"),
        ),
    )
    solver = installer_solver(settings)
    assert (solver.kind, solver.options) == (
        "apache",
        {"server_root": "/etc/apache2", "ctl": "apache2ctl"},
    )
    with pytest.raises(ConfigError, match="exclude each other"):
        installer_settings({"apache": True, "nginx": True})
    with pytest.raises(ConfigError, match="--apache-server-root and --apache-ctl need --apache"):
        installer_settings({"apache_ctl": "/usr/sbin/apachectl"})
    with pytest.raises(ConfigError, match="no --nginx or --apache options"):
        installer_settings({"haproxy": True, "apache": True})
    assert installer_for(settings).kind == "apache"
