"""The renew schedule: systemd units and the cron.d file, quoted for awkward paths."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from certherd.errors import ConfigError
from certherd.install.schedule import (
    SERVICE_UNIT,
    TIMER_UNIT,
    cron_time,
    detect_schedule_kind,
    install_schedule,
    renew_command,
)

AWKWARD_CONFIG = '/etc/cert herd/"conf" $HOME %h \\x'


def make_program(folder: Path, name: str) -> Path:
    """A stand-in certherd at ``folder/name`` that prints its arguments as JSON."""
    path = folder / name
    path.parent.mkdir(parents=True)
    path.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def program(tmp_path: Path) -> Path:
    """An awkward path systemd can still run: a space, a specifier and a variable."""
    return make_program(tmp_path / "opt dir", "cert%herd$x")


@pytest.fixture
def shell_program(tmp_path: Path) -> Path:
    """A path only a shell can run: quotes and a backslash as well (systemd refuses them)."""
    return make_program(tmp_path / "opt dir", "cert%herd$x 'q' \"d\" \\b")


def unquote_systemd(line: str) -> list[str]:
    """Split an ExecStart value the way systemd.service(5) "Command lines" describes.

    Only what certherd writes is handled: double-quoted words with ``\\\\`` and ``\\"``,
    plain words, ``%%`` in every word and ``$$`` in the arguments (not the program).
    """
    words = re.findall(r'"((?:[^"\\]|\\.)*)"|(\S+)', line)
    result = []
    for index, (quoted, plain) in enumerate(words):
        word = re.sub(r"\\(.)", r"\1", quoted) if quoted else plain
        word = word.replace("%%", "%")
        if index:
            word = word.replace("$$", "$")
        result.append(word)
    return result


def verify_units(paths: list[Path], tmp_path: Path, user: bool) -> None:
    """Run ``systemd-analyze verify`` on the written units and fail on any complaint."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        # systemd-analyze is not installed here: the units were checked by their content
        # only (the assertions in the calling test), not by systemd's own parser.
        return
    runtime = tmp_path / "xdg-runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "XDG_RUNTIME_DIR": str(runtime),  # a --user manager needs one, even offline
    }
    scope = ["--user"] if user else []
    done = subprocess.run(
        [analyze, *scope, "verify", "--man=no", *(str(p) for p in paths)],
        capture_output=True,
        text=True,
        env=env,
        cwd=paths[0].parent,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # verify exits 0 on warnings (unknown escapes, missing program...): read them too.
    ours = [line for line in done.stderr.splitlines() if "certherd-renew" in line]
    assert not ours, "\n".join(ours)


def test_detect_schedule_kind(tmp_path: Path) -> None:
    assert detect_schedule_kind(tmp_path) == "cron"
    (tmp_path / "run/systemd/system").mkdir(parents=True)
    assert detect_schedule_kind(tmp_path) == "systemd"


def test_systemd_units(tmp_path: Path, program: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    paths = install_schedule(
        "systemd", certherd_path=str(program), config_dir=AWKWARD_CONFIG, root=root
    )
    folder = root / "etc/systemd/system"
    assert paths == [folder / SERVICE_UNIT, folder / TIMER_UNIT]
    service, timer = (path.read_text() for path in paths)
    assert "\n[Service]\nType=oneshot\n" in service
    assert "Wants=network-online.target\nAfter=network-online.target\n" in service
    (exec_line,) = [line for line in service.splitlines() if line.startswith("ExecStart=")]
    assert unquote_systemd(exec_line.removeprefix("ExecStart=")) == renew_command(
        str(program), AWKWARD_CONFIG
    )
    assert "[Timer]\nOnCalendar=*-*-* 00,12:00:00\nRandomizedDelaySec=3600\nPersistent=true\n" in (
        timer
    )
    assert "[Install]\nWantedBy=timers.target\n" in timer
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    verify_units(paths, tmp_path, user=False)
    assert capsys.readouterr() == ("", "")


def test_systemd_user_units(tmp_path: Path, program: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    home = tmp_path / "home" / "alice"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    paths = install_schedule(
        "systemd", certherd_path=str(program), config_dir="/srv/certherd", root=root, user=True
    )
    folder = root / home.relative_to("/") / ".config/systemd/user"
    assert paths == [folder / SERVICE_UNIT, folder / TIMER_UNIT]
    service = paths[0].read_text()
    assert "network-online" not in service  # a system target: user managers cannot use it
    assert "--config-dir /srv/certherd -q renew\n" in service
    verify_units(paths, tmp_path, user=True)

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    again = install_schedule(
        "systemd", certherd_path=str(program), config_dir="/srv/certherd", root=root, user=True
    )
    assert again[0] == root / (tmp_path / "xdg").relative_to("/") / "systemd/user" / SERVICE_UNIT


def test_cron_file_runs_the_exact_command(tmp_path: Path, shell_program: Path) -> None:
    root = tmp_path / "root"
    (path,) = install_schedule(
        "cron",
        certherd_path=str(shell_program),
        config_dir=AWKWARD_CONFIG,
        root=root,
        hostname="web1.example",
    )
    assert path == root / "etc/cron.d/certherd"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    text = path.read_text()
    assert "SHELL=/bin/sh\n" in text
    assert re.search(r"^PATH=/\S+$", text, re.MULTILINE)
    jobs = [line for line in text.splitlines() if line and line[0].isdigit()]
    assert len(jobs) == 1
    minute, hours, day, month, weekday, user, command = jobs[0].split(" ", 6)
    expected_minute, hour = cron_time("web1.example")
    assert (minute, hours) == (str(expected_minute), f"{hour},{hour + 12}")
    assert 0 <= hour < 12
    assert (day, month, weekday, user) == ("*", "*", "*", "root")
    # crontab(5): an unescaped % ends the command; cron turns \% into % for the shell.
    assert not re.search(r"(?<!\\)%", command)
    shell_line = command.replace("\\%", "%")
    ran = subprocess.run(
        ["/bin/sh", "-c", shell_line], capture_output=True, text=True, timeout=30, check=True
    )
    assert json.loads(ran.stdout) == ["--config-dir", AWKWARD_CONFIG, "-q", "renew"]


def test_cron_time_is_fixed_per_host_and_spread_across_hosts() -> None:
    assert cron_time("a.example") == cron_time("a.example")
    times = {cron_time(f"host{n}.example") for n in range(50)}
    assert len(times) > 30
    assert all(0 <= minute < 60 and 0 <= hour < 12 for minute, hour in times)


@pytest.mark.parametrize("kind", ["systemd", "cron"])
def test_installing_twice_writes_the_same_files(kind: str, tmp_path: Path) -> None:
    options = {
        "certherd_path": "/usr/local/bin/certherd",
        "config_dir": "/etc/certherd",
        "root": tmp_path,
        "hostname": "h1",
    }
    first = install_schedule(kind, **options)  # type: ignore[arg-type]
    contents = [path.read_bytes() for path in first]
    second = install_schedule(kind, **options)  # type: ignore[arg-type]
    assert second == first
    assert [path.read_bytes() for path in second] == contents
    leftovers = [p for path in first for p in path.parent.iterdir() if p.name.startswith(".")]
    assert not leftovers


@pytest.mark.parametrize(
    ("certherd_path", "config_dir", "message"),
    [
        ("certherd", "/etc/certherd", "must be an absolute path"),
        ("/usr/bin/certherd", "relative/dir", "must be an absolute path"),
        ("/usr/bin/certherd", "", "must be an absolute path"),
        ("/usr/bin/certherd", "/etc/cert\nherd", "control character"),
        ("/usr/bin/cert\rherd", "/etc/certherd", "control character"),
    ],
)
def test_unusable_paths_are_refused(
    certherd_path: str, config_dir: str, message: str, tmp_path: Path
) -> None:
    for kind in ("systemd", "cron"):
        with pytest.raises(ConfigError, match=message):
            install_schedule(
                kind, certherd_path=certherd_path, config_dir=config_dir, root=tmp_path
            )
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["o'brien", 'quo"te', "back\\slash"])
def test_systemd_refuses_programs_it_could_never_start(name: str, tmp_path: Path) -> None:
    program = make_program(tmp_path / name, "certherd")
    with pytest.raises(ConfigError, match="quote or a backslash"):
        install_schedule(
            "systemd", certherd_path=str(program), config_dir="/etc/c", root=tmp_path / "r"
        )
    assert not (tmp_path / "r").exists()


def test_user_cron_and_unknown_kinds_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="crontab -e"):
        install_schedule(
            "cron", certherd_path="/bin/certherd", config_dir="/etc/c", root=tmp_path, user=True
        )
    with pytest.raises(ConfigError, match="not 'systemd' or 'cron'"):
        install_schedule(
            "launchd",  # type: ignore[arg-type]
            certherd_path="/bin/certherd",
            config_dir="/etc/c",
            root=tmp_path,
        )
