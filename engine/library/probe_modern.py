"""Identify SD3 / SD3.5 and FLUX files from their tensors (and GGUF files from their header).

Layouts seen in the wild, all recognised by key names, never by file names:

- original (Stability / Black Forest Labs) keys: SD3 `joint_blocks.N.{x_block,context_block}`,
  FLUX `double_blocks.N.img_attn` and `single_blocks.N`; with a `model.diffusion_model.` prefix
  in all-in-one files (ComfyUI layout, text encoders under `text_encoders.*`, VAE under
  `first_stage_model.`) or bare in transformer-only files (and in city96's GGUF files);
- diffusers keys (`transformer_blocks.N.attn.add_q_proj`, `single_transformer_blocks.N`).

Variant rules:
- SD3: 24 joint blocks is "medium", with a second attention in the image blocks (`attn2`,
  MMDiT-X) "3.5-medium"; 38 blocks "large". SD3.5 large-turbo has the same tensors as large:
  only metadata (`modelspec.architecture`/`modelspec.title` naming turbo) can tell it.
- FLUX.1: a guidance embedder (`guidance_in` / `guidance_embedder`) means the guidance-distilled
  "dev" family (dev, Krea, Kontext); none means "schnell" (timestep-distilled, few steps). The
  image input width over the output width says the variant: 1x plain (64/64), 6x "fill"
  (384: latents + masked image + mask), 2x "control" (FLUX.1 Canny dev / Depth dev: latents
  and the control image's latents). Canny and Depth have the same tensors: metadata naming one
  (`modelspec.title`, `.architecture`, `.description`) makes it "control-canny" /
  "control-depth", else "control" (the job then trusts the unit's preprocessor).
- FLUX.2 (modulation shared by all blocks: `single_stream_modulation`): a guidance embedder is
  "dev" (Mistral Small 3 text states, 15360 wide); none is "klein" (Qwen3 text states: 7680 for
  4B, 12288 for 9B). klein's 4-step release and its undistilled "base" have the same tensors:
  metadata naming "base" tells them apart, else the distilled release is assumed.
- quantisation: GGUF tensor types (Q4_K, Q8_0, ...), or fp8 safetensors (F8_E4M3 / F8_E5M2).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from engine.library.fp8 import is_scaled, scale_target
from engine.library.probe import ProbeResult, Shapes, broken, unknown

ALL_IN_ONE = "model.diffusion_model."
_DUAL_ATTENTION = r"(?:joint_blocks|transformer_blocks)\.(\d+)\.(?:x_block\.)?attn2\."
SD3_DEPTHS = {24: "medium", 38: "large"}
#: FLUX transformer input width over its output width (packed latents): what else it takes in
FLUX_INPUT_RATIOS = {1: "", 6: "fill", 2: "control"}
#: quantisation names for float types a transformer file may hold
FLOAT_NAMES = {"F8_E4M3": "fp8", "F8_E5M2": "fp8-e5m2", "BF16": "bf16", "F16": "fp16", "F32": ""}


def is_sd3(keys) -> bool:
    keys = [_strip(k) for k in keys]
    if is_flux(keys):
        return False
    original = any(
        k.startswith("joint_blocks.") and (".x_block." in k or ".context_block." in k) for k in keys
    )
    diffusers = "pos_embed.proj.weight" in keys and any(
        k.startswith("transformer_blocks.") and ".norm1_context." in k for k in keys
    )
    return original or diffusers


def is_flux(keys) -> bool:
    keys = [_strip(k) for k in keys]
    original = any(k.startswith("double_blocks.") and ".img_attn." in k for k in keys)
    diffusers = "x_embedder.weight" in keys and any(
        k.startswith("single_transformer_blocks.") for k in keys
    )
    return original or diffusers


def is_flux2(keys) -> bool:
    return any(_strip(k).startswith("single_stream_modulation.") for k in keys)


def _strip(key: str) -> str:
    return key[len(ALL_IN_ONE) :] if key.startswith(ALL_IN_ONE) else key


def classify_modern(shapes: Shapes, metadata: dict, dtypes: dict | None = None) -> ProbeResult:
    """The probe result for an SD3 or FLUX state dict (call only when is_sd3/is_flux says so)."""
    keys = list(shapes)
    prefix = ALL_IN_ONE if any(k.startswith(ALL_IN_ONE) for k in keys) else ""
    inner = {k[len(prefix) :]: s for k, s in shapes.items() if k.startswith(prefix)}
    if is_flux2(keys):
        base, variant, details = _flux2_variant(inner, metadata)
    elif is_flux(keys):
        base, variant, details = _flux_variant(inner, metadata)
    else:
        base, variant, details = _sd3_variant(inner, metadata)
    details["key_layout"] = "diffusers" if _diffusers_keys(inner) else "original"
    details["contents"] = _contents(keys, base)
    quant = _float_quant(dtypes or {}, prefix)
    if quant == "fp8" and is_scaled(inner):
        quant = "fp8-scaled"  # ComfyUI's: the scales are applied on load (engine.library.fp8)
    if quant:
        details["quant"] = quant
    variants = [v for v in (variant, quant) if v]
    return ProbeResult(
        kind="checkpoint",
        base=base,
        variant=",".join(variants),
        layout="single_file",
        details=details,
    )


def _diffusers_keys(inner: Shapes) -> bool:
    return any(k.startswith(("transformer_blocks.", "single_transformer_blocks.")) for k in inner)


def _block_count(inner: Shapes, pattern: str) -> int:
    numbers = {int(m.group(1)) for k in inner if (m := re.match(pattern, k))}
    return max(numbers) + 1 if numbers else 0


def _sd3_variant(inner: Shapes, metadata: dict) -> tuple[str, str, dict]:
    depth = _block_count(inner, r"(?:joint_blocks|transformer_blocks)\.(\d+)\.")
    dual = sorted(
        {
            int(m.group(1))
            for k in inner
            if (
                m := re.match(
                    r"(?:joint_blocks|transformer_blocks)\.(\d+)\.(?:x_block\.)?attn2\.", k
                )
            )
        }
    )
    mmdit_x = bool(dual)
    variant = SD3_DEPTHS.get(depth, f"{depth} blocks")
    if variant == "medium" and mmdit_x:
        variant = "3.5-medium"
    declared = " ".join(
        metadata.get(k, "") for k in ("modelspec.architecture", "modelspec.title")
    ).lower()
    if variant == "large" and "turbo" in declared:
        variant = "large-turbo"
    return "sd3", variant, {"depth": depth, "mmdit_x": mmdit_x, "dual_attention_layers": dual}


def _flux_variant(inner: Shapes, metadata: dict) -> tuple[str, str, dict]:
    double = _block_count(inner, r"(?:double_blocks|transformer_blocks)\.(\d+)\.")
    single = _block_count(inner, r"(?:single_blocks|single_transformer_blocks)\.(\d+)\.")
    guidance = any(
        k.startswith(("guidance_in.", "time_text_embed.guidance_embedder")) for k in inner
    )
    image_in = inner.get("img_in.weight") or inner.get("x_embedder.weight") or (0, 0)
    image_out = inner.get("final_layer.linear.weight") or inner.get("proj_out.weight") or (0, 0)
    width = image_in[1] if len(image_in) == 2 else 0
    out_width = image_out[0] if len(image_out) == 2 else 0
    kind = flux_input_kind(width, out_width)
    variant = kind or ("dev" if guidance else "schnell")
    if variant == "control":
        variant = control_kind(metadata)
    details = {"double_blocks": double, "single_blocks": single, "guidance_embeds": guidance}
    details.update(image_in_channels=width, image_out_channels=out_width)
    return "flux", variant, details


#: metadata fields a FLUX.1 control file may name its kind in (never the file name)
CONTROL_METADATA = ("modelspec.title", "modelspec.architecture", "modelspec.description")


def control_kind(metadata: dict) -> str:
    """'control-canny' or 'control-depth' when the metadata names exactly one, else 'control'."""
    declared = " ".join(str(metadata.get(k, "")) for k in CONTROL_METADATA).lower()
    named = [kind for kind in ("canny", "depth") if kind in declared]
    return f"control-{named[0]}" if len(named) == 1 else "control"


def _flux2_variant(inner: Shapes, metadata: dict) -> tuple[str, str, dict]:
    double = _block_count(inner, r"(?:double_blocks|transformer_blocks)\.(\d+)\.")
    single = _block_count(inner, r"(?:single_blocks|single_transformer_blocks)\.(\d+)\.")
    guidance = any(
        k.startswith(("guidance_in.", "time_guidance_embed.guidance_embedder")) for k in inner
    )
    text_in = inner.get("txt_in.weight") or inner.get("context_embedder.weight") or (0, 0)
    declared = " ".join(
        str(metadata.get(k, "")) for k in ("modelspec.architecture", "modelspec.title")
    ).lower()
    variant = "dev" if guidance else "klein-base" if "base" in declared else "klein"
    details = {
        "double_blocks": double,
        "single_blocks": single,
        "guidance_embeds": guidance,
        "text_width": text_in[1] if len(text_in) == 2 else 0,
    }
    return "flux2", variant, details


def flux_input_kind(in_width: int, out_width: int) -> str:
    """'' (latents only), 'fill' (latents, masked image and an 8x8-packed mask: 6x) or
    'control' (latents and a control image: 2x), from the image input and output widths."""
    if out_width <= 0 or in_width % out_width:
        return f"{in_width} input channels"
    return FLUX_INPUT_RATIOS.get(in_width // out_width, f"{in_width} input channels")


def _contents(keys: list[str], base: str) -> str:
    """'all-in-one' (transformer, VAE and text encoders) or 'transformer-only'."""
    has_vae = any(k.startswith(("first_stage_model.", "vae.")) for k in keys)
    has_text = any(k.startswith(("text_encoders.", "cond_stage_model.")) for k in keys)
    return "all-in-one" if has_vae and has_text else "transformer-only"


def _float_quant(dtypes: dict[str, str], prefix: str) -> str:
    """'fp8' when the transformer's weight matrices are stored in a float8 type."""
    counts = Counter(
        dtype
        for key, dtype in dtypes.items()
        if key.startswith(prefix) and key.endswith("weight") and not scale_target(key)
    )
    if not counts:
        return ""
    dtype = counts.most_common(1)[0][0]
    name = FLOAT_NAMES.get(dtype, "")
    return name if name.startswith("fp8") else ""


