"""The `PreviewDecoderRequest` handler: distil a model's fast preview decoder on the worker.

What `easel models distil-preview` and the GUI's "Build fast preview" run. The model comes from
the engine's model cache under the key generation uses, so building the decoder for the model
that is open costs no second copy in RAM, and the next live update finds the pipeline warm and
the decoder in the cache (`engine.sd.tiny_decoder.preview_decoder_for` looks again each job).
"""

from __future__ import annotations

import time

from engine.api import PreviewDecoderRequest
from engine.context import JobContext
from engine.errors import InputError
from engine.events import Result

STAGE = "building the preview decoder"


def run_preview_decoder(request: PreviewDecoderRequest, ctx: JobContext) -> Result:
    from engine import devices
    from engine.library.resolve import resolve_model
    from engine.sd.distil_decoder import distil_decoder, save_distilled
    from engine.sd.loading import cache_key, load_base_pipeline
    from engine.sd.memory_plan import make_room, plan_for
    from engine.sd.tiny_decoder import cache_path

    started = time.perf_counter()
    resolved = resolve_model(request.model)
    if resolved.family != "sd":
        raise InputError(
            f"'{resolved.path.name}' is one of Easel's own models; they decode fast already and "
            "need no preview decoder."
        )
    device, dtype = devices.prepare(request.runtime)
    cached = cache_key(resolved, device, dtype, request.runtime) in ctx.cache
    plan = plan_for(resolved, device, dtype, request.runtime, ctx.cache, cached=cached)
    key = cache_key(resolved, device, dtype, request.runtime, plan.offload)
    if key not in ctx.cache:
        ctx.progress(0, request.steps, stage=plan.loading_stage())
        make_room(ctx.cache, plan, device.type)

    def loader():
        return load_base_pipeline(resolved, device, dtype, request.runtime, plan.offload)

    def progress(step: int, total: int) -> None:
        ctx.check_cancelled()  # between training steps: a cancel stops it within one step
        ctx.progress(step, total, stage=STAGE)

    with ctx.cache.use(key, loader) as pipe:
        vae = getattr(pipe, "vae", None)
        if vae is None or vae.config.latent_channels != 4:
            raise InputError(
                f"'{resolved.path.name}' has no 4-channel SD VAE; a preview decoder is built for "
                "SD 1.x, 2.x and SDXL models."
            )
        ctx.progress(0, request.steps, stage=STAGE)
        decoder, report = distil_decoder(vae, steps=request.steps, progress=progress)
        path = cache_path(resolved.cache_key, vae)
        save_distilled(path, decoder, report)
    info = {
        **report,
        "model_name": resolved.path.name,
        "path": str(path),
        "total_s": round(time.perf_counter() - started, 3),
    }
    return Result(ctx.job_id, info=info)
