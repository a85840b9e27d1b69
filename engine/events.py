"""Events the engine sends about each job, in order: Queued, Started, Progress/Preview...,
then exactly one of Result, Cancelled or Failed. Importable without torch.

Events are delivered on the worker thread; the desktop bridge re-emits them as Qt signals on the
GUI thread. Images are PIL images (Pillow imports fast and needs no torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    job_id: int


@dataclass(frozen=True)
class Queued(Event):
    request: Any = None


@dataclass(frozen=True)
class Started(Event):
    pass


@dataclass(frozen=True)
class Progress(Event):
    step: int = 0
    total: int = 0
    #: extra numbers to show (e.g. loss, images/s, seconds_left, stage text)
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Preview(Event):
    image: Any = None  # PIL.Image.Image


@dataclass(frozen=True)
class Result(Event):
    images: list = field(default_factory=list)  # PIL images, in batch order
    #: one dict per image: the request as a dict plus what was resolved at run time
    #: (seed used, model hash, sampler, timings)
    metadata: list = field(default_factory=list)
    #: job-level data: timings, paths written, metrics...
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Cancelled(Event):
    pass


@dataclass(frozen=True)
class Failed(Event):
    message: str = ""
    #: name of the EaselError subclass, or "internal" for a bug
    kind: str = "internal"


FINAL_EVENTS = (Result, Cancelled, Failed)
