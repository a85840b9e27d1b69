"""Identify model folders: diffusers layout (`model_index.json`) and Easel native (`config.json`).

A diffusers folder says its pipeline class; the UNet's config says the base (cross-attention
width), the variant (9 input channels = inpaint) and the scheduler config the prediction type.
Only the small JSON files are read.
"""

from __future__ import annotations

from pathlib import Path

from engine.library.probe import BASE_NAMES, CONTEXT_TO_BASE, ProbeResult, read_json_object

SD_PIPELINES = {
    "StableDiffusionPipeline",
    "StableDiffusionImg2ImgPipeline",
    "StableDiffusionInpaintPipeline",
    "StableDiffusionXLPipeline",
    "StableDiffusionXLImg2ImgPipeline",
    "StableDiffusionXLInpaintPipeline",
}
UNSUPPORTED_PIPELINES = {
    "StableDiffusion3Pipeline": "sd3",
    "FluxPipeline": "flux",
}


def probe_folder(path: Path) -> ProbeResult:
    index_file = path / "model_index.json"
    if index_file.is_file():
        index = read_json_object(index_file)
        if index is None:
            return _broken_folder("its model_index.json is not valid JSON")
        return _probe_diffusers(path, index)
    config_file = path / "config.json"
    if config_file.is_file():
        config = read_json_object(config_file)
        if config is None:
            return _broken_folder("its config.json is not valid JSON")
        family = config.get("family")
        if isinstance(family, str) and family:
            return ProbeResult(kind="native", base=family, layout="native", details=config)
    return ProbeResult(
        kind="unknown",
        status="unknown",
        reason="the folder has neither a diffusers model_index.json nor an Easel config.json",
    )


def _broken_folder(reason: str) -> ProbeResult:
    return ProbeResult(kind="broken", layout="diffusers", status="broken", reason=reason)


def _probe_diffusers(path: Path, index: dict) -> ProbeResult:
    class_name = str(index.get("_class_name", ""))
    if class_name in UNSUPPORTED_PIPELINES:
        base = UNSUPPORTED_PIPELINES[class_name]
        return ProbeResult(
            kind="checkpoint",
            base=base,
            layout="diffusers",
            status="unsupported",
            reason=f"{BASE_NAMES[base]} models are not supported yet",
        )
    if class_name not in SD_PIPELINES:
        return ProbeResult(
            kind="checkpoint",
            layout="diffusers",
            status="unsupported",
            reason=f"Easel does not run '{class_name or 'unnamed'}' pipelines yet",
        )
    unet = read_json_object(path / "unet" / "config.json")
    if unet is None:
        return _broken_folder("its unet/config.json is missing or not valid JSON")
    base = CONTEXT_TO_BASE.get(int(unet.get("cross_attention_dim") or 0), "")
    if not base:
        return ProbeResult(
            kind="checkpoint",
            layout="diffusers",
            status="unsupported",
            reason=f"its UNet's cross-attention width {unet.get('cross_attention_dim')} "
            "matches no model family Easel knows",
        )
    variants = []
    if int(unet.get("in_channels") or 4) == 9:
        variants.append("inpaint")
    scheduler = read_json_object(path / "scheduler" / "scheduler_config.json") or {}
    prediction = scheduler.get("prediction_type")
    if prediction == "v_prediction" or (base == "sd2" and prediction == "epsilon"):
        variants.append(prediction)
    return ProbeResult(
        kind="checkpoint",
        base=base,
        variant=",".join(variants),
        layout="diffusers",
        details={"pipeline": class_name},
    )
