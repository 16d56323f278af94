"""Time loading certherd.toml files of 1,000 and 10,000 certificates (no CA, no I/O but
the read): ``python bench/config_load.py [SIZES...]``. Prints the best of 5 per size."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from certherd.config import load_config_file

HEADER = """\
[defaults]
ca = "letsencrypt"
email = "ops@example.com"
agree_tos = true
solver = "webroot"
solver_options = { path = "/var/www/html" }
deploy_hooks = ["systemctl reload nginx"]

"""


def config_text(size: int) -> str:
    """``size`` certificates: most plain, every tenth with its own solvers and hooks."""
    blocks = [HEADER]
    for number in range(size):
        blocks.append(
            f'[[certificate]]\ndomains = ["site{number}.example", "www.site{number}.example"]\n'
        )
        if number % 10 == 0:
            blocks.append(
                'key_type = "ec384"\nreuse_key = true\n'
                'solvers = [{ kind = "http", listen = "8080" },'
                ' { kind = "dns", provider = "rfc2136", server = "192.0.2.1", '
                'names = ["*.example"] }]\n'
            )
        blocks.append("\n")
    return "".join(blocks)


def main(sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            path = Path(folder) / f"certherd-{size}.toml"
            path.write_text(config_text(size))
            best = min(_time(path) for _ in range(5))
            print(f"{size:>6} certificates: load_config_file {best * 1000:.1f} ms")


def _time(path: Path) -> float:
    start = time.perf_counter()
    load_config_file(path)
    return time.perf_counter() - start


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1000, 10000])
