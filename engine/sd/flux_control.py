"""FLUX.1 control transformers (Canny dev, Depth dev): the control image steers from inside.

These models are FLUX.1 dev with a doubled image input: diffusers' FluxControl pipelines encode
the control map with the VAE and concatenate its packed latents to the image latents at every
step. So there is no ControlNet beside the model and nothing to weigh: one control unit, its
image preprocessed as an SD ControlNet unit's would be (canny, depth, ..., or "none" for a
ready map), the whole of the steps, at full strength. A unit asking for a weight, a step range,
guess mode or a separate ControlNet model is refused with what to change, never ignored.

The kind (canny or depth) is the model's own when the probe could tell (`control-canny`,
`control-depth`); a file that does not say (variant `control`) takes it from the unit's
preprocessor, which also picks the steps and guidance the model is made for.

`check_control_request` is pure (the capability check calls it before anything loads);
`control_image` reads and preprocesses the map in the job.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from engine.errors import EaselError, InputError

if TYPE_CHECKING:
    from PIL import Image

    from engine.api import GenerationRequest
    from engine.api_control import ControlUnit
    from engine.context import JobContext
    from engine.sd.modern_families import FamilySpec

#: preprocessors whose maps are edges or lines: what the Canny model reads
EDGE_PREPROCESSORS = ("canny", "softedge", "lineart", "scribble")


def check_control_request(request: GenerationRequest, title: str) -> None:
    """Refuse what a FLUX.1 control model cannot honour (one clear message each)."""
    others = [
        name
        for name, value in (
            ("image prompts", request.image_prompts),
            ("regional prompts", request.regions),
            ("the hires fix", request.hires),
        )
        if value
    ]
    if others:
        raise InputError(
            f"{title} models take one control image and no {' or '.join(others)}; remove "
            f"{'them' if len(others) > 1 else 'it'}."
        )
    if not request.control:
        raise InputError(
            f"{title} is a FLUX.1 control model: it needs a control image. Add a control unit "
            "with the picture whose edges or depth to follow (CLI: --control canny:IMG or "
            "--control depth:IMG; --control none:MAP for a ready map)."
        )
    if len(request.control) > 1:
        raise InputError(
            f"{title} models read one control image; this request has {len(request.control)} "
            "control units. Keep one."
        )
    _check_unit(request.control[0], title)


def _check_unit(unit: ControlUnit, title: str) -> None:
    if float(unit.weight) != 1.0:
        raise InputError(
            f"{title} models have no control strength: the control image is part of the "
            f"model's input, always at full strength (the unit asks for {unit.weight:g}). Set "
            "the weight to 1, or use a ControlNet on an SD 1.x / SDXL model to weigh it."
        )
    if (float(unit.start), float(unit.end)) != (0.0, 1.0):
        raise InputError(
            f"{title} models read the control image at every step; a control range of "
            f"{unit.start:g}-{unit.end:g} cannot be applied. Set it to 0-1."
        )
    if unit.guess_mode:
        raise InputError(f"{title} models have no guess mode (a ControlNet setting); turn it off.")


def check_unit_model(unit: ControlUnit, model_path, title: str) -> None:
    """A unit names no model, or the control model itself: a separate ControlNet is refused."""
    if not unit.model:
        return
    from pathlib import Path

    from engine.library.resolve import model_path as resolve_path

    try:
        named = resolve_path(unit.model)
    except EaselError:  # a reference that names nothing is not this model either
        named = None
    if named is not None and Path(named).resolve() == Path(model_path).resolve():
        return
    raise InputError(
        f"{title} models read the control image themselves; the unit's model "
        f"'{Path(unit.model).name}' is not used with them (FLUX ControlNets are not run by "
        "Easel). Leave the unit's model empty."
    )


def prepare(request: GenerationRequest, spec: FamilySpec, model_path) -> tuple:
    """The checks that need the model's spec and path; (the spec to run, notes)."""
    check_control_request(request, spec.title)  # also when called without the capability check
    unit = request.control[0]
    check_unit_model(unit, model_path, spec.title)
    return spec_for_unit(spec, unit)


def spec_for_unit(spec: FamilySpec, unit: ControlUnit) -> tuple[FamilySpec, list[str]]:
    """The family entry the job runs with: a known kind stays (a preprocessor of the other kind
    is noted); an unknown one follows the unit's preprocessor (its steps and guidance)."""
    from engine.sd.modern_families import FAMILIES

    wants = _kind_of(unit.preprocessor)
    if spec.control == "any":
        if not wants:
            return spec, []
        chosen = FAMILIES[("flux", f"control-{wants}")]
        # the variant stays the model's ("control"): only the settings follow the map
        return replace(spec, defaults=chosen.defaults, control=wants), []
    if wants and wants != spec.control:
        return spec, [
            f"{spec.title} reads {spec.control} maps; the control image was preprocessed "
            f"with {unit.preprocessor}, which it was not made for"
        ]
    return spec, []


def _kind_of(preprocessor: str) -> str:
    if preprocessor == "depth":
        return "depth"
    return "canny" if preprocessor in EDGE_PREPROCESSORS else ""


def control_image(request: GenerationRequest, ctx: JobContext) -> Image.Image:
    """The unit's control map at the output size (read, resized with a notice, preprocessed),
    made before the model loads so a bad picture fails at once."""
    from engine.sd.control import _preprocess, _read, _sized

    unit = request.control[0]
    image = _sized(
        _read(unit.image, "control image"),
        (request.width, request.height),
        "The control image",
        ctx,
    )
    ctx.check_cancelled()
    return _preprocess(unit, image)
