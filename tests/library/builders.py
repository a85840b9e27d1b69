"""Build model files for library tests: stripped checkpoints (real key names and shapes in a
valid safetensors header, with the tensor bytes left out, as InvokeAI's probe tests do) and
small real tensors where a rule reads values."""

from __future__ import annotations

import json
import struct
from pathlib import Path

U = "model.diffusion_model."


def write_stripped(path, shapes: dict, *, metadata: dict | None = None, values: dict | None = None):
    """A safetensors file whose header lists `shapes`; tensors named in `values` get real F32
    data, the others point at no bytes (enough for anything that reads headers only)."""
    values = values or {}
    header, blobs, offset = {}, [], 0
    for name, shape in shapes.items():
        if name in values:
            raw = struct.pack(f"<{len(values[name])}f", *values[name])
            header[name] = {
                "dtype": "F32",
                "shape": list(shape),
                "data_offsets": [offset, offset + len(raw)],
            }
            blobs.append(raw)
            offset += len(raw)
        else:
            header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset]}
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    return Path(path)


def sd1_shapes(in_channels: int = 4) -> dict:
    return {
        U + "input_blocks.0.0.weight": (320, in_channels, 3, 3),
        U + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
        "first_stage_model.decoder.conv_in.weight": (512, 4, 3, 3),
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (49408, 768),
    }


def sd2_shapes(in_channels: int = 4) -> dict:
    return {
        U + "input_blocks.0.0.weight": (320, in_channels, 3, 3),
        U + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024),
        U + "output_blocks.11.1.transformer_blocks.0.norm1.bias": (320,),
        "first_stage_model.decoder.conv_in.weight": (512, 4, 3, 3),
        "cond_stage_model.model.token_embedding.weight": (49408, 1024),
    }


def sdxl_shapes(in_channels: int = 4) -> dict:
    return {
        U + "input_blocks.0.0.weight": (320, in_channels, 3, 3),
        U + "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": (640, 2048),
        U + "label_emb.0.0.weight": (1280, 2816),
        "first_stage_model.decoder.conv_in.weight": (512, 4, 3, 3),
        "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": (
            49408,
            768,
        ),
        "conditioner.embedders.1.model.token_embedding.weight": (49408, 1280),
    }


def refiner_shapes() -> dict:
    return {
        U + "input_blocks.0.0.weight": (384, 4, 3, 3),
        U + "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": (768, 1280),
        U + "label_emb.0.0.weight": (1536, 2560),
        "first_stage_model.decoder.conv_in.weight": (512, 4, 3, 3),
        "conditioner.embedders.0.model.token_embedding.weight": (49408, 1280),
    }


def tiny_esrgan(scale: int = 2, seed: int = 0):
    """A tiny randomly initialised ESRGAN (RRDB) through spandrel's own architecture code."""
    import importlib

    import torch

    from engine.library.upscalers import spandrel_registry

    spandrel_registry()  # makes spandrel's modules importable without torchvision
    rrdb = importlib.import_module("spandrel.architectures.ESRGAN.__arch.RRDB")
    torch.manual_seed(seed)
    return rrdb.RRDBNet(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=scale).eval()
