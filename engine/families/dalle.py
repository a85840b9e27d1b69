"""The DALL-E family (Ramesh et al. 2021, "Zero-Shot Text-to-Image Generation"): a discrete image
tokenizer (engine.families.dalle_vq) and a decoder-only transformer that writes image tokens
after text, one at a time, in raster order.

- **Sequence**: [text prefix | image tokens]. The text is the prompt's MiniLM sentence embedding
  (engine.text.minilm, as the built-in LDM uses) projected to `prefix_tokens` vectors, so prompts
  no caption used ("kitty") still land near the ones they mean; DALL-E used BPE tokens, which a
  model trained on a few thousand captions cannot generalise from.
- **Transformer**: pre-LayerNorm blocks (GPT-2), causal self-attention, learned positions.
- **Classifier-free guidance** on the text (Ho & Salimans 2021; for autoregressive models Gafni
  et al. 2022, "Make-A-Scene"): training replaces the prefix by a learned null prefix with
  probability `cond_drop`; sampling mixes `uncond + scale * (cond - uncond)` logits, so scale 0
  is the unconditional model and 1 the plain conditional one.
- **Sampling**: temperature, then top-k (Fan et al. 2018) or top-p / nucleus (Holtzman et al.
  2020). Each image draws from its own generator (seed + i), so image i of a batch is the image
  a single run with that seed makes.
- **KV cache**: keys and values of earlier positions are kept, so each new token costs one
  position's work instead of a pass over the whole sequence (64 steps, not 64 * 65 / 2).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.families.dalle_vq import TokenizerConfig, VQTokenizer

SAMPLERS = ("top-k", "top-p")


@dataclass
class TransformerConfig:
    vocab_size: int = 512  # the tokenizer's codebook size
    image_tokens: int = 64  # grid side squared
    width: int = 192
    layers: int = 6
    heads: int = 6
    #: vectors the text embedding is projected to (the text part of the sequence)
    prefix_tokens: int = 2
    text_dim: int = 384  # MiniLM's embedding size; 0: an unconditional model
    dropout: float = 0.0

    @classmethod
    def from_dict(cls, data: dict) -> TransformerConfig:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def to_dict(self) -> dict:
        return asdict(self)


class KVCache:
    """Keys and values per layer, preallocated for the whole sequence: (B, heads, T, head_dim)."""

    def __init__(self, layers: int, batch: int, heads: int, length: int, head_dim: int, like):
        shape = (batch, heads, length, head_dim)
        self.keys = [like.new_zeros(shape) for _ in range(layers)]
        self.values = [like.new_zeros(shape) for _ in range(layers)]
        self.length = 0  # positions filled so far


class Attention(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.heads = config.heads
        self.qkv = nn.Linear(config.width, 3 * config.width)
        self.out = nn.Linear(config.width, config.width)
        self.dropout = config.dropout

    def forward(self, x, cache: KVCache | None = None, layer: int = 0):
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        drop = self.dropout if self.training else 0.0
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=drop)
        else:
            start = cache.length
            cache.keys[layer][:, :, start : start + t] = k
            cache.values[layer][:, :, start : start + t] = v
            keys = cache.keys[layer][:, :, : start + t]
            values = cache.values[layer][:, :, : start + t]
            # new positions see every cached one and the earlier new ones (causal within); one
            # new position (every sampling step after the prefix) sees all: no mask to build
            mask = None
            if t > 1:
                mask = torch.ones(t, start + t, dtype=torch.bool, device=x.device).tril(start)
            y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.width)
        self.attn = Attention(config)
        self.norm2 = nn.LayerNorm(config.width)
        self.mlp = nn.Sequential(
            nn.Linear(config.width, 4 * config.width),
            nn.GELU(),
            nn.Linear(4 * config.width, config.width),
        )

    def forward(self, x, cache=None, layer=0):
        x = x + self.attn(self.norm1(x), cache, layer)
        return x + self.mlp(self.norm2(x))


class ImageTransformer(nn.Module):
    """Decoder-only transformer: position P-1+j of [prefix (P) | image tokens] predicts token j."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        width, prefix = config.width, config.prefix_tokens
        self.token_embed = nn.Embedding(config.vocab_size, width)
        self.positions = nn.Parameter(torch.zeros(prefix + config.image_tokens, width))
        if config.text_dim:
            self.text_proj = nn.Linear(config.text_dim, prefix * width)
        # the unconditional prefix: what a dropped caption becomes, and what guidance mixes in
        self.null_prefix = nn.Parameter(torch.zeros(prefix, width))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, config.vocab_size, bias=False)
        self.apply(_init_weights)
        nn.init.normal_(self.positions, std=0.02)
        nn.init.normal_(self.null_prefix, std=0.02)

    @property
    def sequence_length(self) -> int:
        return self.config.prefix_tokens + self.config.image_tokens

    def prefix(self, text: torch.Tensor | None, batch: int) -> torch.Tensor:
        """(B, P, width) from text embeddings (B, text_dim), or the null prefix when None."""
        p, width = self.config.prefix_tokens, self.config.width
        if text is None or not self.config.text_dim:
            return self.null_prefix.expand(batch, p, width)
        return self.text_proj(text).view(-1, p, width)

    def forward(self, prefix: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits for every image position, (B, T, vocab), from the prefix and the first T-1
        tokens (teacher forcing; T = tokens.shape[1] + 1 when tokens are a partial image)."""
        x = torch.cat([prefix, self.token_embed(tokens)], dim=1)
        return self._run(x, start=0)[:, self.config.prefix_tokens - 1 :]

    def step(self, x_new: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Logits of the last new position, feeding only `x_new` (B, t, width) through the
        cache (the prefix on the first call, then one token embedding per call)."""
        logits = self._run(x_new, start=cache.length, cache=cache)[:, -1]
        cache.length += x_new.shape[1]
        return logits

    def _run(self, x, *, start: int, cache: KVCache | None = None):
        x = x + self.positions[start : start + x.shape[1]]
        for index, block in enumerate(self.blocks):
            x = block(x, cache, index)
        return self.head(self.norm(x))

    def new_cache(self, batch: int, like: torch.Tensor) -> KVCache:
        c = self.config
        return KVCache(c.layers, batch, c.heads, self.sequence_length, c.width // c.heads, like)


def _init_weights(module: nn.Module) -> None:
    # GPT-2's initialisation: small normal weights, zero biases
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


# --------------------------------------------------------------------------------------------
# Sampling


@dataclass
class SamplingOptions:
    sampler: str = "top-k"
    temperature: float = 1.0
    top_k: int = 64
    top_p: float = 0.9
    guidance_scale: float = 3.0


def filter_logits(logits: torch.Tensor, options: SamplingOptions) -> torch.Tensor:
    """Temperature, then top-k or nucleus filtering: the dropped entries become -inf."""
    logits = logits / max(options.temperature, 1e-5)
    if options.sampler == "top-k" and 0 < options.top_k < logits.shape[-1]:
        kth = logits.topk(options.top_k, dim=-1).values[..., -1:]
        return logits.masked_fill(logits < kth, float("-inf"))
    if options.sampler == "top-p" and options.top_p < 1.0:
        ordered, order = logits.sort(dim=-1, descending=True)
        cumulative = ordered.softmax(-1).cumsum(-1)
        # keep the smallest set whose mass reaches top_p (the first token always stays)
        drop_sorted = (cumulative - ordered.softmax(-1)) >= options.top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        return logits.masked_fill(drop, float("-inf"))
    return logits


def draw(logits: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """One token per row, each row from its own generator (CPU draws, same on every device)."""
    probs = logits.float().softmax(-1).cpu()
    picks = [torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(generators)]
    return torch.cat(picks).to(logits.device)


class GuidedLogits:
    """Next-token logits with classifier-free guidance: the conditional and unconditional
    sequences run as one batch of 2B (B when unguided) through one KV cache. `text` and
    `negative` are (1 or B, text_dim) embeddings or None (the null prefix)."""

    def __init__(self, model: ImageTransformer, text, negative, batch: int, scale: float):
        self.batch, self.scale = batch, float(scale)
        self.guided = text is not None and self.scale != 1.0
        uncond = _rows(model.prefix(negative, batch), batch)
        if text is None:
            self.prefix = uncond
        else:
            cond = _rows(model.prefix(text, batch), batch)
            self.prefix = torch.cat([cond, uncond]) if self.guided else cond

    def mix(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.guided:
            return logits
        cond, uncond = logits.chunk(2)
        return uncond + self.scale * (cond - uncond)

    def rows(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.cat([tokens, tokens]) if self.guided else tokens


def _rows(prefix: torch.Tensor, batch: int) -> torch.Tensor:
    return prefix.expand(batch, -1, -1) if prefix.shape[0] == 1 else prefix


def sample_tokens(
    model: ImageTransformer,
    guide: GuidedLogits,
    generators: list[torch.Generator],
    options: SamplingOptions,
    *,
    use_cache: bool = True,
    known: torch.Tensor | None = None,
    keep: torch.Tensor | None = None,
    on_token=None,
) -> torch.Tensor:
    """(B, image_tokens) token ids in raster order. Where `keep` (B, T) is True the token of
    `known` is written instead of a sampled one (inpaint: the unmasked part stays as it is)."""
    total = model.config.image_tokens
    batch = guide.batch
    tokens = torch.zeros(batch, 0, dtype=torch.long, device=guide.prefix.device)
    cache = model.new_cache(guide.prefix.shape[0], guide.prefix) if use_cache else None
    for position in range(total):
        if cache is None:
            x = torch.cat([guide.prefix, model.token_embed(guide.rows(tokens))], dim=1)
            logits = model._run(x, start=0)[:, -1]
        elif position == 0:
            logits = model.step(guide.prefix, cache)
        else:
            logits = model.step(model.token_embed(guide.rows(tokens[:, -1:])), cache)
        chosen = draw(filter_logits(guide.mix(logits), options), generators)
        if keep is not None:
            chosen = torch.where(keep[:, position], known[:, position], chosen)
        tokens = torch.cat([tokens, chosen[:, None]], dim=1)
        if on_token is not None:
            on_token(position + 1, total)
    return tokens


# --------------------------------------------------------------------------------------------
# The model folder: the tokenizer and the transformer as one module

DEFAULTS: dict = {
    "resolution": 64,
    "channels": 3,
    "tokenizer": TokenizerConfig().to_dict(),
    #: sized for a CPU: 0.8 M parameters train at about 1 s per batch of 32 on one core
    "transformer": {"width": 128, "layers": 4, "heads": 4, "prefix_tokens": 2, "dropout": 0.0},
    #: "text" (MiniLM embeddings of the captions; file names when no caption) or "none"
    "conditioning": "text",
    "text_encoder": "all-MiniLM-L6-v2",
    #: caption forms drawn at random in training ("{}" alone: the caption as it is)
    "caption_templates": ["{}"],
    "tokenizer_steps": 800,  # training steps spent on the tokenizer before the transformer
    "tokenizer_crop": 32,  # the convolutional tokenizer trains on random crops (cheaper)
    "tokenizer_learning_rate": 1e-3,
    "learning_rate": 5e-4,
    "warmup_steps": 100,
    "weight_decay": 0.01,
    "cond_drop": 0.15,
    "guidance_scale": 3.0,
    "sampler": "top-k",
    "temperature": 1.0,
    "top_k": 64,
    "top_p": 0.9,
    #: pictures generated per kept picture for re-ranking (1: no re-ranking)
    "candidates": 1,
    #: training pictures whose Inception features are stored for re-ranking (0: none)
    "rerank_gallery": 0,
}


class DalleModel(nn.Module):
    """The tokenizer and the transformer as one module, so the folder has one weights file."""

    def __init__(self, config: dict):
        super().__init__()
        tok_config = TokenizerConfig.from_dict(config["tokenizer"])
        self.tokenizer = VQTokenizer(tok_config)
        side = int(config["resolution"]) // tok_config.downscale
        self.transformer = ImageTransformer(transformer_config(config, side))
        # the re-ranking gallery (engine.families.rerank): Inception features of training pictures
        # and MiniLM embeddings of their captions, half precision (600 pictures: 2.9 MB)
        count = int(config.get("rerank_gallery", 0))
        self.register_buffer("gallery_features", torch.zeros(count, 2048, dtype=torch.float16))
        self.register_buffer("gallery_captions", torch.zeros(count, 384, dtype=torch.float16))

    @property
    def grid_side(self) -> int:
        return int(math.isqrt(self.transformer.config.image_tokens))


def transformer_config(config: dict, side: int) -> TransformerConfig:
    tok = TokenizerConfig.from_dict(config["tokenizer"])
    text = str(config.get("conditioning", "text")) == "text"
    return TransformerConfig.from_dict(
        {
            **config["transformer"],
            "vocab_size": tok.codebook_size,
            "image_tokens": side * side,
            "text_dim": 384 if text else 0,
        }
    )


def check_config(config: dict) -> None:
    """Refuse settings that cannot build, with the fix in the message."""
    from engine.errors import InputError

    tok = TokenizerConfig.from_dict(config["tokenizer"])
    resolution = int(config["resolution"])
    if resolution % tok.downscale:
        raise InputError(
            f"The tokenizer shrinks pictures {tok.downscale}x, so the resolution must be a "
            f"multiple of {tok.downscale} (got {resolution})."
        )
    width, heads = int(config["transformer"]["width"]), int(config["transformer"]["heads"])
    if width % heads:
        raise InputError(f"The transformer width ({width}) must divide by its heads ({heads}).")
    if str(config.get("conditioning")) not in ("text", "none"):
        raise InputError("The dalle family's conditioning is 'text' or 'none'.")


def build(config: dict) -> DalleModel:
    return DalleModel(config)


def sampling_options(config: dict, request) -> SamplingOptions:
    """Sampler and knobs from the request (extras) over the model's defaults."""
    from engine.families.common import float_extra, int_extra

    sampler = request.sampler if request.sampler in SAMPLERS else str(config.get("sampler"))
    extras = request.extras
    return SamplingOptions(
        sampler=sampler if sampler in SAMPLERS else "top-k",
        temperature=float_extra(
            extras, "temperature", float(config.get("temperature", 1.0)), low=0.05, high=5.0
        ),
        top_k=int_extra(extras, "top_k", int(config.get("top_k", 64)), low=1, high=65536),
        top_p=float_extra(extras, "top_p", float(config.get("top_p", 0.9)), low=0.01, high=1.0),
        guidance_scale=float(request.guidance_scale),
    )


def settings_used(config: dict, request) -> dict:
    """What sampling really used, for the picture's metadata."""
    options = sampling_options(config, request)
    extras = {**request.extras, "temperature": options.temperature}
    if options.sampler == "top-k":
        extras["top_k"] = options.top_k
    else:
        extras["top_p"] = options.top_p
    return {"sampler": options.sampler, "extras": extras}


def text_embeddings(config: dict, request, concepts=None):
    """(prompt, negative) MiniLM embeddings (1, 384) or None where empty or unconditioned; the
    prompt steered to the model's known `concepts` (engine.text.concepts) where it has them."""
    if str(config.get("conditioning", "text")) != "text":
        return None, None
    prompt, negative = request.prompt.strip(), request.negative_prompt.strip()
    if not prompt and not negative:
        return None, None
    from engine.text.minilm import shared_encoder

    encoder = shared_encoder()
    from engine.text.concepts import steer_prompt

    cond = encoder.encode([prompt]) if prompt else None
    uncond = encoder.encode([negative]) if negative else None
    return steer_prompt(cond, concepts, config, request), uncond


def generate(model: DalleModel, config: dict, request, ctx) -> list:
    """Prompt -> MiniLM -> transformer (guided, cached, top-k/top-p) -> tokens -> pictures;
    inpaint goes through dalle_edit; more candidates than pictures go through rerank."""
    from engine.api import Mode
    from engine.families.common import generator_for, image_seeds, known_concepts, to_images

    if request.mode is Mode.INPAINT:
        from engine.families.dalle_edit import inpaint

        return inpaint(model, config, request, ctx)
    options = sampling_options(config, request)
    device = next(model.parameters()).device
    embeddings = text_embeddings(config, request, known_concepts(model))
    text, negative = (None if t is None else t.to(device) for t in embeddings)
    from engine.families.rerank import candidate_count

    count = candidate_count(config, request)
    seeds = image_seeds(request.seed, count)
    images: list = []
    for start in range(0, count, 16):  # memory stays flat for many candidates
        chunk = seeds[start : start + 16]
        guide = GuidedLogits(model.transformer, text, negative, len(chunk), options.guidance_scale)
        done = len(images)

        def progress(position, total, done=done, size=len(chunk)):
            ctx.check_cancelled()
            ctx.progress(done * total + position * size, count * total)

        tokens = sample_tokens(
            model.transformer, guide, [generator_for(s) for s in chunk], options, on_token=progress
        )
        side = model.grid_side
        images += to_images(model.tokenizer.decode(tokens.view(-1, side, side)))
    if count == request.batch_size:
        return images
    from engine.families.rerank import model_gallery, rerank

    return rerank(images, request, config, ctx, model_gallery(model))
