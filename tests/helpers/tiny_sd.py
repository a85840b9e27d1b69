"""Tiny randomly initialised Stable Diffusion pipelines for tests and benchmarks.

Same architectures as the real models (UNet2DConditionModel, AutoencoderKL with an 8x
downsampling VAE, CLIP text encoders, the real CLIP BPE tokenizers from resources/), only
narrow and shallow, so a 64x64 image takes milliseconds per step. They are saved with
`save_pretrained` and loaded back through the engine's own loading code, as users' models are.
"""

from __future__ import annotations

from pathlib import Path

import torch

from engine.paths import resource

SD_SCHEDULER = {  # Stable Diffusion 1.5's published scheduler settings
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
}


def _tokenizer(name: str):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(resource("tokenizers", name)))


def _text_config(**extra):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=49408,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=3,
        max_position_embeddings=77,
        layer_norm_eps=1e-5,
        **extra,
    )


def _text_encoder(cls, **extra):
    encoder = cls(_text_config(**extra)).eval()
    # trained CLIP has non-zero norm biases (the embeddings' mean is not 0); so do these
    norm = getattr(encoder, "text_model", encoder).final_layer_norm
    torch.nn.init.normal_(norm.bias, std=0.2)
    return encoder


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[8, 8, 16, 16],
        layers_per_block=1,
        norm_num_groups=4,
        latent_channels=4,
        sample_size=64,
    )


def _sd_unet(in_channels: int = 4):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=8,
    )


def build_sd1(folder: str | Path, *, seed: int = 0, inpaint: bool = False) -> Path:
    """An SD 1.x-layout pipeline folder (9-channel inpaint UNet when `inpaint`)."""
    from diffusers import PNDMScheduler, StableDiffusionInpaintPipeline, StableDiffusionPipeline
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    cls = StableDiffusionInpaintPipeline if inpaint else StableDiffusionPipeline
    pipe = cls(
        unet=_sd_unet(9 if inpaint else 4),
        vae=_vae(),
        text_encoder=_text_encoder(CLIPTextModel),
        tokenizer=_tokenizer("clip"),
        scheduler=PNDMScheduler(**SD_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(folder))
    return Path(folder)


def build_sdxl(folder: str | Path, *, seed: int = 0) -> Path:
    """An SDXL-layout pipeline folder: two text encoders, pooled embeddings, time ids."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 6 time ids x 8 + pooled text (32)
        cross_attention_dim=64,  # both encoders' hidden states concatenated (32 + 32)
        norm_num_groups=8,
    )
    scheduler = EulerDiscreteScheduler(
        **{k: v for k, v in SD_SCHEDULER.items() if k in ("beta_start", "beta_end")},
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    pipe = StableDiffusionXLPipeline(
        unet=unet,
        vae=_vae(),
        text_encoder=_text_encoder(CLIPTextModel),
        text_encoder_2=_text_encoder(CLIPTextModelWithProjection, projection_dim=32),
        tokenizer=_tokenizer("clip"),
        tokenizer_2=_tokenizer("clip-g"),
        scheduler=scheduler,
    )
    pipe.save_pretrained(str(folder))
    return Path(folder)


def build_lora(pipeline_folder: str | Path, out_file: str | Path, *, seed: int = 1) -> Path:
    """A LoRA (rank 4, UNet attention and text encoder) for the pipeline in `pipeline_folder`.

    peft initialises LoRA's B matrices to zero (no effect); they are randomised here so the LoRA
    visibly changes the output.
    """
    from diffusers import DiffusionPipeline
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    pipe = DiffusionPipeline.from_pretrained(str(pipeline_folder), local_files_only=True)
    torch.manual_seed(seed)
    unet_config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    text_config = LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "k_proj", "v_proj"])
    pipe.unet.add_adapter(unet_config)
    # peft directly: transformers' own add_adapter wants a newer peft than PyPI has here
    inject_adapter_in_model(text_config, pipe.text_encoder)
    for module in (pipe.unet, pipe.text_encoder):
        for name, param in module.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.5)
    out_file = Path(out_file)
    type(pipe).save_lora_weights(
        save_directory=str(out_file.parent),
        unet_lora_layers=get_peft_model_state_dict(pipe.unet),
        text_encoder_lora_layers=get_peft_model_state_dict(pipe.text_encoder),
        weight_name=out_file.name,
    )
    return out_file
