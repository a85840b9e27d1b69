"""The `GenerationRequest` handler: resolve the model, then hand over to its family."""

from __future__ import annotations

from engine.api import GenerationRequest
from engine.context import JobContext
from engine.events import Result
from engine.library.resolve import resolve_model


def run_generation(request: GenerationRequest, ctx: JobContext) -> Result:
    model = resolve_model(request.model)
    if model.family == "sd":
        from engine.sd.generate import generate_sd

        return generate_sd(request, ctx, model)
    from engine.families.registry import generate_native

    return generate_native(request, ctx, model)
