"""Stable Diffusion jobs through the real engine on tiny pipelines loaded from disk."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from engine.api import SAMPLERS, GenerationRequest, LoraRef
from engine.errors import InputError, OutputError
from engine.events import Cancelled, Failed, Preview, Progress, Result
from engine.sd.generate import check_output
from engine.sd.samplers import SAMPLER_SPECS, make_scheduler
from tests.helpers.pictures import assert_same_picture
from tests.sd.conftest import RUNTIME


def request(model, **changes) -> GenerationRequest:
    fields = dict(
        prompt="a red apple",
        negative_prompt="blurry",
        model=str(model),
        steps=3,
        width=64,
        height=64,
        seed=42,
        sampler="Euler",
        runtime=RUNTIME,
    )
    fields.update(changes)
    return GenerationRequest(**fields)


def run(engine, req, events=None):
    if events is not None:
        engine.subscribe(events.append)
    final = engine.run(req, timeout=300)
    if events is not None:
        engine.unsubscribe(events.append)
    return final


def pixels(result: Result, index: int = 0) -> np.ndarray:
    assert isinstance(result, Result), result
    return np.asarray(result.images[index])


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """An init image, a matching mask (right half white) and a wrongly sized mask."""
    folder = tmp_path_factory.mktemp("inputs")
    gradient = np.linspace(0, 255, 64, dtype=np.uint8)
    rgb = np.stack(
        [
            np.tile(gradient, (64, 1)),
            np.tile(gradient[:, None], (1, 64)),
            np.full((64, 64), 90, np.uint8),
        ],
        axis=-1,
    )
    Image.fromarray(rgb).save(folder / "init.png")
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 32:] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    Image.new("L", (32, 32), 255).save(folder / "small-mask.png")
    Image.new("L", (64, 64), 0).save(folder / "empty-mask.png")
    (folder / "not-an-image.png").write_text("this is text, not a PNG")
    return folder


# -- modes --------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["sd1", "sdxl", "inpaint"])
@pytest.mark.parametrize("mode", ["txt2img", "img2img", "inpaint"])
def test_each_mode_on_each_model_kind(sd_engine, tiny_models, images, model, mode):
    extra = {}
    if mode != "txt2img":
        extra = {"init_image": str(images / "init.png"), "strength": 0.5, "steps": 4}
    if mode == "inpaint":
        extra["mask_image"] = str(images / "mask.png")
    events = []
    result = run(sd_engine, request(tiny_models[model], mode=mode, **extra), events)
    out = pixels(result)
    assert out.shape == (64, 64, 3)
    assert result.metadata[0]["mode"] == mode
    assert result.metadata[0]["base_model"] == ("sdxl" if model == "sdxl" else "sd1")
    steps = [e for e in events if isinstance(e, Progress) and e.step > 0]
    assert steps[-1].step == steps[-1].total == (3 if mode == "txt2img" else 2)  # strength 0.5
    if mode != "txt2img":
        assert not np.array_equal(out, np.asarray(Image.open(images / "init.png")))


def test_inpaint_keeps_the_unmasked_half_closer_to_the_original(sd_engine, tiny_models, images):
    req = request(
        tiny_models["sd1"],
        mode="inpaint",
        init_image=str(images / "init.png"),
        mask_image=str(images / "mask.png"),
        strength=1.0,
    )
    out = pixels(run(sd_engine, req)).astype(int)
    init = np.asarray(Image.open(images / "init.png")).astype(int)
    kept = np.abs(out[:, :24] - init[:, :24]).mean()
    repainted = np.abs(out[:, 40:] - init[:, 40:]).mean()
    assert kept < repainted


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_runs(sd_engine, tiny_models, sampler):
    result = run(sd_engine, request(tiny_models["sd1"], sampler=sampler, steps=2))
    assert pixels(result).std() > 0
    assert result.metadata[0]["sampler"] == sampler


def test_sampler_table_covers_every_request_sampler_and_keeps_the_model_schedule():
    assert set(SAMPLER_SPECS) == set(SAMPLERS)
    from diffusers import PNDMScheduler

    base = PNDMScheduler(beta_schedule="scaled_linear", prediction_type="v_prediction").config
    for name in SAMPLERS:
        scheduler = make_scheduler(name, base, seeds=[1, 2])
        assert scheduler.config.prediction_type == "v_prediction", name
        assert scheduler.config.beta_schedule == "scaled_linear", name
    assert make_scheduler("DPM++ 2M Karras", base).config.use_karras_sigmas is True
    assert make_scheduler("DPM++ 2M", base).config.use_karras_sigmas is False
    with pytest.raises(InputError, match="Unknown sampler"):
        make_scheduler("Heun++", base)


def test_a_sampler_does_not_leak_its_options_into_the_next_job(tiny_models):
    from engine.services import Services
    from engine.worker import Engine

    engine = Engine(services=Services())  # a fresh cache: the first UniPC run is pristine
    try:
        first = run(engine, request(tiny_models["sd1"], sampler="UniPC"))
        run(engine, request(tiny_models["sd1"], sampler="DPM++ 2M Karras"))  # Karras sigmas
        again = run(engine, request(tiny_models["sd1"], sampler="UniPC"))
    finally:
        engine.shutdown()
    assert np.array_equal(pixels(first), pixels(again))


# -- determinism and parity with diffusers -----------------------------------------------------
def test_same_request_same_pixels_and_batch_seeds(sd_engine, tiny_models):
    first = run(sd_engine, request(tiny_models["sd1"], sampler="Euler a"))
    again = run(sd_engine, request(tiny_models["sd1"], sampler="Euler a"))
    assert np.array_equal(pixels(first), pixels(again))
    other_seed = run(sd_engine, request(tiny_models["sd1"], sampler="Euler a", seed=43))
    assert not np.array_equal(pixels(first), pixels(other_seed))
    batch = run(sd_engine, request(tiny_models["sd1"], sampler="Euler a", batch_size=2))
    assert [m["seed"] for m in batch.metadata] == [42, 43]
    assert all(m["batch_size"] == 1 and m["batch_seed"] == 42 for m in batch.metadata)
    # image i of a batch is the image of seed + i (up to batched-matmul rounding)
    for index, single in enumerate((first, other_seed)):
        diff = np.abs(pixels(batch, index).astype(int) - pixels(single).astype(int))
        assert diff.max() <= 2


@pytest.mark.parametrize("model", ["sd1", "sdxl"])
def test_engine_output_equals_a_plain_diffusers_call(sd_engine, tiny_models, model):
    from diffusers import DiffusionPipeline, EulerAncestralDiscreteScheduler

    req = request(tiny_models[model], sampler="Euler a", batch_size=2, steps=4, guidance_scale=5)
    ours = run(sd_engine, req)
    pipe = DiffusionPipeline.from_pretrained(
        str(tiny_models[model]), local_files_only=True, dtype=torch.float32
    )
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    engine_layout(pipe)
    theirs = pipe(
        prompt=req.prompt,
        negative_prompt=req.negative_prompt,
        num_inference_steps=4,
        guidance_scale=5,
        height=64,
        width=64,
        num_images_per_prompt=2,
        generator=[torch.Generator("cpu").manual_seed(s) for s in (42, 43)],
    ).images
    for index in range(2):
        assert_same_picture(pixels(ours, index), np.asarray(theirs[index]))


def test_v_prediction_model_matches_diffusers(sd_engine, tiny_models, tmp_path):
    # SD 2.x-768 style: the same folder with a v-prediction scheduler config
    from diffusers import DiffusionPipeline, EulerDiscreteScheduler

    folder = tmp_path / "v-pred"
    shutil.copytree(tiny_models["sd1"], folder)
    config_file = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(config_file.read_text())
    config["prediction_type"] = "v_prediction"
    config_file.write_text(json.dumps(config))
    ours = run(sd_engine, request(folder, sampler="Euler"))
    pipe = DiffusionPipeline.from_pretrained(str(folder), local_files_only=True)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    engine_layout(pipe)
    theirs = pipe(
        prompt="a red apple",
        negative_prompt="blurry",
        num_inference_steps=3,
        height=64,
        width=64,
        guidance_scale=7.0,
        generator=[torch.Generator("cpu").manual_seed(42)],
    ).images[0]
    assert_same_picture(pixels(ours), np.asarray(theirs))
    epsilon = run(sd_engine, request(tiny_models["sd1"], sampler="Euler"))
    assert not np.array_equal(pixels(ours), pixels(epsilon))


def test_memory_options_apply_per_job_and_switch_back(sd_engine, tiny_models, services):
    from engine.api import RuntimeOptions

    plain = run(sd_engine, request(tiny_models["sd1"]))
    saving = RuntimeOptions(
        device="cpu",
        precision="fp32",
        cpu_threads=1,
        attention_slicing=True,
        vae_tiling=True,
        vae_slicing=True,
        offload="model",  # no effect on the CPU, and no error either
    )
    sliced = run(sd_engine, request(tiny_models["sd1"], runtime=saving))
    assert np.abs(pixels(sliced).astype(int) - pixels(plain)).max() <= 2
    (key,) = [k for k in services.cache.keys() if "tiny-sd1|" in k]  # one copy, not two
    with services.cache.use(key, lambda: None) as pipe:
        assert pipe.vae.use_tiling and pipe.vae.use_slicing
    loads = services.cache.loads
    back = run(sd_engine, request(tiny_models["sd1"]))
    assert np.array_equal(pixels(back), pixels(plain))
    assert services.cache.loads == loads
    with services.cache.use(key, lambda: None) as pipe:
        assert not (pipe.vae.use_tiling or pipe.vae.use_slicing)


def test_loading_and_generating_need_no_network(tiny_models, no_network):
    from engine.services import Services
    from engine.worker import Engine

    engine = Engine(services=Services())  # nothing cached: this loads from disk
    try:
        assert isinstance(run(engine, request(tiny_models["sdxl"])), Result)
    finally:
        engine.shutdown()


# -- progress, previews, cancel, recovery ------------------------------------------------------
def test_progress_previews_and_model_cache(sd_engine, tiny_models, services):
    events = []
    run(sd_engine, request(tiny_models["sd1"], steps=5), events)
    steps = [e.step for e in events if isinstance(e, Progress) and e.step > 0]
    assert steps == [1, 2, 3, 4, 5]
    previews = [e.image for e in events if isinstance(e, Preview)]
    assert previews and previews[0].size == (8, 8)  # latent resolution: 64 / 8
    loads = services.cache.loads
    run(sd_engine, request(tiny_models["sd1"], steps=2, sampler="DDIM"))
    assert services.cache.loads == loads  # switching settings reuses the loaded model


def test_cancel_at_step_k_stops_within_one_step(sd_engine, tiny_models):
    seen = []

    def cancel_at_three(event):
        if isinstance(event, Progress) and event.step > 0:
            seen.append(event.step)
            if event.step == 3:
                sd_engine.cancel(event.job_id)

    sd_engine.subscribe(cancel_at_three)
    final = sd_engine.run(request(tiny_models["sd1"], steps=30), timeout=300)
    assert isinstance(final, Cancelled)
    assert seen == [1, 2, 3]


def test_a_failing_job_is_followed_by_a_good_one(sd_engine, tiny_models, tmp_path):
    failed = run(sd_engine, request(tmp_path / "no-such-model"))
    assert isinstance(failed, Failed) and failed.kind == "ModelError"
    assert "Model not found" in failed.message
    assert isinstance(run(sd_engine, request(tiny_models["sd1"])), Result)


# -- LoRA ---------------------------------------------------------------------------------------
def test_lora_weight_changes_the_image_and_is_removed_afterwards(sd_engine, tiny_models):
    lora = str(tiny_models["lora"])
    base = pixels(run(sd_engine, request(tiny_models["sd1"])))
    zero = pixels(run(sd_engine, request(tiny_models["sd1"], loras=(LoraRef(lora, 0.0),))))
    half = pixels(run(sd_engine, request(tiny_models["sd1"], loras=(LoraRef(lora, 0.5),))))
    full = pixels(run(sd_engine, request(tiny_models["sd1"], loras=(LoraRef(lora, 1.0),))))
    assert np.abs(zero.astype(int) - base).max() <= 1
    base_to_half = np.abs(half.astype(int) - base).mean()
    base_to_full = np.abs(full.astype(int) - base).mean()
    assert 0 < base_to_half < base_to_full
    after = pixels(run(sd_engine, request(tiny_models["sd1"])))
    assert np.array_equal(after, base)  # the cached pipeline is clean again


def test_lora_for_another_model_is_refused(sd_engine, tiny_models, tmp_path):
    from safetensors.torch import save_file

    wrong = run(sd_engine, request(tiny_models["sdxl"], loras=(LoraRef(str(tiny_models["lora"])),)))
    assert isinstance(wrong, Failed) and wrong.kind == "ModelError"
    assert "does not fit" in wrong.message
    junk = tmp_path / "junk.safetensors"
    save_file({"some.unrelated.weight": torch.zeros(3, 3)}, str(junk))
    refused = run(sd_engine, request(tiny_models["sd1"], loras=(LoraRef(str(junk)),)))
    assert isinstance(refused, Failed) and "does not fit" in refused.message
    base = pixels(run(sd_engine, request(tiny_models["sd1"])))
    # a good LoRA followed by a bad one: the good one must not stay in the cached model
    both = (LoraRef(str(tiny_models["lora"])), LoraRef(str(junk)))
    assert isinstance(run(sd_engine, request(tiny_models["sd1"], loras=both)), Failed)
    assert np.array_equal(pixels(run(sd_engine, request(tiny_models["sd1"]))), base)


# -- bad input ----------------------------------------------------------------------------------
def _broken_copies(tiny_models, root):
    no_unet = root / "no-unet"
    shutil.copytree(tiny_models["sd1"], no_unet)
    for weights in (no_unet / "unet").glob("*.safetensors"):
        weights.unlink()
    other = root / "other-pipeline"
    other.mkdir()
    (other / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    empty = root / "empty-folder"
    empty.mkdir()
    return {"no-unet": no_unet, "other": other, "empty": empty}


@pytest.mark.parametrize(
    ("case", "kind", "message"),
    [
        ("empty", "ModelError", "not a model folder"),
        ("no-unet", "ModelError", "could not be loaded"),
        ("other", "ModelError", "'FluxPipeline' pipeline"),
        ("init-missing", "InputError", "does not exist"),
        ("init-not-image", "InputError", "not a picture Easel can read"),
        ("mask-size", "InputError", "mask is 32x32 but the init image is 64x64"),
        ("mask-empty", "InputError", "mask is empty"),
        ("lora-missing", "InputError", "LoRA file not found"),
    ],
)
def test_bad_input_gets_one_clear_message(
    sd_engine, tiny_models, images, tmp_path, case, kind, message
):
    broken = _broken_copies(tiny_models, tmp_path)
    sd1 = tiny_models["sd1"]
    init, mask = str(images / "init.png"), str(images / "mask.png")
    requests = {
        "empty": lambda: request(broken["empty"]),
        "no-unet": lambda: request(broken["no-unet"]),
        "other": lambda: request(broken["other"]),
        "init-missing": lambda: request(sd1, mode="img2img", init_image=str(tmp_path / "x.png")),
        "init-not-image": lambda: request(
            sd1, mode="img2img", init_image=str(images / "not-an-image.png")
        ),
        "mask-size": lambda: request(
            sd1, mode="inpaint", init_image=init, mask_image=str(images / "small-mask.png")
        ),
        "mask-empty": lambda: request(
            sd1, mode="inpaint", init_image=init, mask_image=str(images / "empty-mask.png")
        ),
        "lora-missing": lambda: request(sd1, loras=(LoraRef(str(tmp_path / "none.safetensors")),)),
    }
    final = run(sd_engine, requests[case]())
    assert isinstance(final, Failed), final
    assert final.kind == kind and message in final.message
    assert mask  # the matching mask exists, so the failures above are about the bad one


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"width": 65}, "not a multiple of 8; use 64"),
        ({"steps": 0}, "Steps must be between 1"),
        ({"strength": 0.0}, "Strength must be above 0"),
        ({"sampler": "Heun++"}, "Unknown sampler 'Heun++'"),
    ],
)
def test_settings_out_of_range_are_refused_before_a_job_runs(changes, message):
    with pytest.raises(InputError, match=message.replace("+", r"\+")):
        request("model", **changes)


def test_nan_output_is_reported_with_the_fix_not_saved(sd_engine, tiny_models, tmp_path):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "nan-vae"
    shutil.copytree(tiny_models["sd1"], broken)
    (weights_file,) = (broken / "vae").glob("*.safetensors")
    weights = load_file(str(weights_file))
    weights["decoder.conv_out.bias"] = torch.full_like(weights["decoder.conv_out.bias"], np.nan)
    save_file(weights, str(weights_file))
    final = run(sd_engine, request(broken))
    assert isinstance(final, Failed) and final.kind == "OutputError"
    assert "NaN" in final.message


def test_all_black_and_fp16_hints():
    with pytest.raises(OutputError, match="all-black"):
        check_output(torch.zeros(1, 3, 8, 8), torch.float32)
    with pytest.raises(OutputError, match="fp16.*--precision fp32"):
        check_output(torch.full((1, 3, 8, 8), float("nan")), torch.float16)
    check_output(torch.rand(2, 3, 8, 8) + 0.01, torch.float32)  # a real image passes


# -- single-file helpers -------------------------------------------------------------------------
def test_single_file_pipelines_become_text_to_image_and_refiners_are_refused(tiny_models):
    from diffusers import (
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        StableDiffusionXLImg2ImgPipeline,
        StableDiffusionXLPipeline,
    )

    from engine.errors import ModelError
    from engine.sd.loading import as_text_to_image

    inpaint = StableDiffusionInpaintPipeline.from_pretrained(
        str(tiny_models["inpaint"]), local_files_only=True
    )
    base = as_text_to_image(inpaint, tiny_models["inpaint"])
    assert type(base) is StableDiffusionPipeline and base.unet is inpaint.unet
    xl = StableDiffusionXLPipeline.from_pretrained(str(tiny_models["sdxl"]), local_files_only=True)
    assert as_text_to_image(xl, tiny_models["sdxl"]) is xl
    refiner = StableDiffusionXLImg2ImgPipeline(
        vae=xl.vae,
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=xl.text_encoder_2,
        tokenizer_2=xl.tokenizer_2,
        unet=xl.unet,
        scheduler=xl.scheduler,
        requires_aesthetics_score=True,
    )
    with pytest.raises(ModelError, match="SDXL refiner"):
        as_text_to_image(refiner, tiny_models["sdxl"])


def test_a1111_short_hash_for_single_files(tmp_path):
    import hashlib

    from engine.library.resolve import ResolvedModel
    from engine.sd.generate import model_hash, model_name

    checkpoint = tmp_path / "dreamy-v1.safetensors"
    checkpoint.write_bytes(b"weights" * 1000)
    resolved = ResolvedModel(path=checkpoint, family="sd", layout="single_file")
    assert model_hash(resolved) == hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:10]
    assert model_name(resolved) == "dreamy-v1"
    folder = ResolvedModel(path=tmp_path, family="sd", layout="diffusers")
    assert model_hash(folder) == "" and model_name(folder) == tmp_path.name


def engine_layout(pipe) -> None:
    """The engine's memory layout (channels_last) on a plain diffusers pipeline: the same
    kernels, so the same float rounding, and the comparison can stay pixel for pixel."""
    from engine.sd.speed import apply_speed_plan, plan_for

    apply_speed_plan(pipe, plan_for("cpu", torch.float32))
