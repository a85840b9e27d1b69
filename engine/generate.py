"""The `GenerationRequest` handler: resolve the model, check the request against what the model
declares it can do (engine.capabilities), then hand over to its family.

The check runs before any model loads, so a request a model cannot honour fails at once with one
message; a documented fallback (the model's own size, the sampler it runs) is applied here and
reported as a notice in the result, and the request that really ran is what the family sees and
what its metadata records.
"""

from __future__ import annotations

from engine.api import GenerationRequest
from engine.capabilities import Capabilities, check_request, native_capabilities, sd_capabilities
from engine.context import JobContext
from engine.events import Result
from engine.library.resolve import ResolvedModel, resolve_model


def run_generation(request: GenerationRequest, ctx: JobContext) -> Result:
    model = resolve_model(request.model)
    checked = check_request(request, capabilities_of(model))
    if model.family == "sd":
        from engine.sd.generate import generate_sd

        result = generate_sd(checked.request, ctx, model)
    else:
        from engine.families.registry import generate_native
        from engine.sd.model_defaults import apply_model_defaults

        # native models declare no step defaults: drop the marker so stored settings are concrete
        result = generate_native(apply_model_defaults(checked.request, None), ctx, model)
    notices = [*checked.notices, *ctx.notices, *result.info.get("notices", [])]
    if notices:
        result.info["notices"] = list(dict.fromkeys(notices))
    return result


def capabilities_of(model: ResolvedModel) -> Capabilities:
    """The declaration for a resolved model (its config for native folders; SD otherwise)."""
    if model.family == "sd":
        return sd_capabilities(model_display_name(model), model.base, model.variant)
    return native_capabilities(model_display_name(model), model.config)


def model_display_name(model: ResolvedModel) -> str:
    """The name the app lists a model by: the file's stem or the folder's name."""
    return model.path.stem if model.layout == "single_file" else model.path.name


#: native sizes of the SD bases (what a request without a size uses)
_SD_SIDES = {"sdxl": 1024, "sdxl-refiner": 1024, "sd2-768-v": 768}


def request_defaults(model: ResolvedModel) -> dict:
    """Settings a request leaves unset take the model's own: its size, sampler, steps and CFG
    scale (what `easel generate` uses when the user gives none)."""
    caps = capabilities_of(model)
    if model.family != "sd":
        config = model.config
        side = caps.fixed_size or 512
        steps = config.get("steps", 20)
        guidance = config.get("guidance_scale", 7.0)
        return {
            "width": side - side % 8 or 8,
            "height": side - side % 8 or 8,
            "sampler": caps.default_sampler or "Euler a",
            "steps": int(steps) if isinstance(steps, (int, float)) else 20,
            "guidance_scale": float(guidance) if isinstance(guidance, (int, float)) else 7.0,
        }
    from engine.sd.modern_families import MODERN_BASES, family_spec

    if model.base in MODERN_BASES:
        spec = family_spec(model.base, model.variant)
        side, made_for = spec.default_size, spec.defaults
        return {
            "width": side,
            "height": side,
            "sampler": made_for.sampler,
            "steps": made_for.steps,
            "guidance_scale": made_for.guidance_scale,
        }
    side = _SD_SIDES.get(model.base, _SD_SIDES.get(f"{model.base}-{model.variant}", 512))
    return {"width": side, "height": side, "sampler": "Euler a", "steps": 20, "guidance_scale": 7.0}
