"""`python -m curate.cli`: the `curate` command."""

from curate.cli.main import main

main()
