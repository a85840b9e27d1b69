"""Tiny randomly initialised ControlNets, CLIP image encoders and IP-Adapter weights for tests.

A ControlNet is built with `ControlNetModel.from_unet` from a tiny pipeline's own UNet (as real
ControlNets start from their base UNet), its zero convolutions randomised so it visibly steers,
and saved as a diffusers folder and as one `.safetensors` file (diffusers key layout).
"""

from __future__ import annotations

from pathlib import Path

import torch


def _unet(pipeline_folder: Path):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(str(Path(pipeline_folder) / "unet"))


def build_controlnet(pipeline_folder: str | Path, out_dir: str | Path, *, seed: int = 3) -> dict:
    """{"folder": <diffusers folder>, "file": <single .safetensors>} for the pipeline's UNet."""
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    controlnet = ControlNetModel.from_unet(_unet(Path(pipeline_folder)))
    with torch.no_grad():
        for name, param in controlnet.named_parameters():
            # zero-initialised in training; random here so the unit changes the picture
            if "controlnet_" in name or "conv_out" in name:
                param.normal_(std=0.3)
    out_dir = Path(out_dir)
    folder = out_dir / f"controlnet-{seed}"
    controlnet.save_pretrained(str(folder))
    single = out_dir / f"controlnet-{seed}.safetensors"
    state = {k: v.contiguous() for k, v in controlnet.state_dict().items()}
    save_file(state, str(single))
    return {"folder": folder, "file": single}
