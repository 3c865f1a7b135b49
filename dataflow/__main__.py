"""`python -m dataflow`: the same as the `dataflow` command."""
from .cli import main

main()
