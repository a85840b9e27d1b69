"""The hires fix through the real engine on tiny SD 1.x / SDXL pipelines: two passes in one job,
one progress bar, cancel in either pass, equal to the two passes done by hand in diffusers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from engine.api_control import ControlUnit, HiresFix, Region
from engine.events import Cancelled, Failed, Progress, Result
from tests.control.conftest import make_request, pixels, run
from tests.helpers.pictures import assert_same_picture

FINAL = {"width": 128, "height": 128}


def hires_request(model, hires=None, **changes):
    fields = {**FINAL, "hires": hires or HiresFix(scale=2.0, strength=0.5)}
    fields.update(changes)
    return make_request(model, **fields)


@pytest.mark.parametrize("base", ["sd1", "sdxl"])
def test_hires_makes_the_final_size_from_a_first_pass_at_the_scaled_down_size(
    engine, control_models, base
):
    result = run(engine, hires_request(control_models[base]))
    assert result.images[0].size == (128, 128)
    assert result.info["hires_first_pass"] == "64x64"
    assert result.info["hires_steps_run"] == [3, 1]  # 3 steps, then 3 x 0.5 after the cut
    plain = run(engine, make_request(control_models[base], **FINAL))
    assert np.abs(pixels(result) - pixels(plain)).mean() > 2.0  # not a plain 128 px job


def _events(engine, request):
    events: list = []
    engine.subscribe(events.append)
    try:
        final = engine.run(request, timeout=300)
    finally:
        engine.unsubscribe(events.append)
    return final, [e for e in events if isinstance(e, Progress) and e.job_id == final.job_id]


def test_one_progress_bar_over_both_passes(engine, control_models):
    hires = HiresFix(scale=2.0, strength=0.5, steps=6)  # second pass: 6 x 0.5 = 3 steps
    final, progress = _events(engine, hires_request(control_models["sd1"], hires, steps=4))
    assert isinstance(final, Result)
    steps = [event.step for event in progress]
    totals = [event.total for event in progress]
    assert steps == sorted(steps) and totals == sorted(totals)  # never goes back
    sampling = [event for event in progress if "stage" not in event.info]
    assert [event.step for event in sampling] == list(range(1, 8))
    assert {event.total for event in sampling} == {7}
    upscaling = [event for event in progress if "hires" in str(event.info.get("stage", ""))]
    assert upscaling and upscaling[0].step == 4  # between the passes, at the first's end


@pytest.mark.parametrize("cancel_after", [1, 4])  # in the first pass; in the second
def test_cancel_in_either_pass_and_the_engine_keeps_serving(engine, control_models, cancel_after):
    hires = HiresFix(scale=2.0, strength=0.75, steps=4)  # passes of 3 and 3 steps
    request = hires_request(control_models["sd1"], hires, steps=3)
    seen: list[int] = []

    def sink(event):
        if isinstance(event, Progress) and "stage" not in event.info:
            seen.append(event.step)
            if event.step == cancel_after:
                engine.cancel(event.job_id)

    engine.subscribe(sink)
    try:
        final = engine.run(request, timeout=300)
    finally:
        engine.unsubscribe(sink)
    assert isinstance(final, Cancelled)
    assert seen[-1] == cancel_after  # stopped at the next step
    assert run(engine, make_request(control_models["sd1"])).images[0].size == (64, 64)


@pytest.mark.parametrize(
    ("base", "upscaler"), [("sd1", "latent"), ("sd1", "lanczos"), ("sdxl", "latent")]
)
def test_hires_equals_the_two_passes_by_hand_in_diffusers(engine, control_models, base, upscaler):
    import diffusers
    import torch.nn.functional as F
    from diffusers import EulerDiscreteScheduler

    from engine.sd.speed import apply_speed_plan, plan_for

    hires = HiresFix(scale=2.0, strength=0.6, steps=5, upscaler=upscaler)
    req = hires_request(control_models[base], hires, guidance_scale=5.0)
    ours = run(engine, req)
    names = ("StableDiffusionXL", "") if base == "sdxl" else ("StableDiffusion", "")
    txt2img = getattr(diffusers, f"{names[0]}Pipeline").from_pretrained(
        str(control_models[base]), local_files_only=True
    )
    txt2img.scheduler = EulerDiscreteScheduler.from_config(txt2img.scheduler.config)
    txt2img.set_progress_bar_config(disable=True)
    # the engine's memory layout (channels_last): the same kernels, so the same float rounding
    apply_speed_plan(txt2img, plan_for("cpu", torch.float32))
    common = dict(prompt=req.prompt, negative_prompt=req.negative_prompt, guidance_scale=5.0)
    in_latents = upscaler == "latent"
    first = txt2img(
        **common,
        height=64,
        width=64,
        num_inference_steps=3,
        generator=[torch.Generator("cpu").manual_seed(42)],
        output_type="latent" if in_latents else "pil",
    ).images
    if in_latents:
        enlarged = F.interpolate(first, size=(16, 16), mode="bicubic", align_corners=False)
    else:
        enlarged = [first[0].resize((128, 128), Image.Resampling.LANCZOS)]
    img2img = getattr(diffusers, f"{names[0]}Img2ImgPipeline")(**txt2img.components)
    img2img.scheduler = EulerDiscreteScheduler.from_config(txt2img.scheduler.config)
    img2img.set_progress_bar_config(disable=True)
    theirs = img2img(
        **common,
        image=enlarged,
        strength=0.6,
        num_inference_steps=5,
        generator=[torch.Generator("cpu").manual_seed(42)],
    ).images[0]
    assert_same_picture(pixels(ours), np.asarray(theirs).astype(np.int16))


@pytest.mark.parametrize(("base", "name"), [("sd1", "controlnet-3"), ("sdxl", "controlnet-5")])
def test_hires_with_a_controlnet_unit_in_both_passes(engine, control_models, pictures, base, name):
    unit = ControlUnit(
        image=str(pictures / "drawing.png"),
        model=str(control_models[f"cn_{base}"]["folder"]),
        preprocessor="canny",
    )
    model = control_models[base]
    plain = run(engine, hires_request(model))
    steered = run(engine, hires_request(model, control=[unit]))
    off = run(engine, hires_request(model, control=[unit.replace(weight=0.0)]))
    assert steered.images[0].size == (128, 128)
    assert steered.info["controlnets"] == [name]
    assert np.abs(pixels(steered) - pixels(plain)).mean() > 2.0
    assert np.array_equal(pixels(off), pixels(plain))
    # the control image (64 px) was resized to the final size, and the user told
    assert any("resized to 128x128" in note for note in steered.info["notices"])


@pytest.mark.parametrize("base", ["sd1", "sdxl"])
def test_hires_with_a_region_at_both_sizes(engine, control_models, tmp_path, base):
    mask = np.zeros((128, 128), np.uint8)
    mask[:, 64:] = 255
    Image.fromarray(mask).save(tmp_path / "right.png")
    region = Region(mask=str(tmp_path / "right.png"), prompt="a deep blue ocean with waves")
    model = control_models[base]
    plain = run(engine, hires_request(model))
    steered = run(engine, hires_request(model, regions=[region]))
    off = run(engine, hires_request(model, regions=[region.replace(weight=0.0)]))
    assert np.abs(pixels(steered) - pixels(plain)).mean() > 1.0
    assert np.array_equal(pixels(off), pixels(plain))


@pytest.fixture(scope="module")
def esrgan_file(tmp_path_factory):
    from safetensors.torch import save_file

    from tests.library.builders import tiny_esrgan

    path = tmp_path_factory.mktemp("hires-up") / "tiny-x2.safetensors"
    save_file(tiny_esrgan(scale=2).state_dict(), path)
    return path


def test_hires_with_an_upscaler_model(engine, control_models, esrgan_file):
    hires = HiresFix(scale=2.0, strength=0.5, upscaler=str(esrgan_file))
    final, progress = _events(engine, hires_request(control_models["sd1"], hires))
    assert isinstance(final, Result), getattr(final, "message", final)
    assert final.images[0].size == (128, 128)
    lanczos = run(engine, hires_request(control_models["sd1"], hires.replace(upscaler="Lanczos")))
    assert not np.array_equal(pixels(final), pixels(lanczos))  # the model did the enlarging
    steps = [event.step for event in progress]
    assert steps == sorted(steps)
    assert any("Upscaling for the hires fix" in str(e.info.get("stage")) for e in progress)


def test_an_inpainting_model_refines_an_enlarged_picture(engine, control_models):
    result = run(engine, hires_request(control_models["inpaint"]))
    assert result.images[0].size == (128, 128)
    assert any("enlarged the first pass with Lanczos" in n for n in result.info["notices"])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mode": "img2img", "init_image": "INIT"}, "runs with text-to-image"),
        ({"hires": HiresFix(scale=2.0, strength=0.2)}, "leaves no step to refine"),
        ({"width": 96, "height": 96, "hires": HiresFix(scale=2.0)}, "too small to sample"),
        ({"hires": HiresFix(scale=2.0, upscaler="/nowhere/x4.pth")}, "Upscaler not found"),
    ],
)
def test_bad_hires_settings_are_refused_and_the_engine_keeps_serving(
    engine, control_models, pictures, changes, message
):
    if changes.get("init_image") == "INIT":
        changes = {**changes, "init_image": str(pictures / "init.png")}
    final = engine.run(hires_request(control_models["sd1"], **changes), timeout=300)
    assert isinstance(final, Failed) and message in final.message, final
    run(engine, make_request(control_models["sd1"]))


def test_hires_metadata_round_trips_through_the_png(engine, control_models, tmp_path):
    import json

    from engine.api import GenerationRequest
    from engine.metadata.a1111 import parse_a1111
    from engine.metadata.writer import save_png_with_metadata

    hires = HiresFix(scale=2.0, strength=0.45, steps=4)
    result = run(engine, hires_request(control_models["sd1"], hires))
    path = tmp_path / "hires.png"
    save_png_with_metadata(result.images[0], path, result.metadata[0])
    info = Image.open(path).info
    assert "Size: 64x64" in info["parameters"]
    assert "Hires upscale: 2" in info["parameters"]
    assert "Denoising strength: 0.45" in info["parameters"]
    again = GenerationRequest.from_dict(json.loads(info["easel"]))
    assert again.hires == hires and (again.width, again.height) == (128, 128)
    imported = parse_a1111(info["parameters"]).request
    assert imported.hires == hires and (imported.width, imported.height) == (128, 128)


def test_a_lanczos_hires_reads_back_as_lanczos_from_the_a1111_text():
    from engine.metadata.a1111 import parse_a1111
    from engine.metadata.writer import a1111_parameters

    hires = HiresFix(scale=1.5, strength=0.4, upscaler="lanczos")
    data = {**make_request("/models/x.safetensors", width=96, height=96, hires=hires).to_dict()}
    text = a1111_parameters(data)
    assert "Hires upscaler: Lanczos" in text and "Size: 64x64" in text
    imported = parse_a1111(text)
    assert imported.request.hires == hires
    assert not any("Lanczos" in note for note in imported.notes)


def test_previews_come_from_both_passes(engine, control_models, monkeypatch):
    from engine.context import JobContext
    from engine.events import Preview

    monkeypatch.setattr(JobContext, "PREVIEW_MIN_INTERVAL_S", 0.0)  # every step, not 4 a second
    events: list = []
    engine.subscribe(events.append)
    try:
        final = engine.run(hires_request(control_models["sd1"]), timeout=300)
    finally:
        engine.unsubscribe(events.append)
    assert isinstance(final, Result)
    sizes = [e.image.size for e in events if isinstance(e, Preview) and e.job_id == final.job_id]
    first, second = sizes[0], sizes[-1]
    assert len(sizes) == 4 and sizes == [first] * 3 + [second]  # 3 steps, then 1
    assert second[0] == 2 * first[0]  # the second pass previews the enlarged latents


def test_a_hires_batch_is_each_seed_on_its_own(engine, control_models):
    model = control_models["sd1"]
    batch = run(engine, hires_request(model, batch_size=2))
    assert len(batch.images) == 2
    second = run(engine, hires_request(model, seed=43))
    # the same picture as seed 43 alone, up to float rounding of batched CPU kernels
    difference = np.abs(pixels(batch, 1) - pixels(second))
    assert difference.max() <= 3 and difference.mean() < 0.2, (difference.max(), difference.mean())
    other = np.abs(pixels(batch, 0) - pixels(second)).mean()
    assert other > 2.0  # image 0 is another seed's
    assert batch.metadata[1]["seed"] == 43 and batch.metadata[1]["hires"]["scale"] == 2.0


def test_the_gallery_hires_request_of_a_result_runs(engine, control_models):
    from engine.variations import hires_request as gallery_hires

    source = make_request(control_models["sd1"])
    first = run(engine, source)
    again = run(engine, gallery_hires(source, first.images[0].size, strength=0.4, entry_id=7))
    assert again.images[0].size == (128, 128)
    assert again.metadata[0]["extras"]["variation_of"]["kind"] == "hires"


def test_hires_with_an_image_prompt_in_both_passes(engine, control_models, ip_models, references):
    from engine.api_control import ImagePrompt

    picture = ImagePrompt(
        image=str(references / "warm.png"), weight=0.8, model=str(ip_models["ip_sd1"])
    )
    model = control_models["sd1"]
    plain = run(engine, hires_request(model))
    prompted = run(engine, hires_request(model, image_prompts=[picture]))
    off = run(engine, hires_request(model, image_prompts=[picture.replace(weight=0.0)]))
    assert prompted.images[0].size == (128, 128)
    assert np.abs(pixels(prompted) - pixels(plain)).mean() > 1.0
    assert np.array_equal(pixels(off), pixels(plain))
