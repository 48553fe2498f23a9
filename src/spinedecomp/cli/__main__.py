"""`python -m spinedecomp.cli`: the same as the `spinedecomp` command."""

from spinedecomp.cli.app import main

main()
