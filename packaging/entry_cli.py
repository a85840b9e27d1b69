"""Frozen entry point of the console program `easel-cli` (generate, train, eval, models)."""

import sys

from desktop.cli import main

if __name__ == "__main__":
    sys.exit(main())
