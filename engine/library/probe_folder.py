"""Identify model folders: diffusers layout (`model_index.json`) and Easel native (`config.json`).

A diffusers folder says its pipeline class; the UNet's config says the base (cross-attention
width), the variant (9 input channels = inpaint) and the scheduler config the prediction type.
Only the small JSON files are read.
"""

from __future__ import annotations

from pathlib import Path

from engine.library.probe import CONTEXT_TO_BASE, ProbeResult, read_json_object

SD_PIPELINES = {
    "StableDiffusionPipeline",
    "StableDiffusionImg2ImgPipeline",
    "StableDiffusionInpaintPipeline",
    "StableDiffusionXLPipeline",
    "StableDiffusionXLImg2ImgPipeline",
    "StableDiffusionXLInpaintPipeline",
}
#: pipelines of the flow-matching transformer families (engine/sd/modern_families.py)
MODERN_PIPELINES = {
    "StableDiffusion3Pipeline": "sd3",
    "StableDiffusion3Img2ImgPipeline": "sd3",
    "StableDiffusion3InpaintPipeline": "sd3",
    "FluxPipeline": "flux",
    "FluxImg2ImgPipeline": "flux",
    "FluxInpaintPipeline": "flux",
    "FluxFillPipeline": "flux",
    "FluxKontextPipeline": "flux",
    "FluxControlPipeline": "flux",
    "FluxControlImg2ImgPipeline": "flux",
    "FluxControlInpaintPipeline": "flux",
    "Flux2Pipeline": "flux2",
    "Flux2KleinPipeline": "flux2",
    "Flux2KleinInpaintPipeline": "flux2",
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
        from engine.library.probe_control import probe_config_folder

        found = probe_config_folder(path, config)
        if found is not None:
            return found
    return ProbeResult(
        kind="unknown",
        status="unknown",
        reason="the folder has neither a diffusers model_index.json nor an Easel config.json",
    )


def _broken_folder(reason: str) -> ProbeResult:
    return ProbeResult(kind="broken", layout="diffusers", status="broken", reason=reason)


def _probe_diffusers(path: Path, index: dict) -> ProbeResult:
    class_name = str(index.get("_class_name", ""))
    if class_name in MODERN_PIPELINES:
        return _probe_modern_folder(path, class_name)
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


def _probe_modern_folder(path: Path, class_name: str) -> ProbeResult:
    """SD3 / FLUX folders: the transformer's config says the variant (see probe_modern)."""
    from engine.library.probe_modern import SD3_DEPTHS, flux_input_kind

    base = MODERN_PIPELINES[class_name]
    transformer = read_json_object(path / "transformer" / "config.json")
    if transformer is None:
        return _broken_folder("its transformer/config.json is missing or not valid JSON")
    details: dict = {"pipeline": class_name, "contents": "diffusers folder"}
    if base == "sd3":
        depth = int(transformer.get("num_layers") or 0)
        variant = SD3_DEPTHS.get(depth, f"{depth} blocks")
        if variant == "medium" and transformer.get("dual_attention_layers"):
            variant = "3.5-medium"
        details["has_t5"] = _has_component(path, "text_encoder_3")
    elif base == "flux2":
        variant = _flux2_folder_variant(path, class_name)
    else:
        in_width = int(transformer.get("in_channels") or 0)
        out_width = int(transformer.get("out_channels") or in_width)
        variant = flux_input_kind(in_width, out_width) or (
            "dev" if transformer.get("guidance_embeds") else "schnell"
        )
        if class_name == "FluxKontextPipeline":
            variant = "kontext"
        # Canny and Depth dev folders hold the same configs: "control", the job trusts the
        # unit's preprocessor for the kind
    status, reason = "ok", ""
    if variant.endswith("input channels"):
        status, reason = "unsupported", f"FLUX {variant} transformers are not run by Easel yet"
    return ProbeResult(
        kind="checkpoint",
        base=base,
        variant=variant,
        layout="diffusers",
        status=status,
        reason=reason,
        details=details,
    )


def _flux2_folder_variant(path: Path, class_name: str) -> str:
    """FLUX.2 dev (Mistral text encoder) or klein (Qwen3); klein's distilled release and its
    undistilled base differ only in the pipeline's `is_distilled` setting."""
    if class_name == "Flux2Pipeline":
        return "dev"
    index = read_json_object(path / "model_index.json") or {}
    return "klein" if index.get("is_distilled") else "klein-base"


def _has_component(path: Path, name: str) -> bool:
    index = read_json_object(path / "model_index.json") or {}
    entry = index.get(name)
    return isinstance(entry, list) and entry[0] is not None and (path / name).is_dir()
