"""SolverSpec keeps secrets as references and never shows them (issue 9, item 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from certherd.challenges.options import solver_spec
from certherd.challenges.spec import SecretRef, SolverSpec
from certherd.errors import ConfigError
from certherd.schema import REDACTED

SECRET = "c2VjcmV0LXZhbHVlLXRoYXQtbXVzdC1uZXZlci1zaG93"


def rfc2136(**secret: object) -> SolverSpec:
    options: dict[str, object] = {"provider": "rfc2136", "server": "192.0.2.1", **secret}
    return solver_spec("dns", options, strict=False, inline=SecretRef("value"))


def test_a_secret_given_as_a_value_is_stored_but_never_shown() -> None:
    spec = rfc2136(key_secret=SECRET)
    assert spec.secrets == {"key_secret": SecretRef("value")}
    assert SECRET not in repr(spec)
    assert SECRET not in str(spec.to_json())
    assert spec.to_json()["options"]["key_secret"] == {"value": REDACTED}
    stored = spec.to_json(reveal=True)
    assert stored["options"]["key_secret"] == {"value": SECRET}
    assert SolverSpec.from_json(stored) == spec
    assert SolverSpec.from_json(stored).options["key_secret"] == SECRET


def test_references_are_read_when_resolved(tmp_path: Path) -> None:
    by_env = rfc2136(key_secret={"env": "TSIG_SECRET"})
    assert "key_secret" not in by_env.options
    assert by_env.resolve({"TSIG_SECRET": SECRET}).options["key_secret"] == SECRET
    with pytest.raises(ConfigError, match="environment variable TSIG_SECRET, which is not set"):
        by_env.resolve({})
    path = tmp_path / "secret"
    path.write_text(f"  {SECRET}\n")
    by_file = rfc2136(key_secret={"file": str(path)})
    assert by_file.resolve({}).options["key_secret"] == SECRET
    path.write_text("")
    with pytest.raises(ConfigError, match="is empty") as caught:
        by_file.resolve({})
    assert SECRET not in str(caught.value)


def test_a_legacy_copy_is_redacted_by_its_name() -> None:
    """Settings written by an older certherd hold the secret as a plain option."""
    old = SolverSpec.from_json(
        {"kind": "dns", "options": {"provider": "lexicon:x", "auth_token": SECRET}}
    )
    assert old.options["auth_token"] == SECRET, "still usable"
    assert old.to_json()["options"]["auth_token"] == REDACTED
    assert SECRET not in repr(old)


def test_a_reference_by_value_of_another_shape_is_refused() -> None:
    with pytest.raises(ConfigError, match="env"):
        SolverSpec.from_json({"kind": "dns", "options": {"key_secret": {"vault": "x"}}})


def test_a_secret_from_another_config_file_is_read_from_it(tmp_path: Path) -> None:
    """A lineage applied with ``apply --config FILE`` keeps a reference to that file;
    ``renew`` (which reads only the config dir's certherd.toml) reads the secret there."""
    from certherd.config import load_config_file
    from certherd.manager.service import Manager
    from certherd.settings import LineageSettings
    from certherd.storage.memory import MemoryStorage

    path = tmp_path / "elsewhere.toml"
    path.write_text(
        '[[certificate]]\ndomains = ["a.example"]\nsolver = "dns"\n'
        f'solver_options = {{ provider = "rfc2136", server = "192.0.2.1", key_secret = "{SECRET}" }}\n'  # noqa: E501
    )
    path.chmod(0o600)
    wanted = load_config_file(path).certificates[0]
    stored = LineageSettings.from_json(wanted.to_json(), "test")
    assert "key_secret" not in stored.solvers[0].options
    manager = Manager(MemoryStorage())
    (spec,) = manager.solver_specs(stored)
    assert spec.options["key_secret"] == SECRET
    path.unlink()
    with pytest.raises(ConfigError, match="which no longer gives it") as caught:
        Manager(MemoryStorage()).solver_specs(stored)
    assert SECRET not in str(caught.value)


def test_a_secret_file_others_can_read_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from certherd.challenges.spec import read_secret_file

    path = tmp_path / "secret"
    path.write_text(SECRET)
    path.chmod(0o600)
    with caplog.at_level("WARNING", logger="certherd"):
        assert read_secret_file(str(path), "key_secret") == SECRET
    assert caplog.records == []
    path.chmod(0o644)
    with caplog.at_level("WARNING", logger="certherd"):
        read_secret_file(str(path), "key_secret")
    (record,) = caplog.records
    assert "chmod 600" in record.getMessage()
    assert SECRET not in record.getMessage()


def test_an_eab_key_file_that_is_not_text_is_one_line(tmp_path: Path) -> None:
    from certherd.cli.common import build_ca

    path = tmp_path / "eab.key"
    path.write_bytes(b"\xff\xfe")
    params = {"server": "https://acme.test/dir", "eab_kid": "kid", "eab_hmac_key_file": str(path)}
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        build_ca(params)
