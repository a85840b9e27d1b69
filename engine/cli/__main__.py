"""`python -m engine.cli generate ...`: the headless CLI without the console script."""

import sys

from engine.cli import main

sys.exit(main())
