"""Child processes that Ctrl-C reaches, however the test run was started."""

from __future__ import annotations

import signal


def sigint_reaches_child() -> None:
    """`preexec_fn` for a child that a test interrupts with SIGINT. A suite started as a
    background job of a non-interactive shell (`cmd &`, nohup) runs with SIGINT ignored, the
    children inherit that, and Python then installs no KeyboardInterrupt handler: the signal
    would be lost and the test would wait for a run that never stops."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
