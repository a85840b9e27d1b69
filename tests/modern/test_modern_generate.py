"""SD3 and FLUX.1 jobs through the real engine on tiny models loaded from disk, offline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.errors import InputError, ModelError
from engine.events import Failed, Result
from tests.helpers.pictures import assert_same_picture
from tests.modern.conftest import pixels, request


def run(engine, req):
    return engine.run(req, timeout=300)


def _diffusers(folder, cls_name, **changes):
    import diffusers

    pipe = getattr(diffusers, cls_name).from_pretrained(
        str(folder), local_files_only=True, dtype=torch.float32, **changes
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _generators(*seeds):
    return [torch.Generator("cpu").manual_seed(s) for s in seeds]


@pytest.mark.parametrize("model", ["sd3", "flux", "schnell"])
@pytest.mark.parametrize("mode", ["txt2img", "img2img", "inpaint"])
def test_each_mode_on_each_family(modern_engine, modern_models, images, model, mode):
    extra = {}
    if mode != "txt2img":
        extra = dict(init_image=str(images / "init.png"), strength=0.8)
    if mode == "inpaint":
        extra["mask_image"] = str(images / "mask.png")
    result = run(modern_engine, request(modern_models[model], mode=mode, **extra))
    assert isinstance(result, Result), result
    assert result.images[0].size == (32, 32)
    assert result.info["base_model"] == ("sd3" if model == "sd3" else "flux")
    assert result.metadata[0]["mode"] == mode


@pytest.mark.parametrize("model", ["sd3", "flux"])
def test_same_seed_same_pixels_and_batches_are_seed_plus_i(modern_engine, modern_models, model):
    first = run(modern_engine, request(modern_models[model]))
    again = run(modern_engine, request(modern_models[model]))
    assert np.array_equal(pixels(first), pixels(again))
    other = run(modern_engine, request(modern_models[model], seed=8))
    assert not np.array_equal(pixels(first), pixels(other))
    batch = run(modern_engine, request(modern_models[model], batch_size=2))
    assert [m["seed"] for m in batch.metadata] == [7, 8]
    for index, single in enumerate((first, other)):
        assert np.abs(pixels(batch, index) - pixels(single)).max() <= 2


def test_sd3_equals_a_plain_diffusers_call(modern_engine, modern_models):
    req = request(modern_models["sd3"], batch_size=2, steps=3, guidance_scale=5.0)
    ours = run(modern_engine, req)
    theirs = _diffusers(modern_models["sd3"], "StableDiffusion3Pipeline")(
        prompt=req.prompt,
        negative_prompt=req.negative_prompt,
        num_inference_steps=3,
        guidance_scale=5.0,
        height=32,
        width=32,
        num_images_per_prompt=2,
        generator=_generators(7, 8),
    ).images
    for index in range(2):
        assert_same_picture(pixels(ours, index), np.asarray(theirs[index]))
    assert ours.info["guidance_kind"] == "cfg"


@pytest.mark.parametrize("model", ["flux", "schnell"])
def test_flux_equals_a_plain_diffusers_call_with_distilled_guidance(
    modern_engine, modern_models, model
):
    req = request(modern_models[model], steps=3, guidance_scale=3.5)
    ours = run(modern_engine, req)
    theirs = _diffusers(modern_models[model], "FluxPipeline")(
        prompt=req.prompt,
        num_inference_steps=3,
        guidance_scale=3.5,
        height=32,
        width=32,
        max_sequence_length=512 if model == "flux" else 256,
        generator=_generators(7),
    ).images
    assert_same_picture(pixels(ours), np.asarray(theirs[0]))
    # FLUX dev takes guidance as a transformer input: no CFG, so the negative prompt is unused
    assert any("negative prompt" in note for note in ours.info["notes"])
    assert ours.info["guidance_kind"] == ("distilled" if model == "flux" else "none")
    stronger = run(modern_engine, request(modern_models[model], steps=3, guidance_scale=6.0))
    # schnell has no guidance embedder: the value changes nothing
    assert np.array_equal(pixels(ours), pixels(stronger)) == (model == "schnell")


def test_sd3_skip_t5_runs_without_the_t5_encoder(modern_engine, modern_models, services):
    from dataclasses import replace

    base = request(modern_models["sd3"])
    with_t5 = run(modern_engine, base)
    runtime = replace(base.runtime, skip_t5=True)
    without = run(modern_engine, base.replace(runtime=runtime))
    assert not np.array_equal(pixels(with_t5), pixels(without))
    assert without.metadata[0]["runtime"]["skip_t5"] is True
    theirs = _diffusers(
        modern_models["sd3"], "StableDiffusion3Pipeline", text_encoder_3=None, tokenizer_3=None
    )(
        prompt=base.prompt,
        negative_prompt=base.negative_prompt,
        num_inference_steps=2,
        guidance_scale=4.0,
        height=32,
        width=32,
        generator=_generators(7),
    ).images
    assert np.array_equal(pixels(without), np.asarray(theirs[0]))
    skipped = [k for k in services.cache.keys() if "skip_t5=True" in k]
    assert len(skipped) == 1  # a separate cached pipeline, without the T5 weights


@pytest.mark.parametrize("kind", ["flux_file", "flux_fp8", "flux_gguf"])
def test_single_transformer_files_take_the_rest_from_a_companion(
    modern_engine, modern_models, kind, no_network
):
    folder = run(modern_engine, request(modern_models["flux"]))
    single = run(modern_engine, request(modern_models[kind]))
    difference = np.abs(pixels(single) - pixels(folder)).max()
    # the same weights; fp8 and Q8_0 round them (a few levels of 255 on this tiny model)
    assert difference == 0 if kind == "flux_file" else difference <= 12
    assert single.info["model_variant"] == "dev"


def test_gguf_transformer_equals_diffusers_gguf_loading(modern_engine, modern_models):
    from diffusers import FluxTransformer2DModel, GGUFQuantizationConfig

    ours = run(modern_engine, request(modern_models["flux_gguf"]))
    companion = modern_models["flux_gguf"].parent / "flux-components"
    transformer = FluxTransformer2DModel.from_single_file(
        str(modern_models["flux_gguf"]),
        config=str(companion),
        subfolder="transformer",
        quantization_config=GGUFQuantizationConfig(compute_dtype=torch.float32),
        torch_dtype=torch.float32,
        local_files_only=True,
    )
    pipe = _diffusers(companion, "FluxPipeline", transformer=transformer)
    theirs = pipe(
        prompt="a photo of a cat",
        num_inference_steps=2,
        guidance_scale=4.0,
        height=32,
        width=32,
        generator=_generators(7),
    ).images
    assert_same_picture(pixels(ours), np.asarray(theirs[0]))
    sd3 = run(modern_engine, request(modern_models["sd3_gguf"]))
    assert isinstance(sd3, Result), sd3


def test_a_transformer_file_without_companion_says_what_to_add(modern_engine, modern_models):
    result = run(modern_engine, request(modern_models["lonely"]))
    assert isinstance(result, Failed)
    message = result.message
    assert "holds only the transformer" in message
    # the bundled FLUX.1 dev config asks for the real encoders, by the names people know
    for part in ("CLIP-L", "clip_l.safetensors", "T5-XXL", "t5xxl_fp16", "ae.safetensors"):
        assert part in message
    assert "text_encoders" in message and "found: none" in message
    assert str(modern_models["lonely"].parent) in message
    # the engine keeps serving
    assert isinstance(run(modern_engine, request(modern_models["flux"])), Result)


def test_model_defaults_fill_only_what_the_user_left_to_the_model(modern_engine, modern_models):
    from engine.api import GenerationRequest

    left = {"model_defaults": True}
    schnell = run(modern_engine, request(modern_models["schnell"], extras=left))
    used = schnell.metadata[0]
    assert (used["steps"], used["guidance_scale"], used["sampler"]) == (4, 0.0, "Euler")
    assert "model_defaults" not in used["extras"]  # the stored request is concrete
    dev = run(modern_engine, request(modern_models["flux"], extras={"model_defaults": ["steps"]}))
    assert (dev.metadata[0]["steps"], dev.metadata[0]["guidance_scale"]) == (28, 4.0)
    # reuse settings: the stored request replays the same pixels
    replay = run(modern_engine, GenerationRequest.from_dict(schnell.metadata[0]))
    assert np.array_equal(pixels(replay), pixels(schnell))


def test_png_metadata_round_trip_reproduces_the_image(modern_engine, modern_models, tmp_path):
    from engine.metadata import read_generation_metadata, save_png_with_metadata

    first = run(modern_engine, request(modern_models["sd3"], sampler="DPM++ 2M"))
    assert first.metadata[0]["sampler"] == "Euler"  # what actually ran is what is stored
    path = save_png_with_metadata(first.images[0], tmp_path / "sd3.png", first.metadata[0])
    again = run(modern_engine, read_generation_metadata(path))
    assert np.array_equal(pixels(again), pixels(first))


def test_bad_input_gets_one_clear_message(modern_engine, modern_models, images):
    odd = run(modern_engine, request(modern_models["flux"], width=40))
    # a size FLUX cannot make runs at the nearest one it can, and the user is told
    assert not isinstance(odd, Failed) and odd.images[0].width == 48
    assert any("multiples of 16" in n and "ran as 48x" in n for n in odd.info["notices"])
    from engine.api import LoraRef

    lora = run(modern_engine, request(modern_models["sd3"], loras=(LoraRef("/x.safetensors"),)))
    assert isinstance(lora, Failed) and "LoRA file not found" in lora.message


def test_fit_request_refuses_modes_a_family_does_not_run():
    from engine.sd.modern_families import FAMILIES
    from engine.sd.modern_generate import fit_request

    fill = FAMILIES[("flux", "fill")]
    with pytest.raises(InputError, match="FLUX.1 Fill models run inpaint, not txt2img"):
        fit_request(request("x"), fill)


def test_family_spec_for_unknown_variants():
    from engine.sd.modern_families import family_spec, model_variant

    assert model_variant("dev,Q4_K") == "dev"
    assert model_variant("large,fp8") == "large"
    assert family_spec("sd3", "7 blocks").title == "SD3"
    assert family_spec("flux", "control,Q8_0").pipelines  # FLUX.1 Canny / Depth run now
    with pytest.raises(ModelError):
        family_spec("flux", "256 input channels")
