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

        result = generate_native(checked.request, ctx, model)
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
