"""The DALL-E family's image tokenizer: a VQ-VAE (van den Oord et al. 2017, "Neural Discrete
Representation Learning") that turns a 64x64 picture into an 8x8 (or 16x16) grid of code ids.

- **Encoder / decoder**: small convolutional nets; a pixel unshuffle does the first factor 2 (as
  in the LDM autoencoder) so no convolution runs at full resolution on a 2-core CPU.
- **Codebook with EMA updates** (the paper's appendix A.1): instead of a codebook loss, each code
  is the exponential moving average of the encoder outputs assigned to it, `decay` ~0.99, with
  Laplace smoothing of the counts so an unused code never divides by zero.
- **Dead-code restarts** (Dhariwal et al. 2020, Jukebox; Zeghidour et al. 2021, SoundStream):
  a code whose EMA usage falls below `dead_threshold` is moved onto a random encoder output of
  the current batch, so the codebook does not collapse onto a handful of codes.
- **Commitment loss** `beta * ||z_e - sg(e)||^2` (beta 0.25, the paper's value) keeps the
  encoder's outputs near the codes they choose.
- **Straight-through estimator**: the decoder's gradient is copied through the quantiser to the
  encoder (`z_e + sg(z_q - z_e)`), the paper's eq. 3.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.families.ddpm_unet import group_norm
from engine.families.ldm import _Res  # the same residual block as the LDM autoencoder


@dataclass
class TokenizerConfig:
    image_channels: int = 3
    #: widths after the pixel unshuffle and after each stride-2 convolution; the grid is
    #: resolution / 2 ** len(channels): (32, 64, 64) on 64x64 gives 8x8 codes
    channels: tuple[int, ...] = (32, 64, 64)
    codebook_size: int = 512
    code_dim: int = 32
    #: commitment cost beta (van den Oord et al. 2017 use 0.25)
    commitment: float = 0.25
    #: EMA decay of the codebook (the paper's gamma, 0.99)
    ema_decay: float = 0.99
    #: restart a code when its EMA count (assignments per batch) falls below this
    dead_threshold: float = 0.03

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)

    @classmethod
    def from_dict(cls, data: dict) -> TokenizerConfig:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def downscale(self) -> int:
        return 2 ** len(self.channels)


def _encoder(config: TokenizerConfig) -> nn.Sequential:
    widths = config.channels
    layers: list[nn.Module] = [
        nn.PixelUnshuffle(2),
        nn.Conv2d(config.image_channels * 4, widths[0], 3, padding=1),
        _Res(widths[0]),
    ]
    for before, after in zip(widths, widths[1:], strict=False):
        layers += [nn.Conv2d(before, after, 4, stride=2, padding=1), _Res(after)]
    layers += [group_norm(widths[-1]), nn.SiLU(), nn.Conv2d(widths[-1], config.code_dim, 1)]
    return nn.Sequential(*layers)


def _decoder(config: TokenizerConfig) -> nn.Sequential:
    widths = tuple(reversed(config.channels))
    layers: list[nn.Module] = [nn.Conv2d(config.code_dim, widths[0], 3, padding=1), _Res(widths[0])]
    for before, after in zip(widths, widths[1:], strict=False):
        layers += [nn.Upsample(scale_factor=2), nn.Conv2d(before, after, 3, padding=1), _Res(after)]
    layers += [
        group_norm(widths[-1]),
        nn.SiLU(),
        nn.Conv2d(widths[-1], config.image_channels * 4, 3, padding=1),
        nn.PixelShuffle(2),
    ]
    return nn.Sequential(*layers)


class Codebook(nn.Module):
    """K codes of `dim` numbers, learnt by EMA of the encoder outputs assigned to them."""

    def __init__(self, size: int, dim: int, decay: float, dead_threshold: float):
        super().__init__()
        self.decay, self.dead_threshold = decay, dead_threshold
        embed = torch.randn(size, dim) * 0.1
        self.register_buffer("embed", embed)
        # EMA of the assignment counts (N_i) and of the summed assigned vectors (m_i), eq. A.1
        # counts start at zero: every code unused by the first batch is restarted from its
        # encoder outputs at once, a data-dependent initialisation (as k-means++ would seed it)
        self.register_buffer("cluster_size", torch.zeros(size))
        self.register_buffer("embed_sum", embed.clone())

    @property
    def size(self) -> int:
        return int(self.embed.shape[0])

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the closest code (squared L2) for each row of `flat` (M, dim)."""
        distances = (
            flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.embed.t() + self.embed.pow(2).sum(1)
        )
        return distances.argmin(1)

    @torch.no_grad()
    def update(self, flat: torch.Tensor, ids: torch.Tensor, generator: torch.Generator) -> int:
        """One EMA step towards this batch's assignments, then restart dead codes.
        Returns how many codes were restarted."""
        onehot = F.one_hot(ids, self.size).type(flat.dtype)
        self.cluster_size.lerp_(onehot.sum(0), 1 - self.decay)
        self.embed_sum.lerp_(onehot.t() @ flat, 1 - self.decay)
        # Laplace smoothing (Sonnet's VectorQuantizerEMA): counts never reach zero
        total = self.cluster_size.sum()
        eps = 1e-5
        smoothed = (self.cluster_size + eps) / (total + self.size * eps) * total
        self.embed.copy_(self.embed_sum / smoothed[:, None])
        return self._restart_dead(flat, generator)

    def _restart_dead(self, flat: torch.Tensor, generator: torch.Generator) -> int:
        dead = (self.cluster_size < self.dead_threshold).nonzero().flatten()
        if not len(dead):
            return 0
        picks = torch.randint(0, flat.shape[0], (len(dead),), generator=generator)
        fresh = flat[picks.to(flat.device)]
        self.embed[dead] = fresh
        self.embed_sum[dead] = fresh
        self.cluster_size[dead] = 1.0  # as if used once: give it a few batches to be chosen
        return len(dead)


