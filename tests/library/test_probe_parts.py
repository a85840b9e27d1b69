"""Separate text encoder files (ComfyUI's models/text_encoders) probed from their tensor names."""

from __future__ import annotations

from engine.library.probe import probe_path
from tests.library.builders import write_stripped


def _clip(prefix: str, width: int, layers: int, *, projection: bool = True) -> dict:
    shapes = {
        prefix + "text_model.embeddings.token_embedding.weight": (49408, width),
        prefix + "text_model.embeddings.position_embedding.weight": (77, width),
        prefix + "text_model.final_layer_norm.weight": (width,),
    }
    for i in range(layers):
        shapes[prefix + f"text_model.encoder.layers.{i}.self_attn.q_proj.weight"] = (width, width)
    if projection:
        shapes[prefix + "text_projection.weight"] = (width, width)
    return shapes


def _open_clip(width: int, layers: int) -> dict:
    shapes = {"token_embedding.weight": (49408, width), "positional_embedding": (77, width)}
    for i in range(layers):
        shapes[f"transformer.resblocks.{i}.attn.in_proj_weight"] = (3 * width, width)
    shapes["text_projection"] = (width, width)
    return shapes


def _t5(width: int = 4096, layers: int = 24) -> dict:
    shapes = {"shared.weight": (32128, width), "encoder.final_layer_norm.weight": (width,)}
    for i in range(layers):
        shapes[f"encoder.block.{i}.layer.0.SelfAttention.q.weight"] = (4096, width)
        shapes[f"encoder.block.{i}.layer.1.DenseReluDense.wi_0.weight"] = (10240, width)
    return shapes


def test_clip_l_clip_g_and_t5_files(tmp_path):
    cases = {
        "clip_l": (_clip("", 768, 12, projection=False), "clip-l", "clip"),
        "clip_g": (_clip("", 1280, 32), "clip-g", "clip"),
        "sd3_clip_l": (_clip("text_encoders.clip_l.transformer.", 768, 12), "clip-l", "clip"),
        "openclip_g": (_open_clip(1280, 32), "clip-g", "open_clip"),
        "t5xxl": (_t5(), "t5-xxl", "transformers"),
    }
    for name, (shapes, variant, layout) in cases.items():
        result = probe_path(write_stripped(tmp_path / f"{name}.safetensors", shapes))
        assert (result.kind, result.variant, result.status) == ("text_encoder", variant, "ok"), name
        assert result.details["key_layout"] == layout, name
    g = probe_path(tmp_path / "clip_g.safetensors")
    assert (g.details["width"], g.details["layers"], g.details["projection"]) == (1280, 32, True)
    t5 = probe_path(tmp_path / "t5xxl.safetensors")
    assert (t5.details["feed_forward"], t5.details["gated"]) == (10240, True)
    assert t5.describe() == "text_encoder (t5-xxl)"


def test_a_scaled_fp8_t5_is_named_and_supported(tmp_path):
    scale = "encoder.block.0.layer.0.SelfAttention.q.scale_weight"
    shapes = {**_t5(), "scaled_fp8": (0,), scale: ()}
    path = write_stripped(tmp_path / "t5xxl_fp8_scaled.safetensors", shapes, dtype="F8_E4M3")
    result = probe_path(path)
    want = ("text_encoder", "ok", "t5-xxl,fp8-scaled")
    assert (result.kind, result.status, result.variant) == want
    assert result.details["quant"] == "fp8-scaled"


def test_a_whole_sd1_checkpoint_is_not_a_text_encoder(tmp_path):
    from tests.library.builders import sd1_shapes

    shapes = {**sd1_shapes(), **_clip("cond_stage_model.transformer.", 768, 12)}
    result = probe_path(write_stripped(tmp_path / "sd1.safetensors", shapes))
    assert (result.kind, result.base) == ("checkpoint", "sd1")
