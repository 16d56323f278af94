"""``notify`` in certherd.toml (issue 14 item 2): apprise URLs are secrets, so a URL
written in the file is stored as a reference to the file (read again by every run),
``{ env }``/``{ file }`` as references; never shown; bad URLs and day counts refused on
the line they are on; ``[defaults]`` applies unless a certificate says otherwise."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from certherd.challenges.spec import SecretRef
from certherd.config import load_config_file
from certherd.errors import ConfigError
from certherd.manager.service import Manager
from certherd.settings import LineageSettings, NotifyTarget
from certherd.storage.memory import MemoryStorage

URL = "mailto://ops:s3cret-pass@mail.example.test?to=oncall@example.test"
TOML = f"""\
[defaults]
solver = "http"
notify = ["{URL}", {{ env = "CERTHERD_SLACK_URL" }}]

[[certificate]]
domains = ["a.example.test"]

[[certificate]]
domains = ["b.example.test"]
notify = [{{ file = "/etc/certherd/notify-url" }}]
notify_expiry_days = 14
notify_timeout = 2.5

[[certificate]]
domains = ["c.example.test"]
notify = []
"""


def load(tmp_path: Path, text: str) -> tuple[Path, list[LineageSettings]]:
    path = tmp_path / "certherd.toml"
    path.write_text(textwrap.dedent(text))
    path.chmod(0o600)
    return path, list(load_config_file(path).certificates)


def test_urls_are_stored_as_references_and_never_shown(tmp_path: Path) -> None:
    path, (a, b, c) = load(tmp_path, TOML)
    assert a.notify == (
        NotifyTarget(SecretRef("config", str(path))),
        NotifyTarget(SecretRef("env", "CERTHERD_SLACK_URL")),
    )
    assert (a.notify_expiry_days, b.notify_expiry_days) == (7, 14)
    assert (a.notify_timeout, b.notify_timeout) == (20.0, 2.5)
    assert LineageSettings.from_json(b.to_json(), "renewal/b.json").notify_timeout == 2.5
    assert b.notify == (NotifyTarget(SecretRef("file", "/etc/certherd/notify-url")),)
    assert c.notify == ()
    stored = a.to_json().decode()
    assert "s3cret" not in stored
    assert json.loads(stored)["notify"] == [{"config": str(path)}, {"env": "CERTHERD_SLACK_URL"}]
    assert "s3cret" not in json.dumps(a.shown()) + repr(a)
    assert LineageSettings.from_json(a.to_json(), "renewal/a.json") == a
    # A URL given as a value (a library caller) is stored in the 0600 file, shown redacted.
    given = LineageSettings(
        name="x",
        names=("x",),
        directory_url="https://ca/d",
        solvers=(),
        notify=(NotifyTarget(SecretRef("value"), URL),),
    )
    assert URL in given.to_json().decode()
    assert json.loads(json.dumps(given.shown()))["notify"] == [{"value": "***"}]
    assert "s3cret" not in repr(given)


async def test_the_manager_reads_each_url_from_where_it_comes_from(tmp_path: Path) -> None:
    _, (a, b, _) = load(tmp_path, TOML)
    url_file = tmp_path / "notify-url"
    url_file.write_text("json://hooks.example.test/certherd\n")
    url_file.chmod(0o600)
    manager = Manager(MemoryStorage())
    manager.solvers.environ = {"CERTHERD_SLACK_URL": "slack://T1/B2/C3"}
    stored = LineageSettings.from_json(a.to_json(), "renewal/a.json")
    assert manager.notify_urls(stored) == [URL, "slack://T1/B2/C3"]
    with pytest.raises(
        ConfigError, match="notify URL comes from the file /etc/certherd/notify-url"
    ):
        manager.notify_urls(b)
    assert NotifyTarget(SecretRef("file", str(url_file))).read({}) == (
        "json://hooks.example.test/certherd"
    )
    await manager.aclose()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('notify = ["not a url"]', "certificate[0].notify[0] is not a notification URL"),
        ('notify = [{ vault = "x" }]', 'a URL by reference is { env = "VARIABLE" }'),
        ("notify_expiry_days = 0", "notify_expiry_days must be a number of days from 1 to 60"),
        ("notify_timeout = 0.5", "notify_timeout must be a number of seconds from 1 to 600"),
        ("notify_timeout = 601", "notify_timeout must be a number of seconds from 1 to 600"),
        ('notify_timeout = "20"', "notify_timeout"),
    ],
)
def test_bad_notify_settings_are_refused_on_their_line(
    tmp_path: Path, line: str, message: str
) -> None:
    text = f'[defaults]\nsolver = "http"\n\n[[certificate]]\ndomains = ["a.example.test"]\n{line}\n'
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert message in str(caught.value)
    assert ":6:" in str(caught.value)


async def test_known_secrets_take_solver_eab_and_environment_secrets() -> None:
    from certherd.challenges.spec import SolverSpec
    from certherd.settings import EabSettings

    manager = Manager(MemoryStorage())
    manager.solvers.environ = {"CERTHERD_RFC2136_KEY_SECRET": "tsig-from-env", "HOME": "/root"}
    settings = LineageSettings(
        name="x",
        names=("x.example.test",),
        directory_url="https://ca/d",
        solvers=(
            SolverSpec(
                "dns",
                {"provider": "rfc2136", "key_secret": "tsig-in-options"},
                secrets={"key_secret": SecretRef("value")},
            ),
        ),
        eab=EabSettings("kid", SecretRef("value"), "ZWFiLWtleS12YWx1ZQ"),
    )
    assert manager.known_secrets(settings) >= {
        "tsig-from-env",
        "tsig-in-options",
        "ZWFiLWtleS12YWx1ZQ",
    }
    assert "/root" not in manager.known_secrets(settings)
    await manager.aclose()
