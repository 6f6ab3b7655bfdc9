"""`python -m xmargin ...` runs the command line."""

from xmargin.cli.main import main

main(prog_name="xmargin")
