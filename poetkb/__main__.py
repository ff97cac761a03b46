"""`python -m poetkb` runs the `poet` command line."""

from poetkb.cli import main

main(prog_name="poet")
