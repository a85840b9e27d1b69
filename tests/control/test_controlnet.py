"""ControlNet units through the real engine on tiny SD 1.x / SDXL pipelines and ControlNets
loaded from disk (diffusers folders and single files) by the library code users hit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.api_control import ControlUnit
from engine.events import Failed
from tests.control.conftest import make_request, pixels, run
from tests.helpers.pictures import assert_same_picture


def unit(pictures, model, **changes) -> ControlUnit:
    fields = dict(image=str(pictures / "drawing.png"), model=str(model), preprocessor="canny")
    fields.update(changes)
    return ControlUnit(**fields)


@pytest.mark.parametrize("layout", ["folder", "file"])
@pytest.mark.parametrize("base", ["sd1", "sdxl"])
def test_a_unit_changes_the_output_and_weight_zero_does_not(
    engine, control_models, pictures, base, layout
):
    controlnet = control_models[f"cn_{base}"][layout]
    plain = run(engine, make_request(control_models[base]))
    steered = run(engine, make_request(control_models[base], control=[unit(pictures, controlnet)]))
    off = run(
        engine, make_request(control_models[base], control=[unit(pictures, controlnet, weight=0)])
    )
    assert np.abs(pixels(steered) - pixels(plain)).mean() > 2.0
    assert np.array_equal(pixels(off), pixels(plain))
    assert steered.info["controlnets"] == [controlnet.stem if layout == "file" else controlnet.name]


def test_start_end_range_limits_the_steps_a_unit_steers(engine, control_models, pictures):
    model, cn = control_models["sd1"], control_models["cn_sd1"]["folder"]
    whole = run(engine, make_request(model, steps=4, control=[unit(pictures, cn)]))
    late = run(engine, make_request(model, steps=4, control=[unit(pictures, cn, start=0.5)]))
    early = run(engine, make_request(model, steps=4, control=[unit(pictures, cn, end=0.5)]))
    plain = run(engine, make_request(model, steps=4))
    for partial in (late, early):
        assert not np.array_equal(pixels(partial), pixels(whole))
        assert not np.array_equal(pixels(partial), pixels(plain))
    assert not np.array_equal(pixels(late), pixels(early))


def test_two_units_at_once(engine, control_models, pictures):
    model = control_models["sd1"]
    first = unit(pictures, control_models["cn_sd1"]["folder"])
    second = unit(pictures, control_models["cn_sd1_b"]["file"], preprocessor="softedge", weight=0.7)
    one = run(engine, make_request(model, control=[first]))
    both = run(engine, make_request(model, control=[first, second]))
    assert both.info["controlnets"] == ["controlnet-3", "controlnet-4"]
    assert np.abs(pixels(both) - pixels(one)).mean() > 1.0
    only_first = run(engine, make_request(model, control=[first, second.replace(weight=0.0)]))
    assert np.array_equal(pixels(only_first), pixels(one))


@pytest.mark.parametrize("base", ["sd1", "sdxl"])
def test_engine_equals_a_plain_diffusers_controlnet_call(engine, control_models, pictures, base):
    import diffusers
    from diffusers import ControlNetModel, EulerDiscreteScheduler
    from PIL import Image

    from engine.sd.preprocess import run_preprocessor

    cn_folder = control_models[f"cn_{base}"]["folder"]
    req = make_request(
        control_models[base],
        guidance_scale=5.0,
        control=[unit(pictures, cn_folder, weight=0.8, start=0.1, end=0.9)],
    )
    ours = run(engine, req)
    cls = (
        diffusers.StableDiffusionXLControlNetPipeline
        if base == "sdxl"
        else diffusers.StableDiffusionControlNetPipeline
    )
    pipe = cls.from_pretrained(
        str(control_models[base]),
        controlnet=ControlNetModel.from_pretrained(str(cn_folder), local_files_only=True),
        local_files_only=True,
    )
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    control_map = run_preprocessor("canny", Image.open(pictures / "drawing.png").convert("RGB"))
    theirs = pipe(
        prompt=req.prompt,
        negative_prompt=req.negative_prompt,
        image=control_map,
        num_inference_steps=3,
        guidance_scale=5.0,
        height=64,
        width=64,
        controlnet_conditioning_scale=0.8,
        control_guidance_start=0.1,
        control_guidance_end=0.9,
        generator=[torch.Generator("cpu").manual_seed(42)],
    ).images[0]
    assert_same_picture(pixels(ours), np.asarray(theirs).astype(np.int16))


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_units_work_in_img2img_and_inpaint(engine, control_models, pictures, mode):
    extra = {"mode": mode, "init_image": str(pictures / "init.png"), "strength": 0.7, "steps": 4}
    if mode == "inpaint":
        extra["mask_image"] = str(pictures / "mask-right.png")
    model = control_models["sd1"]
    plain = run(engine, make_request(model, **extra))
    cn = control_models["cn_sd1"]["file"]
    steered = run(engine, make_request(model, control=[unit(pictures, cn)], **extra))
    assert np.abs(pixels(steered) - pixels(plain)).mean() > 1.0


def test_an_inpaint_unet_takes_a_controlnet_in_txt2img(engine, control_models, pictures):
    model = control_models["inpaint"]
    cn = control_models["cn_sd1"]["folder"]
    plain = run(engine, make_request(model))
    steered = run(engine, make_request(model, control=[unit(pictures, cn)]))
    assert np.abs(pixels(steered) - pixels(plain)).mean() > 1.0


def test_a_wrongly_sized_control_image_is_resized_with_a_notice(engine, control_models, pictures):
    cn = control_models["cn_sd1"]["folder"]
    req = make_request(
        control_models["sd1"],
        control=[unit(pictures, cn, image=str(pictures / "drawing-96x80.png"))],
    )
    result = run(engine, req)
    assert any("96x80" in n and "64x64" in n for n in result.info["notices"])


@pytest.mark.parametrize(
    ("model", "controlnet", "message"),
    [
        ("sd1", "cn_sdxl", "this ControlNet is for SDXL; the model is SD 1.5"),
        ("sdxl", "cn_sd1", "the model is SDXL"),
    ],
)
def test_a_controlnet_for_another_base_is_refused_by_name(
    engine, control_models, pictures, model, controlnet, message
):
    for layout in ("folder", "file"):
        cn = control_models[controlnet][layout]
        final = engine.run(
            make_request(control_models[model], control=[unit(pictures, cn)]), timeout=300
        )
        assert isinstance(final, Failed) and message in final.message, final
    # the engine keeps serving
    run(engine, make_request(control_models[model]))


def test_a_model_that_is_not_a_controlnet_is_refused(engine, control_models, pictures):
    final = engine.run(
        make_request(control_models["sd1"], control=[unit(pictures, control_models["sd1"])]),
        timeout=300,
    )
    assert isinstance(final, Failed) and "not a ControlNet" in final.message
    missing = engine.run(
        make_request(control_models["sd1"], control=[unit(pictures, "/no/such/controlnet")]),
        timeout=300,
    )
    assert isinstance(missing, Failed) and "ControlNet model not found" in missing.message


def test_controlnets_are_cached(engine, control_models, pictures, services):
    cn = control_models["cn_sd1"]["folder"]
    run(engine, make_request(control_models["sd1"], control=[unit(pictures, cn)]))
    loads = services.cache.loads
    run(engine, make_request(control_models["sd1"], seed=7, control=[unit(pictures, cn)]))
    assert services.cache.loads == loads
    assert any(key.startswith(f"controlnet:{cn}") for key in services.cache.keys())


def test_an_original_layout_file_loads_and_steers_like_its_diffusers_folder(
    engine, control_models, pictures, tmp_path
):
    """lllyasviel's layout (`control_model.input_blocks...`), probed and loaded offline: the
    same pixels as the diffusers folder it was written from."""
    from engine.library.probe import probe_path
    from tests.helpers.tiny_control import save_original_layout

    folder = control_models["cn_sd1"]["folder"]
    original = save_original_layout(folder, tmp_path / "control_tiny_sd15_canny.safetensors")
    probe = probe_path(original)
    assert probe.kind == "controlnet" and probe.details.get("weights") != "diffusers"
    from_folder = run(engine, make_request(control_models["sd1"], control=[unit(pictures, folder)]))
    from_file = run(engine, make_request(control_models["sd1"], control=[unit(pictures, original)]))
    assert_same_picture(pixels(from_file), pixels(from_folder))
