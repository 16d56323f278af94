"""``python -m certherd``: the same as the ``certherd`` program."""

from certherd.cli.main import entry

if __name__ == "__main__":
    entry()
