"""Property: for any config of server blocks written with odd spacing, comments holding
braces, quoted strings holding ``;{}`` and blocks on one line, certherd's include lands
inside the block it aims at (as crossplane reads the edited file) and taking it away
gives the original bytes (issue 13: parse, don't grep)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from certherd.install.nginx.edit import add_include, remove_include
from certherd.install.nginx.parse import read_config

SPACE = st.sampled_from([" ", "  ", "\t", "\n", "\n\n", " \n\t", "\r\n"])
COMMENT = st.sampled_from(["", " # a comment { ; }\n", "# }\n", "\t#{\n"])
VALUE = st.sampled_from(["a.test", '"q;{}.test"', "'x y'", "*.w.test", r"~^(?<n>\w+)\.r\.test$"])
INNER = st.sampled_from(
    [
        "location / { return 200; }",
        'location ~ "\\.(png)$" { expires 1d; }',
        "if ($request_method = POST) { return 405; }",
        "root /srv/www;",
        "",
    ]
)


@st.composite
def server(draw: st.DrawFn) -> str:
    gap = [draw(SPACE) for _ in range(6)]
    names = " ".join(draw(st.lists(VALUE, min_size=1, max_size=3)))
    return (
        f"server{gap[0]}{{{draw(COMMENT)}{gap[1]}listen{gap[2]}8080;{gap[3]}"
        f"server_name {names};{draw(COMMENT)}{gap[4]}{draw(INNER)}{gap[5]}}}"
    )


@st.composite
def config(draw: st.DrawFn) -> str:
    blocks = draw(st.lists(server(), min_size=1, max_size=4))
    head = draw(st.sampled_from(["", "# top {\n", "map $a $b { default 1; '' 0; }\n"]))
    return head + "\n".join(blocks) + draw(st.sampled_from(["", "\n", "\n# end\n"]))


@settings(max_examples=60, deadline=None)
@given(config(), st.integers(min_value=0, max_value=3))
def test_include_lands_in_its_block_and_comes_out_exactly(text: str, pick: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "nginx.conf").write_text("events {}\nhttp {\n    include site;\n}\n")
        site = root / "site"
        site.write_text(text, newline="")
        target = root / "certherd" / "tls-x.conf"
        target.parent.mkdir()
        target.write_text("# certherd's\n")
        config = read_config(root)
        block = config.servers[pick % len(config.servers)]
        original = config.texts[site]
        assert original == text
        edited = add_include(original, block, target, "TLS for x")
        assert remove_include(edited, target) == original
        site.write_text(edited, newline="")
        again = read_config(root)
        holding = [b.index for b in again.servers if str(target) in b.includes]
        assert holding == [block.index]
