"""Pipelines for other modes share the cached model's modules and never cast them.

diffusers' `from_pipe` casts the new pipeline to float32 when no dtype is given; because the
modules are shared, one img2img, inpaint or ControlNet job turned a cached bf16 model (and the
ControlNet) into fp32 for good. `engine.sd.sharing.share_pipeline` matches components as
from_pipe does, without the cast."""

from __future__ import annotations

import diffusers
import pytest
import torch

from engine.api import GenerationRequest, Mode, RuntimeOptions
from engine.api_control import ControlUnit
from engine.context import JobContext
from engine.generate import run_generation
from engine.sd.sharing import share_pipeline
from engine.services import Services

BF16 = RuntimeOptions(device="cpu", precision="bf16", cpu_threads=1)


def module_dtypes(pipe) -> dict:
    return {
        name: next(module.parameters()).dtype
        for name, module in pipe.components.items()
        if isinstance(module, torch.nn.Module)
    }


@pytest.mark.parametrize(
    "cls", [diffusers.StableDiffusionImg2ImgPipeline, diffusers.StableDiffusionInpaintPipeline]
)
def test_share_pipeline_matches_from_pipe_without_the_cast(control_models, cls):
    def load():
        folder = str(control_models["sd1"])
        return diffusers.StableDiffusionPipeline.from_pretrained(folder, torch_dtype=torch.bfloat16)

    base = load()
    shared = share_pipeline(cls, base)
    assert type(shared) is cls
    for name, module in base.components.items():
        assert shared.components[name] is module  # shared, not copied
    assert set(module_dtypes(shared).values()) == {torch.bfloat16}  # nothing cast
    reference = cls.from_pipe(load())  # what diffusers builds (and casts)
    assert set(shared.components) == set(reference.components)
    public = lambda pipe: {k: v for k, v in dict(pipe.config).items() if not k.startswith("_")}  # noqa: E731
    assert public(shared) == public(reference)
    assert set(module_dtypes(reference).values()) == {torch.float32}  # the cast this avoids


def test_img2img_inpaint_and_controlnet_jobs_leave_the_cached_model_in_bf16(
    control_models, pictures
):
    services = Services()
    ctx = JobContext(0, lambda event: None, services=services)
    common = dict(model=str(control_models["sd1"]), prompt="a cat", steps=2, width=64, height=64)
    init, mask = str(pictures / "init.png"), str(pictures / "mask-right.png")
    unit = ControlUnit(
        image=str(pictures / "drawing.png"), model=str(control_models["cn_sd1"]["folder"])
    )
    requests = [
        GenerationRequest(**common, runtime=BF16),
        GenerationRequest(**common, mode=Mode.IMG2IMG, init_image=init, runtime=BF16),
        GenerationRequest(
            **common, mode=Mode.INPAINT, init_image=init, mask_image=mask, runtime=BF16
        ),
        GenerationRequest(**common, control=[unit], runtime=BF16),
    ]
    for request in requests:
        assert run_generation(request, ctx).images
        for key in services.cache.keys():
            with services.cache.use(key, lambda: None) as model:
                dtypes = (
                    module_dtypes(model)
                    if hasattr(model, "components")
                    else {"controlnet": next(model.parameters()).dtype}
                )
            assert set(dtypes.values()) == {torch.bfloat16}, (request.mode, key, dtypes)
    assert len(services.cache.keys()) == 2  # the model and its ControlNet, each once
