"""``python -m aana``: the ``aana`` command line."""

from aana.cli import main

main(prog_name="aana")
