"""Reading nginx's config with crossplane: server blocks, nginx's name matching, and
edits that leave every byte certherd did not add as it was (no nginx process needed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from certherd.install.nginx.edit import add_include, remove_include
from certherd.install.nginx.parse import block_offsets, match_server, read_config

DEBIAN_DEFAULT = Path("/etc/nginx/sites-available/default")

MESSY = r"""# a comment before anything {;}
map $http_upgrade $connection_upgrade {
    default upgrade;
    ''      close;
}
server {listen 127.0.0.1:8080;   server_name   www.example.test   example.test ;  # odd { spacing
  location / { if ($request_method = POST) { return 405; } root /srv/www; }
}
server
{
	listen	127.0.0.1:8080 ;
	server_name *.wild.test;
	include snippets/extra.conf;
}
server { listen 127.0.0.1:8080; server_name ~^(?<sub>[a-z]+)\.regex\.test$ "quoted.test";
  return 200 "regex $sub;{}\n"; }
server {
    listen 127.0.0.1:8080 default_server;
    server_name _;
    location ~ "\.(png|jpg)$" { expires 1d; }   # regex location, quoted
}
"""
SNIPPET = "# included in a server block\nlocation /extra { return 204; }\n"


def root_with(tmp_path: Path, sites: dict[str, str]) -> Path:
    (tmp_path / "sites-enabled").mkdir()
    (tmp_path / "snippets").mkdir()
    (tmp_path / "snippets" / "extra.conf").write_text(SNIPPET)
    (tmp_path / "nginx.conf").write_text(
        "events {}\n# the http block\nhttp {\n    include sites-enabled/*;\n}\n"
    )
    for name, text in sites.items():
        (tmp_path / "sites-enabled" / name).write_text(text)
    return tmp_path


def test_messy_config_blocks_and_names(tmp_path: Path) -> None:
    config = read_config(root_with(tmp_path, {"messy": MESSY}))
    assert [block.names for block in config.servers] == [
        ["www.example.test", "example.test"],
        ["*.wild.test"],
        [r"~^(?<sub>[a-z]+)\.regex\.test$", "quoted.test"],
        ["_"],
    ]
    text = config.texts[config.servers[0].file]
    for block in config.servers:
        assert text[block.open_offset] == "{"
        assert text[block.close_offset] == "}"
    servers = config.servers
    # nginx's order: exact, leading wildcard, trailing wildcard, first regex, default.
    assert match_server(servers, "example.test", 8080, fallback=False) is servers[0]
    assert match_server(servers, "a.wild.test", 8080, fallback=False) is servers[1]
    assert match_server(servers, "abc.regex.test", 8080, fallback=False) is servers[2]
    assert match_server(servers, "ABC.regex.test", 8080, fallback=False) is servers[2]
    assert match_server(servers, "other.test", 8080, fallback=False) is None
    assert match_server(servers, "other.test", 8080, fallback=True) is servers[3]
    assert match_server(servers, "example.test", 80, fallback=True) is None


def test_braces_inside_quotes_and_comments_are_not_blocks() -> None:
    text = "a \"{\" { b '}' ; # } {\n c { } }\n"
    inner = text.index("c {") + 2
    assert block_offsets(text) == [(6, text.rindex("}")), (inner, inner + 2)]


@pytest.mark.parametrize("site", ["messy", "debian-default"])
def test_include_added_then_removed_gives_the_original_bytes(tmp_path: Path, site: str) -> None:
    """Every block of Debian's default site and of the messy config: the only
    difference after an edit is certherd's include, and taking it away gives the
    original bytes back."""
    original = MESSY if site == "messy" else DEBIAN_DEFAULT.read_text()
    config = read_config(root_with(tmp_path, {site: original}))
    assert config.servers, "no server block found"
    target = tmp_path / "certherd" / "tls-example.conf"
    target.parent.mkdir()
    target.write_text("# certherd's\n")
    for block in config.servers:
        edited = add_include(original, block, target, "TLS for example")
        assert edited != original
        assert remove_include(edited, target) == original
        lines = [line for line in edited.splitlines(keepends=True) if str(target) in line]
        assert len(lines) == 1
        if "# certherd: TLS for example" in lines[0]:  # a line of its own
            assert edited.replace(lines[0], "", 1) == original
        else:  # `server { listen ...` on one line: right after the brace
            assert edited.replace(f' include "{target}";', "", 1) == original
        # nginx's parser reads the edited file: the include is inside that block.
        (tmp_path / "sites-enabled" / site).write_text(edited)
        again = read_config(tmp_path)
        assert str(target) in again.servers[block.index].includes
        (tmp_path / "sites-enabled" / site).write_text(original)


def test_debian_default_site_unchanged_by_reading(tmp_path: Path) -> None:
    shutil.copy(DEBIAN_DEFAULT, tmp_path / "default")
    before = (tmp_path / "default").read_bytes()
    config = read_config(root_with(tmp_path, {"default": before.decode()}))
    assert [block.names for block in config.servers] == [["_"]]
    assert {listen.port for listen in config.servers[0].listens} == {80}
    assert (tmp_path / "sites-enabled" / "default").read_bytes() == before
