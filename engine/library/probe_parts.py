"""Identify separate text encoder files (ComfyUI's `models/text_encoders`) from their tensors.

SD3 and FLUX users mostly hold a model as a transformer file plus `clip_l.safetensors`,
`clip_g.safetensors`, `t5xxl_fp16.safetensors` (or fp8) and a VAE. The text encoders come in
these key layouts, all recognised here by names and shapes, never by file names:

- Hugging Face transformers names (`text_model.encoder.layers.N...` for CLIP, with or without
  the `text_model.` level transformers 5 drops; `encoder.block.N.layer...` and `shared` for T5),
  bare or under the all-in-one prefixes (`text_encoders.clip_l.transformer.`, ...);
- OpenCLIP's original names for CLIP-G (`transformer.resblocks.N.attn.in_proj_weight`,
  `token_embedding`, `positional_embedding`, `text_projection`), which diffusers converts.

The variant is the width of the token embedding (768 CLIP-L, 1280 CLIP-G, 1024 OpenCLIP-H) or,
for T5, "t5-xxl" at 4096 wide and 24 blocks. Which slot of a pipeline a file fills is decided by
matching these details against the pipeline's config (engine.sd.modern_parts), so small test
models of any width work the same way.
"""

from __future__ import annotations

import re
from collections import Counter

from engine.library.fp8 import is_scaled, scale_target
from engine.library.probe import ProbeResult, Shapes

#: prefixes under which text encoders sit in all-in-one and LDM files, stripped before the rules
TEXT_PREFIXES = (
    "text_encoders.clip_l.transformer.",
    "text_encoders.clip_g.transformer.",
    "text_encoders.t5xxl.transformer.",
    "text_encoders.clip_g.",
    "cond_stage_model.transformer.",
    "conditioner.embedders.0.transformer.",
    "conditioner.embedders.1.model.",
    "cond_stage_model.model.",
)
#: transformers names of CLIP's token embedding (version 5 drops the `text_model.` level)
CLIP_EMBEDDINGS = (
    "text_model.embeddings.token_embedding.weight",
    "embeddings.token_embedding.weight",
)
CLIP_WIDTHS = {768: "clip-l", 1280: "clip-g", 1024: "clip-h"}
T5_XXL = (4096, 24)  # d_model, blocks
FLOAT8_NAMES = {"F8_E4M3": "fp8", "F8_E5M2": "fp8-e5m2"}


def strip_prefix(keys) -> tuple[str, dict[str, str]]:
    """(prefix, {stripped key: original key}) for the first known prefix most keys carry."""
    keys = list(keys)
    counts = Counter(p for k in keys for p in TEXT_PREFIXES if k.startswith(p))
    prefix = counts.most_common(1)[0][0] if counts else ""
    return prefix, {k[len(prefix) :]: k for k in keys if k.startswith(prefix)}


def text_layout(keys) -> str:
    """'clip' (transformers names), 'open_clip', 't5' or '' for anything else."""
    _, names = strip_prefix(keys)
    if any(k.startswith("encoder.block.0.layer.0.SelfAttention.") for k in names):
        return "t5"
    if "token_embedding.weight" in names and any(
        k.startswith("transformer.resblocks.") for k in names
    ):
        return "open_clip"
    layers = any(".encoder.layers." in "." + k for k in names)
    if layers and any(k in names for k in CLIP_EMBEDDINGS):
        return "clip"
    return ""


def is_text_encoder(keys) -> bool:
    return bool(text_layout(keys))


def _count(names, pattern: str) -> int:
    numbers = {int(m.group(1)) for k in names if (m := re.match(pattern, k))}
    return max(numbers) + 1 if numbers else 0


def classify_text_encoder(shapes: Shapes, dtypes: dict | None = None) -> ProbeResult:
    """kind "text_encoder", variant clip-l / clip-g / clip-h / clip / t5-xxl / t5, with the
    details a slot is matched on (architecture, width, layers, projection)."""
    layout = text_layout(shapes)
    prefix, names = strip_prefix(shapes)
    inner = {k: shapes[v] for k, v in names.items()}
    if layout == "t5":
        details = _t5_details(inner)
        xxl = (details["width"], details["layers"]) == T5_XXL
        variant = "t5-xxl" if xxl else "t5"
    else:
        details = _clip_details(inner, layout)
        variant = CLIP_WIDTHS.get(details["width"], "clip")
    details.update(key_layout=layout if layout != "t5" else "transformers", prefix=prefix)
    quant = _weight_quant(dtypes or {}, shapes)
    if quant:
        details["quant"] = quant
    variant_text = ",".join(v for v in (variant, quant) if v)
    return ProbeResult(
        kind="text_encoder", variant=variant_text, layout="single_file", details=details
    )


def _t5_details(inner: Shapes) -> dict:
    embedding = inner.get("shared.weight") or inner.get("encoder.embed_tokens.weight") or (0, 0)
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in inner
    ff = inner.get(
        "encoder.block.0.layer.1.DenseReluDense.wi_0.weight"
        if gated
        else "encoder.block.0.layer.1.DenseReluDense.wi.weight"
    ) or (0, 0)
    return {
        "architecture": "t5",
        "width": embedding[1],
        "vocab": embedding[0],
        "layers": _count(inner, r"encoder\.block\.(\d+)\."),
        "feed_forward": ff[0],
        "gated": gated,
    }


def _clip_details(inner: Shapes, layout: str) -> dict:
    if layout == "open_clip":
        embedding = inner.get("token_embedding.weight", (0, 0))
        layers = _count(inner, r"transformer\.resblocks\.(\d+)\.")
        projection = "text_projection" in inner
    else:
        embedding = inner.get("text_model.embeddings.token_embedding.weight") or inner.get(
            "embeddings.token_embedding.weight", (0, 0)
        )
        layers = _count(inner, r"(?:text_model\.)?encoder\.layers\.(\d+)\.")
        projection = "text_projection.weight" in inner
    return {
        "architecture": "clip",
        "width": embedding[1],
        "vocab": embedding[0],
        "layers": layers,
        "projection": projection,
    }


def _weight_quant(dtypes: dict[str, str], keys) -> str:
    """'fp8' / 'fp8-e5m2' for float8 weights; 'fp8-scaled' for ComfyUI's scaled-fp8 files
    (their scales are applied on load, engine.library.fp8)."""
    counts = Counter(
        dtype for key, dtype in dtypes.items() if key.endswith("weight") and not scale_target(key)
    )
    dtype = counts.most_common(1)[0][0] if counts else ""
    name = FLOAT8_NAMES.get(dtype, "")
    return name + "-scaled" if name == "fp8" and is_scaled(keys) else name
