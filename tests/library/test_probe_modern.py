"""SD3 / SD3.5 and FLUX files and folders: family, variant, layout and quantisation from their
tensors (stripped headers with the real key names and shapes), never from file names."""

from __future__ import annotations

import json

from engine.library.probe import probe_path
from tests.library.builders import write_stripped

U = "model.diffusion_model."


def sd3_shapes(depth: int, *, prefix: str = "", mmdit_x: bool = False, hidden=1536) -> dict:
    shapes = {prefix + "x_embedder.proj.weight": (hidden, 16, 2, 2)}
    for i in range(depth):
        block = f"{prefix}joint_blocks.{i}."
        shapes[block + "x_block.attn.qkv.weight"] = (3 * hidden, hidden)
        shapes[block + "context_block.attn.qkv.weight"] = (3 * hidden, hidden)
        if mmdit_x and i < 13:
            shapes[block + "x_block.attn2.qkv.weight"] = (3 * hidden, hidden)
    return shapes


def flux_shapes(*, prefix="", guidance=True, image_in=64, double=19, single=38) -> dict:
    shapes = {
        prefix + "img_in.weight": (3072, image_in),
        prefix + "final_layer.linear.weight": (64, 3072),
    }
    if guidance:
        shapes[prefix + "guidance_in.in_layer.weight"] = (3072, 256)
    for i in range(double):
        shapes[f"{prefix}double_blocks.{i}.img_attn.qkv.weight"] = (9216, 3072)
    for i in range(single):
        shapes[f"{prefix}single_blocks.{i}.linear1.weight"] = (21504, 3072)
    return shapes


def _probe(tmp_path, name, shapes, **kw):
    return probe_path(write_stripped(tmp_path / name, shapes, **kw))


def test_sd3_variants_from_depth_and_mmdit_x_blocks(tmp_path):
    medium = _probe(tmp_path, "a.safetensors", sd3_shapes(24, prefix=U))
    assert (medium.base, medium.variant, medium.status) == ("sd3", "medium", "ok")
    assert medium.details["contents"] == "transformer-only"  # no text encoders or VAE here
    assert medium.details["key_layout"] == "original"
    v35 = _probe(tmp_path, "b.safetensors", sd3_shapes(24, mmdit_x=True))
    assert v35.variant == "3.5-medium"
    assert v35.details["dual_attention_layers"] == list(range(13))
    large = _probe(tmp_path, "c.safetensors", sd3_shapes(38, hidden=2432))
    assert large.variant == "large"
    turbo = _probe(
        tmp_path,
        "d.safetensors",
        sd3_shapes(38, hidden=2432),
        metadata={"modelspec.architecture": "stable-diffusion-v3.5-large-turbo"},
    )
    assert turbo.variant == "large-turbo"


def test_sd3_all_in_one_file(tmp_path):
    shapes = {
        **sd3_shapes(24, prefix=U),
        "first_stage_model.decoder.conv_in.weight": (512, 16, 3, 3),
        "text_encoders.clip_l.transformer.text_model.final_layer_norm.weight": (768,),
        "text_encoders.t5xxl.transformer.shared.weight": (32128, 4096),
    }
    result = _probe(tmp_path, "sd3.safetensors", shapes)
    assert (result.variant, result.details["contents"]) == ("medium", "all-in-one")
    assert result.describe() == "SD3 checkpoint (medium)"


def test_flux_dev_schnell_fill_and_control(tmp_path):
    dev = _probe(tmp_path, "dev.safetensors", flux_shapes())
    assert (dev.base, dev.variant, dev.status) == ("flux", "dev", "ok")
    assert (dev.details["double_blocks"], dev.details["single_blocks"]) == (19, 38)
    schnell = _probe(tmp_path, "s.safetensors", flux_shapes(prefix=U, guidance=False))
    assert schnell.variant == "schnell"
    fill = _probe(tmp_path, "f.safetensors", flux_shapes(image_in=384))
    assert (fill.variant, fill.status) == ("fill", "ok")
    control = _probe(tmp_path, "c.safetensors", flux_shapes(image_in=128))
    # FLUX.1 Canny dev and Depth dev hold the same tensors: "control" unless metadata says
    assert (control.variant, control.status) == ("control", "ok")
    assert (control.details["image_in_channels"], control.details["image_out_channels"]) == (
        128,
        64,
    )
    assert control.describe() == "FLUX checkpoint (control)"


