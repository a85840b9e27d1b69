"""Few-step models and LoRAs (LCM, Turbo, Lightning, Hyper): recognised from their config,
tensors or metadata, never their names; their settings fill what the user left to the model."""

from __future__ import annotations

import json
import shutil

import pytest

from engine.events import Result
from engine.sd.fewstep import from_metadata
from tests.sd.test_generate import request, run


@pytest.fixture(scope="module")
def few_step_models(tiny_models, tmp_path_factory):
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("few-step")
    lcm = shutil.copytree(tiny_models["sd1"], root / "some-model")
    config = json.loads((lcm / "unet" / "config.json").read_text())
    config["time_cond_proj_dim"] = 32  # LCM-distilled UNets embed the guidance scale
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    UNet2DConditionModel(**config).save_pretrained(str(lcm / "unet"))
    turbo = shutil.copytree(tiny_models["sd1"], root / "another-model")
    scheduler = turbo / "scheduler" / "scheduler_config.json"
    settings = json.loads(scheduler.read_text())
    settings.update(_class_name="EulerAncestralDiscreteScheduler", timestep_spacing="trailing")
    scheduler.write_text(json.dumps(settings))
    index = json.loads((turbo / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", "EulerAncestralDiscreteScheduler"]
    (turbo / "model_index.json").write_text(json.dumps(index))
    lora = root / "plain-name.safetensors"
    metadata = {"modelspec.title": "SD1.5 Hyper-SD 2-steps LoRA"}
    save_file(load_file(str(tiny_models["lora"])), str(lora), metadata=metadata)
    return {"lcm": lcm, "turbo": turbo, "hyper_lora": lora}


def test_metadata_signals():
    assert from_metadata({"modelspec.title": "SDXL Lightning 8step"}) == ("lightning", 8)
    assert from_metadata({"ss_output_name": "lcm-lora-sdv1-5"}) == ("lcm", 0)
    assert from_metadata({"modelspec.architecture": "stable-diffusion-xl-v1-base/turbo"}) == (
        "turbo",
        0,
    )
    assert from_metadata({"modelspec.title": "hyperrealism"}) is None  # not Hyper-SD
    assert from_metadata({}) is None


def test_lcm_unet_gets_lcm_settings_when_left_to_the_model(sd_engine, few_step_models):
    left = run(sd_engine, request(few_step_models["lcm"], extras={"model_defaults": True}))
    assert isinstance(left, Result), left
    used = left.metadata[0]
    assert (used["sampler"], used["steps"], used["guidance_scale"]) == ("LCM", 4, 1.0)
    assert left.info["few_step"] == "lcm" and "guidance embedding" in left.info["few_step_source"]
    # the user's own settings stand
    mine = run(sd_engine, request(few_step_models["lcm"], steps=3, sampler="Euler"))
    assert (mine.metadata[0]["steps"], mine.metadata[0]["sampler"]) == (3, "Euler")


def test_turbo_scheduler_and_hyper_lora_metadata(sd_engine, few_step_models, tiny_models):
    from engine.api import LoraRef

    turbo = run(sd_engine, request(few_step_models["turbo"], extras={"model_defaults": True}))
    assert (turbo.metadata[0]["steps"], turbo.metadata[0]["guidance_scale"]) == (1, 0.0)
    assert turbo.info["few_step"] == "turbo"
    lora = (LoraRef(str(few_step_models["hyper_lora"])),)
    hyper = run(
        sd_engine,
        request(tiny_models["sd1"], loras=lora, extras={"model_defaults": ["steps", "sampler"]}),
    )
    assert (hyper.metadata[0]["steps"], hyper.metadata[0]["sampler"]) == (2, "DDIM")
    assert hyper.info["few_step"] == "hyper"
    plain = run(sd_engine, request(tiny_models["sd1"], extras={"model_defaults": True}))
    assert "few_step" not in plain.info and plain.metadata[0]["steps"] == 3
