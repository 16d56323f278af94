"""Property: for any file of ``<VirtualHost>`` sections written with odd spacing, tabs,
CRLF or LF, comment lines that look like sections, continuation lines, nested sections
and quoted words, certherd's include lands as the first lines inside the vhost it aims at
(the lexer reads it there, with every other vhost's names unchanged) and taking it away
gives the original bytes (issue 13: parse, don't grep)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from certherd.install.apache.edit import add_include, remove_include
from certherd.install.apache.parse import lex

INDENT = st.sampled_from(["", "  ", "    ", "\t", " \t"])
COMMENT = st.sampled_from(["", "# <VirtualHost *:1>\n", "#</VirtualHost>\n", "\t# a comment\n"])
NAME = st.sampled_from(["a.test", '"q d.test"', "'s.test'", "*.w.test", "x?.test"])
INNER = st.sampled_from(
    [
        "DocumentRoot /srv/www\n",
        '<Directory "/srv/x y">\n  Require all granted\n</Directory>\n',
        "RewriteRule ^/(.*)$ /x/$1 \\\n    [L]\n",
        "<IfModule mod_ssl.c>\n\tSSLEngine off\n</IfModule>\n",
        "\n",
        "",
    ]
)


@st.composite
def vhost(draw: st.DrawFn) -> str:
    indent = draw(INDENT)
    names = " ".join(draw(st.lists(NAME, min_size=1, max_size=3)))
    inner = "".join(indent + line for line in draw(INNER).splitlines(keepends=True))
    first = draw(st.sampled_from(["", "\n", draw(COMMENT)]))
    return (
        f"<VirtualHost *:80{draw(st.sampled_from(['', ' ', ' [::1]:80']))}>\n"
        f"{first}{indent}ServerAlias {names}\n{inner}{draw(COMMENT)}</VirtualHost>\n"
    )


@st.composite
def config(draw: st.DrawFn) -> str:
    hosts = draw(st.lists(vhost(), min_size=1, max_size=4))
    head = draw(st.sampled_from(["", "# top <VirtualHost>\n", "Listen 80\n\n"]))
    text = head + draw(st.sampled_from(["", "\n"])).join(hosts)
    return text.replace("\n", "\r\n") if draw(st.booleans()) else text


def names_of(text: str) -> list[list[str]]:
    return [
        [arg for child in node.children or () if child.name == "serveralias" for arg in child.args]
        for node in lex(text)
        if node.name == "virtualhost"
    ]


@settings(max_examples=80, deadline=None)
@given(config(), st.integers(min_value=0, max_value=3))
def test_include_lands_in_its_vhost_and_comes_out_exactly(text: str, pick: int) -> None:
    vhosts = [node for node in lex(text) if node.name == "virtualhost"]
    target = Path("/etc/apache2/sites-available/x-certherd.conf")
    aimed = vhosts[pick % len(vhosts)]
    added = add_include(text, aimed, target, "probe")
    again = [node for node in lex(added) if node.name == "virtualhost"]
    assert len(again) == len(vhosts)
    children = again[pick % len(vhosts)].children or []
    assert children[0].name == "include"
    assert children[0].args == [str(target)]
    assert names_of(added) == names_of(text)
    assert ("\r\n" in text) == ("\r\n" in added)
    if "\r\n" in text:
        assert "\n" not in added.replace("\r\n", "")
    assert remove_include(added, target) == text
    after = add_include(text, aimed, target, "probe", after=True)
    assert remove_include(after, target) == text
    assert [n.name for n in lex(after)].count("include") == 1  # outside, after the vhost
