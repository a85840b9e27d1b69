"""Errors that carry a message a user can act on.

Every failure the engine reports to the user is an `EaselError` (or subclass); its `str()` is the
one message shown in the app and printed by the CLI. Anything else that escapes a job is a bug and
is reported with a generic prefix by the worker.
"""

from __future__ import annotations


class EaselError(Exception):
    """A failure with a message written for the user."""

    #: process exit code the CLI uses for this kind of failure
    exit_code = 1


class InputError(EaselError):
    """A setting or input the user gave is out of range or unreadable."""

    exit_code = 2


class ModelError(EaselError):
    """A model is missing, broken, unsafe or not supported."""

    exit_code = 3


class OutputError(EaselError):
    """The engine produced an unusable result (NaN, all black) or could not save it."""

    exit_code = 4


class JobCancelled(Exception):  # noqa: N818 - it is a control-flow signal, not an error
    """Raised inside a job when the user cancelled it. Not an error: reported as `Cancelled`."""
