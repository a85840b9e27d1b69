"""Build model files for library tests: stripped checkpoints (real key names and shapes in a
valid safetensors header, with the tensor bytes left out, as InvokeAI's probe tests do) and
small real tensors where a rule reads values."""

from __future__ import annotations

import json
import struct
from pathlib import Path

U = "model.diffusion_model."


def write_stripped(
    path,
    shapes: dict,
    *,
    metadata: dict | None = None,
    values: dict | None = None,
    dtype: str = "F16",
):
    """A safetensors file whose header lists `shapes`; tensors named in `values` get real F32
    data, the others (of `dtype`) point at no bytes (enough for anything that reads headers)."""
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
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset]}
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


def _tiny_clip(hidden_act: str, *, with_projection: bool, width: int = 32):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=2,
        hidden_size=width,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=2,
        pad_token_id=1,
        vocab_size=49408,  # the real CLIP vocabulary, so the bundled tokenizer fits
        hidden_act=hidden_act,
        projection_dim=width,
    )
    model_class = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return model_class(config).eval()


def tiny_refiner_pipeline(seed: int = 0):
    """A tiny random SDXL refiner: one (bigG-like) text encoder, aesthetic-score conditioning."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLImg2ImgPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTokenizer

    from engine.paths import resource

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=16,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=88,  # 5 * 8 + pooled width 48, as 2560 in SDXL
        cross_attention_dim=48,
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        norm_num_groups=16,
        sample_size=64,
    )
    return StableDiffusionXLImg2ImgPipeline(
        vae=vae,
        text_encoder=None,
        text_encoder_2=_tiny_clip("gelu", with_projection=True, width=48),
        tokenizer=None,
        tokenizer_2=CLIPTokenizer.from_pretrained(resource("tokenizers", "clip-g")),
        unet=unet,
        scheduler=EulerDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
        ),
        requires_aesthetics_score=True,
    )


def tiny_sd_pipeline(*, xl: bool = False, seed: int = 0):
    """A tiny random SD 1.x (or SDXL) pipeline, as diffusers' own tests build them."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTokenizer

    from engine.paths import resource

    torch.manual_seed(seed)
    unet_kwargs = dict(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=16,
    )
    if xl:
        unet_kwargs.update(
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 2),
            projection_class_embeddings_input_dim=96,  # 6 * 8 + pooled width 48
            cross_attention_dim=80,  # 32 + 48: both encoders' widths, as 768 + 1280 in SDXL
        )
    else:
        unet_kwargs.update(cross_attention_dim=32, attention_head_dim=4)
    unet = UNet2DConditionModel(**unet_kwargs)
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=64,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
    )
    tokenizer = CLIPTokenizer.from_pretrained(resource("tokenizers", "clip"))
    if not xl:
        return StableDiffusionPipeline(
            unet=unet,
            vae=vae,
            scheduler=scheduler,
            text_encoder=_tiny_clip("quick_gelu", with_projection=False),
            tokenizer=tokenizer,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    return StableDiffusionXLPipeline(
        unet=unet,
        vae=vae,
        scheduler=scheduler,
        text_encoder=_tiny_clip("quick_gelu", with_projection=False),
        # The encoders' widths differ as in SDXL; diffusers tells them apart by width.
        text_encoder_2=_tiny_clip("gelu", with_projection=True, width=48),
        tokenizer=tokenizer,
        tokenizer_2=CLIPTokenizer.from_pretrained(resource("tokenizers", "clip-g")),
    )


def save_config_folder(pipe, folder):
    """A diffusers-layout folder with configs and tokenizers only (no weights), like the
    bundled resources/configs folders."""
    from pathlib import Path

    folder = Path(folder)
    pipe.save_config(folder)  # model_index.json
    for name, component in pipe.components.items():
        if component is None:
            continue
        if hasattr(component, "save_config"):
            component.save_config(folder / name)
        elif hasattr(component, "save_vocabulary"):
            component.save_pretrained(folder / name)
        else:
            component.config.save_pretrained(folder / name)
    return folder
