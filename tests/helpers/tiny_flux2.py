"""A tiny randomly initialised FLUX.2 [klein] pipeline, shaped as diffusers' own tests shape it.

`Flux2Transformer2DModel` (double and single stream blocks with shared modulation), a Qwen3
causal language model as the text encoder (deep enough for the hidden-state layers 9, 18 and 27
the real pipeline reads, 16 wide), the FLUX.2 VAE shrunk to one block and the flow matching Euler
scheduler. The tokenizer is a byte-level BPE trained here on a few captions, wrapped as
`Qwen2TokenizerFast` with a chat template of the Qwen3 form (the pipeline wraps each prompt in a
user turn): no Qwen vocabulary can be had offline, and a real klein folder brings its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

_CORPUS = [
    "a photo of a cat",
    "a red apple on a table",
    "an astronaut riding a horse",
    "a painting of a lighthouse at night",
    "blurry, low quality",
    "<|im_start|>user <|im_end|> assistant",
]
#: what the real Qwen3 template renders for one user turn with thinking switched off
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}"
    "<think>\n\n</think>\n\n{% endif %}{% endif %}"
)
TEXT_WIDTH = 16
TEXT_LAYERS = 28  # the pipeline stacks hidden states 9, 18 and 27


def qwen_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(_CORPUS, trainer=trainer)
    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=raw,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _text_encoder(vocab_size: int):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=TEXT_WIDTH,
        intermediate_size=16,
        num_hidden_layers=TEXT_LAYERS,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=512,
    )
    return Qwen3ForCausalLM(config).eval()


def flux2_transformer(num_layers: int = 1, num_single_layers: int = 1, *, guidance: bool = False):
    from diffusers import Flux2Transformer2DModel

    return Flux2Transformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=num_layers,
        num_single_layers=num_single_layers,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=TEXT_WIDTH * 3,
        timestep_guidance_channels=256,
        axes_dims_rope=[4, 4, 4, 4],
        guidance_embeds=guidance,
    )


def _vae():
    from diffusers import AutoencoderKLFlux2

    return AutoencoderKLFlux2(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        block_out_channels=(4,),
        layers_per_block=1,
        latent_channels=1,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def build_klein(folder: str | Path, *, seed: int = 0, distilled: bool = True) -> Path:
    """A FLUX.2 [klein] diffusers folder (distilled: the 4-step release; else 'base')."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline

    torch.manual_seed(seed)
    tokenizer = qwen_tokenizer()
    pipe = Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True),
        vae=_vae(),
        text_encoder=_text_encoder(len(tokenizer)),
        tokenizer=tokenizer,
        transformer=flux2_transformer(),
        is_distilled=distilled,
    )
    folder = Path(folder)
    pipe.save_pretrained(folder, safe_serialization=True)
    _check_index(folder)
    return folder


def _check_index(folder: Path) -> None:
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "Flux2KleinPipeline", index


#: the Mistral chat layout FLUX.2 dev's prompt goes through: a system turn, then the user's;
#: content arrives as a list of typed parts (the processor's multimodal form)
MISTRAL_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['content'] is string %}{% set text = message['content'] %}"
    "{% else %}{% set text = message['content'] | map(attribute='text') | join('') %}{% endif %}"
    "{% if message['role'] == 'system' %}[SYSTEM_PROMPT]{{ text }}[/SYSTEM_PROMPT]"
    "{% else %}[INST]{{ text }}[/INST]{% endif %}{% endfor %}"
)
MISTRAL_LAYERS = 30  # FLUX.2 dev stacks hidden states 10, 20 and 30


def mistral_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<s>", "</s>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"]
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(_CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    tokenizer.chat_template = MISTRAL_TEMPLATE
    return tokenizer


def _mistral_encoder(vocab_size: int):
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    config = Mistral3Config(
        text_config={
            "model_type": "mistral",
            "vocab_size": vocab_size,
            "hidden_size": TEXT_WIDTH,
            "intermediate_size": 16,
            "num_hidden_layers": MISTRAL_LAYERS,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "head_dim": 8,
            "max_position_embeddings": 1024,
        },
        vision_config={
            "model_type": "pixtral",
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "head_dim": 8,
            "image_size": 32,
            "patch_size": 8,
        },
        spatial_merge_size=1,
    )
    return Mistral3ForConditionalGeneration(config).eval()


def build_flux2_dev(folder: str | Path, *, seed: int = 0) -> Path:
    """A FLUX.2 [dev] diffusers folder: Mistral 3 text encoder, guidance embedder."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2Pipeline

    torch.manual_seed(seed)
    tokenizer = mistral_tokenizer()
    pipe = Flux2Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True),
        vae=_vae(),
        text_encoder=_mistral_encoder(len(tokenizer)),
        tokenizer=tokenizer,
        transformer=flux2_transformer(guidance=True),
    )
    folder = Path(folder)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder
