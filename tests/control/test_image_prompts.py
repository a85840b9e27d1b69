"""Image prompts (IP-Adapter) through the real engine on tiny SD 1.x / SDXL pipelines, with tiny
IP-Adapters and CLIP image encoders loaded from disk by the library code users hit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from engine.api_control import ControlUnit
from tests.control.conftest import image_prompt as prompt
from tests.control.conftest import make_request, pixels, run
from tests.helpers.pictures import assert_same_picture


@pytest.mark.parametrize("base", ["sd1", "sdxl"])
def test_an_image_prompt_changes_the_output_and_weight_zero_does_not(
    engine, control_models, ip_models, references, base
):
    model, adapter = control_models[base], ip_models[f"ip_{base}"]
    plain = run(engine, make_request(model))
    steered = run(engine, make_request(model, image_prompts=[prompt(references, adapter)]))
    off = run(engine, make_request(model, image_prompts=[prompt(references, adapter, weight=0)]))
    assert np.abs(pixels(steered) - pixels(plain)).mean() > 2.0
    assert np.array_equal(pixels(off), pixels(plain))
    assert steered.info["ip_adapters"] == [adapter.stem]
    assert steered.info["image_encoder"] == f"ip-{base}"  # the folder beside the adapter
    # the cached model is clean: the next plain job gives the first plain job's pixels
    again = run(engine, make_request(model))
    assert np.array_equal(pixels(again), pixels(plain))


@pytest.mark.parametrize("base", ["sd1", "sdxl"])
def test_ip_adapter_plus_runs_and_equals_diffusers(
    engine, control_models, ip_models, references, base
):
    model, adapter = control_models[base], ip_models[f"ip_{base}_plus"]
    plain = run(engine, make_request(model, guidance_scale=5.0))
    req = make_request(
        model, guidance_scale=5.0, image_prompts=[prompt(references, adapter, weight=0.9)]
    )
    ours = run(engine, req)
    assert np.abs(pixels(ours) - pixels(plain)).mean() > 2.0
    # the resampler's own attention processors are gone afterwards: the next plain job is clean
    assert np.array_equal(
        pixels(run(engine, make_request(model, guidance_scale=5.0))), pixels(plain)
    )
    theirs = _diffusers_ip_adapter_call(control_models, ip_models, base, adapter, req, 0.9)
    assert_same_picture(pixels(ours), np.asarray(theirs).astype(np.int16))


def test_the_reference_picture_and_the_weight_both_matter(
    engine, control_models, ip_models, references
):
    model, adapter = control_models["sd1"], ip_models["ip_sd1"]
    warm = run(engine, make_request(model, image_prompts=[prompt(references, adapter)]))
    noise = run(
        engine, make_request(model, image_prompts=[prompt(references, adapter, "noise.png")])
    )
    strong = run(
        engine, make_request(model, image_prompts=[prompt(references, adapter, weight=1.6)])
    )
    assert np.abs(pixels(warm) - pixels(noise)).mean() > 1.0
    assert np.abs(pixels(warm) - pixels(strong)).mean() > 1.0


def _diffusers_pipeline(control_models, ip_models, base):
    """diffusers' own pipeline for the tiny model, its IP-Adapter loaded by diffusers itself
    from the h94-style folder (weights file + `image_encoder/`)."""
    import diffusers
    from diffusers import EulerDiscreteScheduler

    from engine.sd.speed import apply_speed_plan, plan_for

    cls = (
        diffusers.StableDiffusionXLPipeline if base == "sdxl" else diffusers.StableDiffusionPipeline
    )
    pipe = cls.from_pretrained(str(control_models[base]), local_files_only=True)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    # the engine's memory layout (channels_last): the same kernels, so the same float rounding
    apply_speed_plan(pipe, plan_for("cpu", torch.float32))
    return pipe


def _diffusers_ip_adapter_call(control_models, ip_models, base, adapter, req, scale: float):
    """diffusers' own IP-Adapter path for `req` (the warm reference picture at `scale`)."""
    pipe = _diffusers_pipeline(control_models, ip_models, base)
    pipe.load_ip_adapter(
        str(adapter.parent), subfolder="", weight_name=adapter.name, local_files_only=True
    )
    pipe.set_ip_adapter_scale(scale)
    return pipe(
        prompt=req.prompt,
        negative_prompt=req.negative_prompt,
        ip_adapter_image=Image.open(req.image_prompts[0].image).convert("RGB"),
        num_inference_steps=req.steps,
        guidance_scale=req.guidance_scale,
        height=req.height,
        width=req.width,
        generator=[torch.Generator("cpu").manual_seed(req.seed)],
    ).images[0]


