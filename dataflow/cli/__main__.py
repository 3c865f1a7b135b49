"""`python -m dataflow.cli`: the same as the `dataflow` command."""
from . import main

main()
