"""The bundled diffusers-layout configs build the published architectures (parameter counts)."""

from __future__ import annotations

import json

import pytest

from engine.paths import resource

# Parameter counts of the published models (millions), e.g. the SDXL refiner UNet is 4.52 GB
# in fp16 = 2,259.5 M. Building on the meta device costs no memory.
EXPECTED_MILLIONS = {
    "sd1": {"unet": 859.5, "vae": 83.7, "text_encoder": 123.1},
    "sd1-inpaint": {"unet": 859.5, "vae": 83.7, "text_encoder": 123.1},
    "sd2-512": {"unet": 865.9, "vae": 83.7, "text_encoder": 340.4},
    "sd2-768-v": {"unet": 865.9, "vae": 83.7, "text_encoder": 340.4},
    "sdxl-base": {"unet": 2567.5, "vae": 83.7, "text_encoder": 123.1, "text_encoder_2": 694.7},
    "sdxl-inpaint": {"unet": 2567.5, "vae": 83.7, "text_encoder": 123.1, "text_encoder_2": 694.7},
    "sdxl-refiner": {"unet": 2259.5, "vae": 83.7, "text_encoder_2": 694.7},
}


def _count_millions(folder, component):
    from accelerate import init_empty_weights

    with init_empty_weights():
        if component == "unet":
            from diffusers import UNet2DConditionModel

            model = UNet2DConditionModel.from_config(
                UNet2DConditionModel.load_config(folder / component)
            )
        elif component == "vae":
            from diffusers import AutoencoderKL

            model = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / component))
        else:
            import transformers

            config = json.loads((folder / component / "config.json").read_text())
            model_class = getattr(transformers, config["architectures"][0])
            model = model_class(transformers.CLIPTextConfig.from_pretrained(folder / component))
    return sum(p.numel() for p in model.parameters()) / 1e6


@pytest.mark.parametrize("name", sorted(EXPECTED_MILLIONS))
def test_bundled_config_matches_published_sizes(name):
    folder = resource("configs", name)
    for component, millions in EXPECTED_MILLIONS[name].items():
        assert _count_millions(folder, component) == pytest.approx(millions, abs=0.2), component