@pytest.mark.parametrize("base", ["sd1", "sdxl"])
def test_engine_equals_a_plain_diffusers_ip_adapter_call(
    engine, control_models, ip_models, references, base
):
    adapter = ip_models[f"ip_{base}"]
    req = make_request(
        control_models[base],
        guidance_scale=5.0,
        image_prompts=[prompt(references, adapter, weight=0.7)],
    )
    ours = run(engine, req)
    theirs = _diffusers_ip_adapter_call(control_models, ip_models, base, adapter, req, 0.7)
    assert_same_picture(pixels(ours), np.asarray(theirs).astype(np.int16))


def test_two_reference_pictures_blend_each_with_its_weight(
    engine, control_models, ip_models, references
):
    model, adapter = control_models["sd1"], ip_models["ip_sd1"]
    first = prompt(references, adapter, weight=0.6)
    second = prompt(references, adapter, "noise.png", weight=0.9)

    def request(*prompts):
        return make_request(model, guidance_scale=5.0, image_prompts=list(prompts))

    one = run(engine, request(first))
    both = run(engine, request(first, second))
    assert both.info["ip_adapters"] == [adapter.stem, adapter.stem]
    assert np.abs(pixels(both) - pixels(one)).mean() > 1.0
    only_first = run(engine, request(first, second.replace(weight=0)))
    assert np.array_equal(pixels(only_first), pixels(one))
    # diffusers with one adapter per picture, each with its scale, gives the same pixels
    pipe = _diffusers_pipeline(control_models, ip_models, "sd1")
    pipe.load_ip_adapter(
        [str(adapter.parent)] * 2,
        subfolder=["", ""],
        weight_name=[adapter.name] * 2,
        local_files_only=True,
    )
    pipe.set_ip_adapter_scale([0.6, 0.9])
    theirs = pipe(
        prompt="a red apple",
        negative_prompt="blurry",
        ip_adapter_image=[
            Image.open(references / n).convert("RGB") for n in ("warm.png", "noise.png")
        ],
        num_inference_steps=3,
        guidance_scale=5.0,
        height=64,
        width=64,
        generator=[torch.Generator("cpu").manual_seed(42)],
    ).images[0]
    assert np.array_equal(pixels(both), np.asarray(theirs).astype(np.int16))


def test_two_different_adapters_in_one_request(engine, control_models, ip_models, references):
    model = control_models["sd1"]
    first = prompt(references, ip_models["ip_sd1"])
    # the second adapter has no encoder beside it: the request's one encoder serves both
    second = prompt(references, ip_models["ip_sd1_alone"], "noise.png", weight=0.5)
    one = run(engine, make_request(model, image_prompts=[first]))
    both = run(engine, make_request(model, image_prompts=[first, second]))
    assert both.info["ip_adapters"] == ["ip-adapter-tiny-sd1", "ip-adapter-alone"]
    assert np.abs(pixels(both) - pixels(one)).mean() > 1.0


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_image_prompts_work_in_img2img_and_inpaint(
    engine, control_models, ip_models, pictures, references, mode
):
    extra = {"mode": mode, "init_image": str(pictures / "init.png"), "strength": 0.8, "steps": 4}
    if mode == "inpaint":
        extra["mask_image"] = str(pictures / "mask-right.png")
    model = control_models["sd1"]
    plain = run(engine, make_request(model, **extra))
    steered = run(
        engine,
        make_request(model, image_prompts=[prompt(references, ip_models["ip_sd1"])], **extra),
    )
    assert np.abs(pixels(steered) - pixels(plain)).mean() > 1.0
    assert np.array_equal(pixels(run(engine, make_request(model, **extra))), pixels(plain))


