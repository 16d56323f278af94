"""The Apache installer's reader against Apache itself: Debian's own config (copied from
/etc/apache2) plus messy sites (continuation lines, quoted words, tabs, CRLF, comments
that look like sections, ``<IfModule !...>``, ``<IfDefine>``, an Include inside a vhost,
two addresses, wildcard aliases) are read to the same vhosts, lines and names Apache's
``-S`` prints; certherd's include added to every vhost lands inside it (Apache's own
DUMP_INCLUDES says it is included from that vhost's lines) and taking it away gives
every file its original bytes back.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.servers.apache import ApacheRoot
from tests.servers.net import ServerStartError

from certherd.install.apache.edit import add_include, remove_include
from certherd.install.apache.installer import ApacheInstaller
from certherd.install.apache.parse import lex, parse_includes

MESSY = """# a comment that looks like a section: <VirtualHost *:80> ServerName no.apache.test
<IfModule !mod_nothing_like_this.c>
<VirtualHost 127.0.0.1:{port} [::1]:{port}>
    ServerName messy.apache.test
    ServerAlias \\
        www.messy.apache.test   *.wild.apache.test
    DocumentRoot "{html}"
\t<Directory "{html}">
\t\tRequire all granted
\t</Directory>
    RewriteEngine on
    RewriteRule "^/old (.*)$" "/new $1" [R=302,L]
    Include "{root}/messy-extra.conf"
</VirtualHost>
</IfModule>
<IfDefine NOT_DEFINED_ANYWHERE>
<VirtualHost *:{port}>
    ServerName hidden.apache.test
</VirtualHost>
</IfDefine>
<IfModule mod_nothing_like_this.c>
<VirtualHost *:{port}>
    ServerName alsohidden.apache.test
</VirtualHost>
</IfModule>
<VirtualHost *:{port}>
    ServerName 'quoted.apache.test'
    ServerAlias q?.apache.test
</VirtualHost>
"""
CRLF = "<VirtualHost *:{port}>\r\n\tServerName crlf.apache.test\r\n</VirtualHost>\r\n"


@pytest.fixture
def apache() -> Iterator[ApacheRoot]:
    try:
        root = ApacheRoot()
    except ServerStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    text = (
        MESSY.replace("{port}", str(root.http_port))
        .replace("{html}", str(root.root / "html"))
        .replace("{root}", str(root.root))
    )
    (root.root / "mods-enabled" / "rewrite.load").symlink_to("../mods-available/rewrite.load")
    root.site("messy", text)
    root.write("messy-extra.conf", "ServerSignature Off\n")
    (root.root / "sites-available" / "crlf.conf").write_bytes(
        CRLF.replace("{port}", str(root.http_port)).encode()
    )
    (root.root / "sites-enabled" / "crlf.conf").symlink_to("../sites-available/crlf.conf")
    yield root
    root.stop()


def apache_says(apache: ApacheRoot, *args: str) -> str:
    done = subprocess.run(
        ["apache2ctl", *args],
        env={"APACHE_CONFDIR": str(apache.root), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout + done.stderr


def apache_vhosts(output: str) -> dict[tuple[str, int], list[str]]:
    """``-S``'s vhosts: (file, line) -> names (ServerName, then aliases; Apache lists
    the aliases of name-based vhosts only)."""
    found: dict[tuple[str, int], list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        named = re.search(r"(?:namevhost|default server) (\S+) \((.+):(\d+)\)$", line)
        single = re.match(r"^\S+:\d+\s+(\S+) \((.+):(\d+)\)$", line)
        match = named or single
        if match:
            key = (match.group(2), int(match.group(3)))
            current = found.setdefault(key, [match.group(1)])
            current_key = key
            continue
        alias = re.match(r"^\s+(?:wild )?alias (\S+)$", line)
        if alias and current is not None and alias.group(1) not in found[current_key]:
            found[current_key].append(alias.group(1))
    return found


async def test_the_reader_sees_the_vhosts_apache_sees(
    apache: ApacheRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = await ApacheInstaller(apache.root).read()
    ours = {(str(v.file), v.node.line): v for v in config.vhosts}
    output = apache_says(apache, "-S")
    theirs = apache_vhosts(output)
    assert set(ours) == set(theirs)
    for key, vhost in ours.items():
        if vhost.names:  # Apache shows the server's own name for a vhost without one
            assert vhost.names[: len(theirs[key])] == theirs[key], key
            named = f"namevhost {theirs[key][0]} ({key[0]}:{key[1]})" in output
            assert not named or vhost.names == theirs[key], key
    names = [v.names[0] for v in config.vhosts if v.names]
    assert "hidden.apache.test" not in names
    assert "alsohidden.apache.test" not in names
    messy = next(v for v in config.vhosts if v.names and v.names[0] == "messy.apache.test")
    assert messy.names == ["messy.apache.test", "www.messy.apache.test", "*.wild.apache.test"]
    assert messy.addresses == [f"127.0.0.1:{apache.http_port}", f"[::1]:{apache.http_port}"]
    assert messy.directives["serversignature"] == [["Off"]]  # through its Include
    assert messy.directives["rewriterule"] == [["^/old (.*)$", "/new $1", "[R=302,L]"]]
    assert any(port == apache.http_port for _address, port, _file in config.listens)


async def test_an_include_in_every_vhost_lands_inside_it_and_comes_out_byte_for_byte(
    apache: ApacheRoot,
) -> None:
    config = await ApacheInstaller(apache.root).read()
    before = apache.snapshot()
    target = apache.root / "certherd" / "probe.conf"
    target.parent.mkdir()
    target.write_text("# nothing\n")
    edited: dict[Path, str] = {}
    for vhost in sorted(config.vhosts, key=lambda v: -v.node.start):
        text = edited.get(vhost.file, config.texts[vhost.file])
        edited[vhost.file] = add_include(text, vhost.node, target, "probe")
    for path, text in edited.items():
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
    tree = parse_includes(apache_says(apache, "-t", "-D", "DUMP_INCLUDES"))
    for vhost in config.vhosts:
        # Each earlier vhost of the same file moved this one down by two lines.
        earlier = sum(1 for v in config.vhosts if v.file == vhost.file and v.index < vhost.index)
        line = vhost.node.line + 2 * earlier + 2
        assert target in tree.included(vhost.file, line), (vhost.where, line)
    crlf = (apache.root / "sites-available" / "crlf.conf").read_bytes()
    assert b"\r\n\tInclude " in crlf
    assert b"\n\tInclude " not in crlf.replace(b"\r\n", b"")
    for path, text in edited.items():
        path.write_bytes(remove_include(text, target).encode("utf-8", "surrogateescape"))
    assert apache.snapshot() == before


@pytest.mark.parametrize("site", ["000-default.conf", "default-ssl.conf"])
def test_debian_default_sites_round_trip(site: str) -> None:
    """Debian's own site files: the vhost is found at the line Apache numbers it by, and
    an include added then removed leaves the exact bytes."""
    original = (Path("/etc/apache2/sites-available") / site).read_text()
    (vhost,) = [node for node in lex(original) if node.name == "virtualhost"]
    assert vhost.line == 1
    assert original[vhost.close_start :].startswith("</VirtualHost>")
    target = Path("/etc/apache2/certherd/tls-x.conf")
    added = add_include(original, vhost, target, "probe")
    assert added.splitlines()[1:3] == [
        "\t# certherd: probe",
        '\tInclude "/etc/apache2/certherd/tls-x.conf"',
    ]
    assert remove_include(added, target) == original
