"""Tiny randomly initialised SD3 and FLUX pipelines, the same configs diffusers' own tests use.

SD3: an `SD3Transformer2DModel` (MMDiT) with two CLIP text encoders with projection and a T5
encoder; FLUX: a `FluxTransformer2DModel` (double and single stream blocks) with one CLIP text
encoder and a T5 encoder. Both use 16-latent-channel VAEs (as the real ones) shrunk to two
narrow blocks, and the flow matching Euler scheduler. The tokenizers are the real ones bundled in
resources/tokenizers (CLIP-L, CLIP-G and T5 v1.1), so the tiny T5 encoders have T5's 32,100-id
vocabulary; `t5_tokenizer()` (a Unigram model trained here on a few words) is for benchmarks that
want a narrow embedding.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.helpers.tiny_sd import _tokenizer

T5_WIDTH = 64  # SD3 pads the concatenated CLIP states (32 + 32) to the T5 width
_CORPUS = [
    "a photo of a cat",
    "a red apple on a table",
    "an astronaut riding a horse",
    "a painting of a lighthouse at night",
    "blurry, low quality",
]


def t5_tokenizer():
    """A T5TokenizerFast over a Unigram vocabulary trained on `_CORPUS` (pad 0, eos 1, unk 2)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5TokenizerFast

    raw = Tokenizer(models.Unigram())
    raw.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=60, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    raw.train_from_iterator(_CORPUS, trainer=trainer)
    return T5TokenizerFast(
        tokenizer_object=raw, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", extra_ids=0
    )


def bundled_t5_tokenizer():
    """The T5 v1.1 tokenizer from resources/tokenizers/t5 (what real SD3 and FLUX models use)."""
    from transformers import T5TokenizerFast

    from engine.paths import resource

    return T5TokenizerFast.from_pretrained(str(resource("tokenizers", "t5")), local_files_only=True)


def _t5_encoder(vocab_size: int, width: int):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=vocab_size,
        d_model=width,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    return T5EncoderModel(config).eval()


def _clip(cls, **extra):
    from transformers import CLIPTextConfig

    settings = dict(
        vocab_size=49408,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=77,
        layer_norm_eps=1e-5,
        hidden_act="gelu",
    )
    settings.update(extra)
    return cls(CLIPTextConfig(**settings)).eval()


def _vae(latent_channels: int):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        block_out_channels=(8, 8),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )


def sd3_transformer(
    num_layers: int = 1, *, width_heads: int = 4, mmdit_x: bool = False, pooled: int = 64
):
    from diffusers import SD3Transformer2DModel

    extra = {"dual_attention_layers": tuple(range(num_layers))} if mmdit_x else {}
    return SD3Transformer2DModel(
        sample_size=32,
        patch_size=2,
        in_channels=16,
        num_layers=num_layers,
        attention_head_dim=8,
        num_attention_heads=width_heads,
        caption_projection_dim=32,
        joint_attention_dim=T5_WIDTH,
        pooled_projection_dim=pooled,  # CLIP-L's projection + CLIP-G's
        out_channels=16,
        pos_embed_max_size=32,
        **extra,
    )


def flux_transformer(
    num_layers: int = 1, num_single_layers: int = 1, *, guidance: bool = True, in_channels=64
):
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=in_channels,
        out_channels=64,
        num_layers=num_layers,
        num_single_layers=num_single_layers,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=guidance,
        axes_dims_rope=(4, 4, 8),
    )


def build_sd3(
    folder: str | Path,
    *,
    seed: int = 0,
    mmdit_x: bool = False,
    clip_g_layers: int = 2,
    clip_l_width: int = 32,
) -> Path:
    """An SD3-layout pipeline folder (SD3.5-style MMDiT-X blocks when `mmdit_x`);
    `clip_g_layers` other than 2 or `clip_l_width` other than 32 make the two CLIP encoders'
    tensors differ, as real CLIP-L (768 wide, 12 layers) and CLIP-G (1280, 32) do, so separate
    text encoder files, and diffusers' all-in-one conversion, can tell them apart."""
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(seed)
    t5_tok = bundled_t5_tokenizer()
    pipe = StableDiffusion3Pipeline(
        transformer=sd3_transformer(mmdit_x=mmdit_x, pooled=clip_l_width + 32),
        vae=_vae(16),
        # CLIP-L's projection is square, as the real one (diffusers' all-in-one loader
        # makes it the identity of that size)
        text_encoder=_clip(
            CLIPTextModelWithProjection, projection_dim=clip_l_width, hidden_size=clip_l_width
        ),
        text_encoder_2=_clip(
            CLIPTextModelWithProjection, projection_dim=32, num_hidden_layers=clip_g_layers
        ),
        text_encoder_3=_t5_encoder(len(t5_tok), T5_WIDTH),
        tokenizer=_tokenizer("clip"),
        tokenizer_2=_tokenizer("clip-g"),
        tokenizer_3=t5_tok,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
    )
    pipe.save_pretrained(str(folder))
    return Path(folder)