class VQTokenizer(nn.Module):
    """`encode(images in [-1, 1]) -> ids (N, h, w)`, `decode(ids) -> images in [-1, 1]`."""

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.config = config
        self.encoder = _encoder(config)
        self.decoder = _decoder(config)
        self.codebook = Codebook(
            config.codebook_size, config.code_dim, config.ema_decay, config.dead_threshold
        )

    def _flat(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        z = self.encoder(images)  # (N, D, h, w)
        n, d, h, w = z.shape
        return z.permute(0, 2, 3, 1).reshape(-1, d), (n, h, w, d)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        flat, (n, h, w, _) = self._flat(images)
        return self.codebook.nearest(flat).view(n, h, w)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        codes = self.codebook.embed[ids]  # (N, h, w, D)
        return self.decoder(codes.permute(0, 3, 1, 2).contiguous())

    def loss(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        """Reconstruction (MSE, the paper's log-likelihood under a fixed-variance Gaussian) plus
        the commitment term; the codebook itself moves by EMA in `codebook.update`."""
        flat, (n, h, w, d) = self._flat(images)
        ids = self.codebook.nearest(flat.detach())
        quantised = self.codebook.embed[ids]
        commitment = F.mse_loss(flat, quantised)
        straight_through = flat + (quantised - flat).detach()
        z_q = straight_through.view(n, h, w, d).permute(0, 3, 1, 2)
        recon = self.decoder(z_q)
        mse = F.mse_loss(recon, images)
        restarted = self.codebook.update(flat.detach(), ids, generator) if self.training else 0
        used = int(torch.unique(ids).numel())
        loss = mse + self.config.commitment * commitment
        return loss, {
            "mse": mse.item(),
            "commitment": commitment.item(),
            "codes_used": used,
            "restarted": restarted,
        }


def codebook_usage(tokenizer: VQTokenizer, images: torch.Tensor, batch: int = 128) -> int:
    """How many distinct codes the tokenizer uses on `images` (collapse shows as a few)."""
    with torch.no_grad():
        ids = torch.cat(
            [tokenizer.encode(images[i : i + batch]) for i in range(0, len(images), batch)]
        )
    return int(torch.unique(ids).numel())