@pytest.mark.parametrize("base", ["sd1", "sdxl"])
def test_image_prompts_with_a_controlnet_unit(
    engine, control_models, ip_models, pictures, references, base
):
    model = control_models[base]
    unit = ControlUnit(
        image=str(pictures / "drawing.png"),
        model=str(ip_models[f"cn_{base}_gentle"]),
        preprocessor="canny",
    )
    ip = [prompt(references, ip_models[f"ip_{base}"])]
    controlled = run(engine, make_request(model, control=[unit]))
    image_prompted = run(engine, make_request(model, image_prompts=ip))
    both = run(engine, make_request(model, control=[unit], image_prompts=ip))
    assert both.info["controlnets"] and both.info["ip_adapters"]
    # each steers: both differ from either alone
    assert np.abs(pixels(both) - pixels(controlled)).mean() > 5.0
    assert np.abs(pixels(both) - pixels(image_prompted)).mean() > 1.0
    again = run(engine, make_request(model, control=[unit]))
    assert np.array_equal(pixels(again), pixels(controlled))


def test_an_image_prompt_with_a_batch_and_a_lora(
    engine, control_models, ip_models, references, tmp_path
):
    from engine.api import LoraRef
    from tests.helpers.tiny_sd import build_lora

    model = control_models["sd1"]
    lora = build_lora(model, tmp_path / "tiny-lora.safetensors")
    loras = (LoraRef(path=str(lora), weight=0.8),)
    ip = [prompt(references, ip_models["ip_sd1"])]
    with_lora = run(engine, make_request(model, batch_size=2, loras=loras))
    both = run(engine, make_request(model, batch_size=2, loras=loras, image_prompts=ip))
    assert len(both.images) == 2
    for index in range(2):
        assert np.abs(pixels(both, index) - pixels(with_lora, index)).mean() > 1.0
    # the second image is seed + 1 alone
    alone = run(engine, make_request(model, seed=43, loras=loras, image_prompts=ip))
    assert np.array_equal(pixels(alone), pixels(both, 1))


def test_the_image_encoder_is_cached(engine, control_models, ip_models, references, services):
    model, adapter = control_models["sd1"], ip_models["ip_sd1"]
    run(engine, make_request(model, image_prompts=[prompt(references, adapter)]))
    loads = services.cache.loads
    run(engine, make_request(model, seed=7, image_prompts=[prompt(references, adapter)]))
    assert services.cache.loads == loads
    encoder = ip_models["encoder"]
    assert any(key.startswith(f"image_encoder:{encoder}") for key in services.cache.keys())


@pytest.mark.parametrize("key", ["ip_sd1", "ip_sd1_plus"])
def test_image_prompts_in_bf16(engine, control_models, ip_models, references, services, key):
    from engine.api import RuntimeOptions

    runtime = RuntimeOptions(device="cpu", precision="bf16", cpu_threads=1)
    model = control_models["sd1"]
    plain = run(engine, make_request(model, runtime=runtime))
    steered = run(
        engine,
        make_request(model, runtime=runtime, image_prompts=[prompt(references, ip_models[key])]),
    )
    assert steered.info["dtype"] == "bf16"
    assert np.abs(pixels(steered) - pixels(plain)).mean() > 2.0
    assert any(k.startswith("image_encoder:") and k.endswith("bf16") for k in services.cache.keys())


def test_a_cancelled_image_prompt_job_leaves_the_model_clean(
    engine, control_models, ip_models, references
):
    from engine.events import Cancelled, Progress

    model = control_models["sd1"]
    plain = run(engine, make_request(model))

    def cancel_at_two(event):
        if isinstance(event, Progress) and event.step == 2:
            engine.cancel(event.job_id)

    engine.subscribe(cancel_at_two)
    ip = [prompt(references, ip_models["ip_sd1_plus"])]
    try:
        final = engine.run(make_request(model, steps=20, image_prompts=ip), timeout=300)
    finally:
        engine.unsubscribe(cancel_at_two)
    assert isinstance(final, Cancelled), final
    assert np.array_equal(pixels(run(engine, make_request(model))), pixels(plain))
