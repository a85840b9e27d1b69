"""Identify ControlNets, IP-Adapters and CLIP image encoders from their tensors or config files.

ControlNet single files come in two layouts: diffusers' (`controlnet_cond_embedding.*`,
`controlnet_down_blocks.*`) and the original one (`input_hint_block.*`, `zero_convs.*`, often
under `control_model.`). The base is read the way it is for UNets: an SDXL ControlNet has the
text-time add-embedding (`add_embedding.linear_1` / `label_emb`), and the cross-attention key
projection's input width says SD 1.x (768) or SD 2.x (1024). A width no published family has
(a custom or test model) leaves the base empty; the job then compares the width with the UNet's.

IP-Adapter weights (`image_proj.*` + `ip_adapter.N.to_k_ip.*`) carry the UNet's cross-attention
width in `to_k_ip`, and the image encoder's width in `image_proj`.
"""

from __future__ import annotations

from pathlib import Path

from engine.library.probe import CONTEXT_TO_BASE, ProbeResult, Shapes

_DIFFUSERS_CONTROL = "controlnet_cond_embedding.conv_in.weight"
_ORIGINAL_CONTROL = "input_hint_block.0.weight"
_ORIGINAL_PREFIX = "control_model."
CONTROL_CLASSES = {"ControlNetModel"}
VISION_CLASSES = {"CLIPVisionModelWithProjection", "CLIPVisionModel"}
DEPTH_CLASSES = {"DepthAnythingForDepthEstimation", "DPTForDepthEstimation"}


def is_controlnet(keys: list[str]) -> bool:
    return any(
        key in (_DIFFUSERS_CONTROL, _ORIGINAL_CONTROL, _ORIGINAL_PREFIX + _ORIGINAL_CONTROL)
        for key in keys
    )


def is_ip_adapter(keys: list[str]) -> bool:
    return any(k.startswith("image_proj.") for k in keys) and any(
        k.startswith("ip_adapter.") and "to_k_ip" in k for k in keys
    )


def _cross_width(shapes: Shapes, needle: str = "attn2.to_k.weight") -> int:
    for key, shape in shapes.items():
        if key.endswith(needle) and len(shape) == 2:
            return int(shape[1])
    return 0


def classify_controlnet(shapes: Shapes) -> ProbeResult:
    layout = "diffusers" if _DIFFUSERS_CONTROL in shapes else "original"
    width = _cross_width(shapes)
    sdxl = any(
        k.endswith(("add_embedding.linear_1.weight", "label_emb.0.0.weight")) for k in shapes
    )
    return _control_result(width, sdxl, {"weights": layout}, layout="single_file")


def _control_result(width: int, sdxl: bool, details: dict, layout: str) -> ProbeResult:
    base = "sdxl" if sdxl else CONTEXT_TO_BASE.get(width, "")
    if base not in {"sd1", "sd2", "sdxl"}:
        base = ""
    return ProbeResult(
        kind="controlnet",
        base=base,
        layout=layout,
        details={**details, "context_dim": width, "sdxl": sdxl},
    )


def classify_ip_adapter(shapes: Shapes) -> ProbeResult:
    width = _cross_width(shapes, "to_k_ip.weight")
    base = {768: "sd1", 1024: "sd2", 2048: "sdxl"}.get(width, "")
    plus = any(k.startswith("image_proj.latents") or ".perceiver" in k for k in shapes)
    proj = shapes.get("image_proj.proj.weight") or shapes.get("image_proj.proj_in.weight")
    image_width = int(proj[-1]) if proj else 0
    return ProbeResult(
        kind="ip_adapter",
        base=base,
        layout="single_file",
        variant="plus" if plus else "",
        details={"context_dim": width, "image_embed_dim": image_width},
    )


def probe_config_folder(path: Path, config: dict) -> ProbeResult | None:
    """A diffusers model folder with only `config.json` (a ControlNet, a CLIP image encoder),
    or None when the config is neither."""
    name = str(config.get("_class_name") or "")
    architectures = config.get("architectures") or []
    if name == "AutoencoderTiny":
        latent_channels = int(config.get("latent_channels") or 4)
        details = {"latent_channels": latent_channels, "part": "autoencoder"}
        if latent_channels != 4:
            return ProbeResult(
                kind="taesd",
                status="unsupported",
                layout="diffusers",
                reason=f"a tiny autoencoder for {latent_channels}-channel latents (SD3/FLUX)",
                details=details,
            )
        return ProbeResult(kind="taesd", base="", layout="diffusers", details=details)
    if name in CONTROL_CLASSES:
        sdxl = config.get("addition_embed_type") == "text_time"
        width = int(config.get("cross_attention_dim") or 0)
        return _control_result(width, sdxl, {"weights": "diffusers"}, layout="diffusers")
    if any(a in DEPTH_CLASSES for a in architectures):
        return ProbeResult(
            kind="depth", base="", layout="diffusers", details={"architecture": architectures[0]}
        )
    if any(a in VISION_CLASSES for a in architectures) or config.get("model_type") in {
        "clip_vision_model"
    }:
        width = int(config.get("projection_dim") or 0)
        return ProbeResult(
            kind="image_encoder",
            base="clip",
            layout="diffusers",
            details={"projection_dim": width, "hidden_size": config.get("hidden_size")},
        )
    return None