# ----------------------------------------------------------------------------- GGUF
def probe_gguf(path: Path) -> ProbeResult:
    """A GGUF file's model from its tensor names and shapes; the quant type from its tensors."""
    try:
        from gguf import GGMLQuantizationType, GGUFReader
    except ImportError:
        return unknown("a GGUF file; reading it needs the 'gguf' package (pip install gguf)")
    try:
        reader = GGUFReader(str(path))
    except (ValueError, OSError, IndexError, KeyError) as exc:
        return broken(f"the GGUF file cannot be read ({exc})")
    # GGUF stores dimensions innermost first; torch's order is the reverse
    shapes = {t.name: tuple(int(d) for d in reversed(list(t.shape))) for t in reader.tensors}
    if not shapes:
        return unknown("the GGUF file holds no tensors")
    types = Counter(
        GGMLQuantizationType(t.tensor_type).name
        for t in reader.tensors
        if len(t.shape) >= 2 and t.name.endswith("weight")
    )
    if not (is_sd3(shapes) or is_flux(shapes)):
        return unknown(
            "a GGUF file that is not an SD3 or FLUX transformer (language models and other "
            "GGUF files are not image models Easel runs)"
        )
    result = classify_modern(shapes, {})
    quant = _gguf_quant(types)
    details = {**result.details, "quant": quant, "format": "gguf"}
    variant = ",".join(v for v in (result.variant, quant) if v)
    if not _gguf_quant_readable(types):
        unreadable = sorted(set(types) - set(readable_gguf_types()) - {"F32", "F16"})
        return ProbeResult(
            kind="checkpoint",
            base=result.base,
            variant=variant,
            layout="single_file",
            status="unsupported",
            reason=f"the installed diffusers cannot read {', '.join(unreadable)} GGUF tensors "
            "(update diffusers, or pick a Q8_0, Q6_K, Q5_K or Q4_K file)",
            details=details,
        )
    return ProbeResult(
        kind="checkpoint",
        base=result.base,
        variant=variant,
        layout="single_file",
        status=result.status,
        reason=result.reason,
        details=details,
    )


def _gguf_quant(types: Counter) -> str:
    quantised = Counter({k: v for k, v in types.items() if k not in {"F32", "F16", "BF16"}})
    if quantised:
        return quantised.most_common(1)[0][0]
    return types.most_common(1)[0][0] if types else ""


def readable_gguf_types() -> list[str]:
    """GGUF tensor types the installed diffusers dequantises (plus plain floats)."""
    try:
        from diffusers.quantizers.gguf.utils import SUPPORTED_GGUF_QUANT_TYPES
    except ImportError:
        return []
    return [t.name for t in SUPPORTED_GGUF_QUANT_TYPES]


def _gguf_quant_readable(types: Counter) -> bool:
    readable = set(readable_gguf_types()) | {"F32", "F16"}
    return set(types) <= readable
