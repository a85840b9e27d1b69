"""The parts of a generation request that steer it with more than words (no torch, no Qt).

ControlNet units, image prompts (IP-Adapter), regional prompts and the hires fix are fields of
`GenerationRequest` like the prompt, so history, PNG metadata and "reuse settings" carry them.
Images are file paths, as `init_image` is: the desktop writes a control map, a reference picture
or a region's mask to a working file before it submits. Ranges are checked here (cheap, pure);
whether a model fits the base model is checked in the job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.errors import InputError
from engine.serialisable import Serialisable

#: what turns the control image into the map a ControlNet reads: "none" takes the image as it
#: is (already a map); "scribble" takes the user's strokes as they are, white on black
PREPROCESSORS: tuple[str, ...] = ("none", "canny", "softedge", "lineart", "scribble", "depth")
MAX_CONTROL_UNITS = 4
MAX_IMAGE_PROMPTS = 4
MAX_REGIONS = 8
HIRES_UPSCALERS_LATENT = "latent"
HIRES_UPSCALER_LANCZOS = "lanczos"  # a plain resize of the first pass's picture


def _check_fraction(what: str, value: float) -> None:
    if not 0.0 <= float(value) <= 1.0:
        raise InputError(f"{what} must be between 0 and 1 (got {value}).")


def _check_weight(what: str, value: float, top: float = 2.0) -> None:
    if not 0.0 <= float(value) <= top:
        raise InputError(f"{what} must be between 0 and {top:g} (got {value}).")


@dataclass(frozen=True)
class ControlUnit(Serialisable):
    """One ControlNet: its control image (after `preprocessor`), model and how strongly and
    over which part of the steps it steers (A1111's 'Control Weight', 'Starting/Ending Control
    Step', 'Guess Mode'). `model` is empty for models that read the control image themselves
    (FLUX.1 Canny / Depth); SD jobs require one."""

    image: str = ""
    model: str = ""
    preprocessor: str = "none"
    weight: float = 1.0
    start: float = 0.0
    end: float = 1.0
    guess_mode: bool = False
    #: preprocessor knobs as plain JSON (canny: low/high thresholds 0-255)
    options: dict | None = None

    def __post_init__(self):
        if not self.image:
            raise InputError("A control unit needs a control image.")
        if self.preprocessor not in PREPROCESSORS:
            raise InputError(
                f"Unknown preprocessor '{self.preprocessor}'. Choose one of: "
                f"{', '.join(PREPROCESSORS)}."
            )
        _check_weight("Control weight", self.weight)
        _check_fraction("Control start", self.start)
        _check_fraction("Control end", self.end)
        if self.start >= self.end:
            raise InputError(f"Control start ({self.start}) must be before its end ({self.end}).")


@dataclass(frozen=True)
class ImagePrompt(Serialisable):
    """A reference picture steering the result through an IP-Adapter (`model`: its weights;
    empty: the one in the library for the model's base)."""

    image: str = ""
    weight: float = 0.6
    model: str = ""

    def __post_init__(self):
        if not self.image:
            raise InputError("An image prompt needs a picture.")
        _check_weight("Image prompt weight", self.weight)


@dataclass(frozen=True)
class Region(Serialisable):
    """A prompt for the area a mask covers (white = the region), on top of the base prompt."""

    mask: str = ""
    prompt: str = ""
    weight: float = 1.0

    def __post_init__(self):
        if not self.mask:
            raise InputError("A region needs a mask.")
        _check_weight("Region weight", self.weight, top=4.0)


@dataclass(frozen=True)
class HiresFix(Serialisable):
    """Generate at the model's native size, upscale (`upscaler`: "latent", "lanczos" or an
    upscaler model from the library), then image-to-image at `strength` to the request's size,
    in one job."""

    scale: float = 2.0
    strength: float = 0.5
    upscaler: str = HIRES_UPSCALERS_LATENT
    steps: int = 0  # 0: as many as the first pass

    def __post_init__(self):
        if not 1.0 < float(self.scale) <= 4.0:
            raise InputError(f"Hires scale must be above 1 and at most 4 (got {self.scale}).")
        if not 0.0 < float(self.strength) <= 1.0:
            raise InputError(f"Hires strength must be above 0 and at most 1 (got {self.strength}).")
        if not 0 <= int(self.steps) <= 500:
            raise InputError(f"Hires steps must be between 0 and 500 (got {self.steps}).")


def _items(cls, value: Any, what: str, top: int) -> tuple:
    if isinstance(value, cls):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise InputError(f"Stored setting '{what}' must be a list of objects.")
    if len(value) > top:
        raise InputError(f"At most {top} {what.replace('_', ' ')} per request (got {len(value)}).")
    out = []
    for item in value:
        if isinstance(item, cls):
            out.append(item)
        elif isinstance(item, dict):
            out.append(cls.from_dict(item))
        else:
            raise InputError(f"Stored setting '{what}' must be a list of objects.")
    return tuple(out)


def control_units(value: Any) -> tuple[ControlUnit, ...]:
    return _items(ControlUnit, value, "control", MAX_CONTROL_UNITS)


def image_prompts(value: Any) -> tuple[ImagePrompt, ...]:
    return _items(ImagePrompt, value, "image_prompts", MAX_IMAGE_PROMPTS)


def regions(value: Any) -> tuple[Region, ...]:
    return _items(Region, value, "regions", MAX_REGIONS)


def hires_fix(value: Any) -> HiresFix | None:
    if value is None or isinstance(value, HiresFix):
        return value
    if not isinstance(value, dict):
        raise InputError("Stored setting 'hires' must be an object.")
    return HiresFix.from_dict(value)
