"""Frozen entry point of the windowed app (no console on Windows and macOS)."""

import sys

from desktop.cli import main

if __name__ == "__main__":
    sys.exit(main())