def build_flux(folder: str | Path, *, seed: int = 0, guidance: bool = True) -> Path:
    """A FLUX.1-layout pipeline folder: dev-like (guidance embedder) or schnell-like (none)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    t5_tok = bundled_t5_tokenizer()
    scheduler = (
        FlowMatchEulerDiscreteScheduler(
            shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15
        )
        if guidance
        else FlowMatchEulerDiscreteScheduler(shift=1.0)
    )
    pipe = FluxPipeline(
        transformer=flux_transformer(guidance=guidance),
        vae=_vae(16),
        text_encoder=_clip(CLIPTextModel, projection_dim=32),
        text_encoder_2=_t5_encoder(len(t5_tok), 32),
        tokenizer=_tokenizer("clip"),
        tokenizer_2=t5_tok,
        scheduler=scheduler,
    )
    pipe.save_pretrained(str(folder))
    return Path(folder)


def build_flux_control(folder: str | Path, *, seed: int = 0) -> Path:
    """A FLUX.1 Canny/Depth-layout folder (FluxControlPipeline): the tiny FLUX dev with its
    image input twice the latent width (latents and the control image's latents)."""
    from diffusers import FluxControlPipeline

    build_flux(folder, seed=seed)
    torch.manual_seed(seed + 1)
    parts = FluxControlPipeline.from_pretrained(str(folder), local_files_only=True).components
    parts["transformer"] = flux_transformer(in_channels=128)
    FluxControlPipeline(**parts).save_pretrained(str(folder))
    return Path(folder)


def save_transformer_file(folder: str | Path, out_file: str | Path, *, fp8: bool = False) -> Path:
    """The pipeline's transformer alone as one safetensors file (diffusers key layout);
    `fp8` stores its weight matrices as float8_e4m3fn, as fp8 checkpoints do."""
    from safetensors.torch import load_file, save_file

    weights = {}
    for part in sorted((Path(folder) / "transformer").glob("*.safetensors")):
        weights.update(load_file(str(part)))
    if fp8:
        weights = {
            k: v.to(torch.float8_e4m3fn) if v.ndim == 2 and k.endswith("weight") else v
            for k, v in weights.items()
        }
    save_file(weights, str(out_file))
    return Path(out_file)


def save_gguf_transformer(folder: str | Path, out_file: str | Path, *, quant: str = "Q8_0"):
    """The pipeline's transformer as a GGUF file written with the gguf package: matrices whose
    rows split into quant blocks are quantised to `quant`, the rest stay F32 (as city96's
    conversions keep norms and biases)."""
    import gguf
    from safetensors.torch import load_file

    qtype = gguf.GGMLQuantizationType[quant]
    block, _ = gguf.GGML_QUANT_SIZES[qtype]
    index = json.loads((Path(folder) / "model_index.json").read_text())
    arch = "flux" if index["_class_name"].startswith("Flux") else "sd3"
    writer = gguf.GGUFWriter(str(out_file), arch=arch)
    weights = {}
    for part in sorted((Path(folder) / "transformer").glob("*.safetensors")):
        weights.update(load_file(str(part)))
    for name, tensor in weights.items():
        array = tensor.float().numpy()
        if array.ndim == 2 and array.shape[-1] % block == 0:
            writer.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(out_file)


def build_transformer_lora(folder: str | Path, out_file: str | Path, *, seed: int = 1) -> Path:
    """A rank-4 LoRA on the attention projections of the pipeline's transformer (SD3, FLUX.1 or
    FLUX.2), saved with the pipeline class's own `save_lora_weights` (diffusers key layout);
    the B matrices are randomised so the LoRA visibly changes the output."""
    from diffusers import DiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = DiffusionPipeline.from_pretrained(str(folder), local_files_only=True)
    torch.manual_seed(seed)
    targets = ["to_q", "to_k", "to_v"]
    if any(name.endswith("to_qkv_mlp_proj") for name, _ in pipe.transformer.named_modules()):
        targets.append("to_qkv_mlp_proj")  # FLUX.2's fused single-block projection
    pipe.transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=targets))
    for name, param in pipe.transformer.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=2.0)
    out_file = Path(out_file)
    type(pipe).save_lora_weights(
        save_directory=str(out_file.parent),
        transformer_lora_layers=get_peft_model_state_dict(pipe.transformer),
        weight_name=out_file.name,
    )
    return out_file
