"""``python -m benchmarks.strategies ...`` from the repository root: the same as ``wsx bench ...``."""
import sys

from wsx.cli import main

sys.exit(main(["bench", *sys.argv[1:]]))