def test_flux_control_kind_from_metadata_never_from_the_file_name(tmp_path):
    def probe(name, metadata):
        return _probe(tmp_path, name, flux_shapes(image_in=128), metadata=metadata)

    canny = probe("x.safetensors", {"modelspec.title": "FLUX.1 Canny [dev]"})
    assert (canny.variant, canny.status) == ("control-canny", "ok")
    depth = probe("y.safetensors", {"modelspec.description": "Depth-conditioned FLUX.1 dev"})
    assert depth.variant == "control-depth"
    # both named (or neither): the kind stays open; the file name says nothing
    both = probe("z.safetensors", {"modelspec.title": "canny and depth"})
    assert both.variant == "control"
    assert probe("flux1-depth-dev.safetensors", {}).variant == "control"
    # a plain dev file's metadata naming canny does not make it a control model
    plain = _probe(tmp_path, "p.safetensors", flux_shapes(), metadata={"modelspec.title": "canny"})
    assert plain.variant == "dev"


def test_flux_in_diffusers_key_layout_and_fp8(tmp_path):
    shapes = {
        "x_embedder.weight": (3072, 64),
        "proj_out.weight": (64, 3072),
        "time_text_embed.guidance_embedder.linear_1.weight": (3072, 256),
        "transformer_blocks.0.attn.add_q_proj.weight": (3072, 3072),
        "single_transformer_blocks.0.attn.to_q.weight": (3072, 3072),
    }
    result = _probe(tmp_path, "d.safetensors", shapes)
    assert (result.variant, result.details["key_layout"]) == ("dev", "diffusers")
    # fp8: the dtype in the header (write_stripped writes F16; rewrite the dtype)
    path = tmp_path / "fp8.safetensors"
    write_stripped(path, shapes)
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + length])
    for entry in header.values():
        entry["dtype"] = "F8_E4M3"
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text)
    fp8 = probe_path(path)
    assert (fp8.variant, fp8.details["quant"]) == ("dev,fp8", "fp8")


def test_flux_loras_are_run(tmp_path):
    lora = {"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": (4, 3072)}
    result = _probe(tmp_path, "l.safetensors", lora)
    assert (result.kind, result.base, result.status) == ("lora", "flux", "ok")


def test_gguf_files_name_family_variant_and_quant(tmp_path):
    import gguf
    import numpy as np

    def write(name, tensors, qtype=gguf.GGMLQuantizationType.Q8_0):
        writer = gguf.GGUFWriter(str(tmp_path / name), arch="flux")
        for key, shape in tensors.items():
            array = np.zeros(shape, np.float32)
            if len(shape) == 2:
                writer.add_tensor(key, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
            else:
                writer.add_tensor(key, array)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return probe_path(tmp_path / name)

    small = {
        "img_in.weight": (64, 64),
        "final_layer.linear.weight": (64, 64),
        "double_blocks.0.img_attn.qkv.weight": (96, 32),
        "single_blocks.0.linear1.weight": (96, 32),
        "double_blocks.0.img_attn.norm.query_norm.scale": (16,),
    }
    schnell = write("s.gguf", small, gguf.GGMLQuantizationType.Q4_0)
    assert (schnell.base, schnell.variant, schnell.status) == ("flux", "schnell,Q4_0", "ok")
    assert schnell.details["format"] == "gguf"
    # shapes come back in torch order (GGUF stores them innermost first)
    dev = write("d.gguf", {**small, "guidance_in.in_layer.weight": (64, 256)})
    assert dev.variant == "dev,Q8_0"
    assert dev.describe() == "FLUX checkpoint (dev,Q8_0)"


def test_gguf_quant_types_diffusers_cannot_read_are_named():
    from collections import Counter

    from engine.library.probe_modern import _gguf_quant_readable, readable_gguf_types

    assert "Q4_K" in readable_gguf_types() and "Q8_0" in readable_gguf_types()
    assert _gguf_quant_readable(Counter({"Q8_0": 3, "F32": 2}))
    assert not _gguf_quant_readable(Counter({"IQ1_S": 3}))


def test_a_language_model_gguf_is_not_an_image_model(tmp_path):
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(tmp_path / "llm.gguf"), arch="llama")
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((32, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    result = probe_path(tmp_path / "llm.gguf")
    assert result.status == "unknown" and "not an SD3 or FLUX transformer" in result.reason
