"""The denoising UNet of Easel's own diffusion families (ddpm, and the latent one in ldm.py).

It predicts the noise eps in x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (Ho et al. 2020,
"Denoising Diffusion Probabilistic Models"), with a sinusoidal time embedding, residual blocks
modulated by that embedding (FiLM scale and shift, Dhariwal & Nichol 2021) and self-attention at
the coarse resolutions. A condition (a class label, or a text embedding such as MiniLM's 384-d
sentence vector) is projected and added to the time embedding; a learned "null" condition stands
for "no condition" so one network learns both branches of classifier-free guidance (Ho &
Salimans 2022). Schedules and samplers are in ddpm.py.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import InputError


@dataclass
class UNetConfig:
    in_channels: int = 3
    base_channels: int = 64
    channel_mults: tuple[int, ...] = (1, 2, 2)
    blocks_per_level: int = 2
    #: levels (0 = full resolution) that get self-attention after each residual block
    attention_levels: tuple[int, ...] = (2,)
    head_channels: int = 32
    dropout: float = 0.0
    #: "none", "class" (num_classes labels) or "text" (cond_dim-d embedding vectors)
    conditioning: str = "none"
    num_classes: int = 0
    cond_dim: int = 0

    def __post_init__(self):
        self.channel_mults = tuple(self.channel_mults)
        self.attention_levels = tuple(self.attention_levels)
        if self.conditioning not in ("none", "class", "text"):
            raise InputError(f"Unknown conditioning '{self.conditioning}' (none, class or text).")
        if self.conditioning == "class" and self.num_classes < 1:
            raise InputError("A class-conditioned UNet needs num_classes >= 1.")
        if self.conditioning == "text" and self.cond_dim < 1:
            raise InputError("A text-conditioned UNet needs cond_dim (the embedding size).")

    @classmethod
    def from_dict(cls, data: dict) -> UNetConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def to_dict(self) -> dict:
        return asdict(self)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, as in the Transformer."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def group_norm(channels: int) -> nn.GroupNorm:
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0 and channels // g >= 4)
    return nn.GroupNorm(groups, channels)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice; the embedding scales and shifts the second norm (FiLM)."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1 = group_norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = group_norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # start as identity: stabler early training
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    def __init__(self, channels: int, head_channels: int):
        super().__init__()
        self.heads = max(1, channels // head_channels)
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = (qkv[:, i].transpose(-1, -2) for i in range(3))  # (b, heads, hw, d)
        y = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(y.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """eps_theta(x_t, t, cond). `cond` is None (use the null condition), class ids or vectors."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        ch = config.base_channels
        emb_dim = 4 * ch
        self.time_mlp = nn.Sequential(
            nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        if config.conditioning == "class":
            # the last row is the null class used for the unconditional branch
            self.class_emb = nn.Embedding(config.num_classes + 1, emb_dim)
        elif config.conditioning == "text":
            self.null_text = nn.Parameter(torch.zeros(config.cond_dim))
            self.text_mlp = nn.Sequential(
                nn.Linear(config.cond_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
            )
        self.stem = nn.Conv2d(config.in_channels, ch, 3, padding=1)
        self.down, skips = nn.ModuleList(), [ch]
        widths = [ch * m for m in config.channel_mults]
        for level, width in enumerate(widths):
            for _ in range(config.blocks_per_level):
                self.down.append(self._block(ch, width, level, emb_dim))
                ch = width
                skips.append(ch)
            if level < len(widths) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid = nn.ModuleList(
            [
                ResBlock(ch, ch, emb_dim, config.dropout),
                SelfAttention(ch, config.head_channels),
                ResBlock(ch, ch, emb_dim, config.dropout),
            ]
        )
        self.up = nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            for _ in range(config.blocks_per_level + 1):
                self.up.append(self._block(ch + skips.pop(), width, level, emb_dim))
                ch = width
            if level > 0:
                self.up.append(
                    nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(ch, ch, 3, padding=1))
                )
        self.head = nn.Sequential(
            group_norm(ch), nn.SiLU(), nn.Conv2d(ch, config.in_channels, 3, padding=1)
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def _block(self, in_ch: int, out_ch: int, level: int, emb_dim: int) -> nn.Module:
        block = nn.ModuleList([ResBlock(in_ch, out_ch, emb_dim, self.config.dropout)])
        if level in self.config.attention_levels:
            block.append(SelfAttention(out_ch, self.config.head_channels))
        return block

    def condition_or_null(self, cond: torch.Tensor | None, batch: int) -> torch.Tensor:
        """`cond` as given, or the explicit null condition (id or vector) for `batch` rows."""
        if cond is not None:
            return cond.expand(batch, *cond.shape[1:]) if cond.shape[0] == 1 else cond
        if self.config.conditioning == "class":
            return torch.full((batch,), self.config.num_classes, dtype=torch.long)
        return self.null_text.detach().expand(batch, -1)

    def embed_condition(self, cond: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        kind = self.config.conditioning
        if kind == "none":
            return None
        if kind == "class":
            if cond is None:
                cond = torch.full((batch,), self.config.num_classes, dtype=torch.long)
            return self.class_emb(cond.to(self.class_emb.weight.device))
        if cond is None:
            cond = self.null_text.expand(batch, -1)
        return self.text_mlp(cond.to(self.null_text))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None):
        emb = self.time_mlp(timestep_embedding(t, self.config.base_channels))
        cond_emb = self.embed_condition(cond, x.shape[0])
        if cond_emb is not None:
            emb = emb + cond_emb
        h = self.stem(x)
        skips = [h]
        for layer in self.down:
            h = self._run(layer, h, emb)
            skips.append(h)
        for layer in self.mid:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        for layer in self.up:
            if isinstance(layer, nn.ModuleList):
                h = self._run(layer, torch.cat([h, skips.pop()], dim=1), emb)
            else:
                h = layer(h)
        return self.head(h)

    @staticmethod
    def _run(layer: nn.Module, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if not isinstance(layer, nn.ModuleList):
            return layer(h)  # a downsampling conv
        for sub in layer:
            h = sub(h, emb) if isinstance(sub, ResBlock) else sub(h)
        return h
