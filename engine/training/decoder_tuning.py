"""Decoder tuning for latent diffusion: a sharper decoder for the same latent space.

The LDM's autoencoder trains for a few hundred steps before the UNet starts and is then frozen,
because the UNet learns *its encoder's* latents: change the encoder and every picture the UNet
makes changes. The decoder has no such tie. Any decoder that maps those latents back to the
pictures better is a drop-in replacement, so it can keep learning long after the encoder stops.
Stable Diffusion's released VAE was improved the same way (sd-vae-ft-mse: the decoder alone
fine-tuned, the encoder kept, so every UNet trained on it works unchanged). Easel tunes the
decoder on the training pictures with the encoder frozen:

    loss = L1 + MSE + edge_weight * L1(horizontal and vertical differences)

L1 and MSE alone settle for soft edges (the mean of the sharp edges the latent allows); the
edge term compares the pictures' finite differences, so a blurred outline costs as much as a
misplaced one. The decoder is sampled from the encoder's posterior (mean + std * noise), as in
the autoencoder's own training, so it also accepts the slightly-off latents a UNet produces.
Measured on the built-in emoji-ldm: docs/benchmarks.md, "Decoder tuning".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from engine.families.ldm import Autoencoder, build_decoder
from engine.training.base import EMA, warmed_up_decay


@dataclass(frozen=True)
class DecoderTuning:
    steps: int
    lr: float = 5e-4
    batch: int = 32
    edge_weight: float = 1.0
    #: EMA of the decoder weights; the kept decoder is the average, as for the UNet
    ema_decay: float = 0.998
    warmup_steps: int = 100
    seed: int = 0
    #: train on random crops of this many latent pixels a side (None: whole pictures) until
    #: `whole_from` of the steps are done: a convolutional decoder learns the same kernels on
    #: crops at a fraction of the cost, and the last stretch on whole pictures fits the borders
    crop: int | None = None
    whole_from: float = 0.85


def edge_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the two pictures' finite differences along y and along x."""
    dy = F.l1_loss(pred[..., 1:, :] - pred[..., :-1, :], target[..., 1:, :] - target[..., :-1, :])
    dx = F.l1_loss(pred[..., 1:] - pred[..., :-1], target[..., 1:] - target[..., :-1])
    return dy + dx


def decoder_loss(
    decoder: nn.Module, latents: torch.Tensor, images: torch.Tensor, edge_weight: float
) -> tuple[torch.Tensor, dict]:
    recon = decoder(latents)
    pixel = F.l1_loss(recon, images) + F.mse_loss(recon, images)
    edges = edge_loss(recon, images) if edge_weight else recon.new_zeros(())
    return pixel + edge_weight * edges, {"pixel": pixel.item(), "edges": edges.item()}


def aligned_crops(
    latents: torch.Tensor, images: torch.Tensor, size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random window of each latent (size x size) and of its picture (scaled up)."""
    n, _, h, w = latents.shape
    scale = images.shape[-1] // w
    ys = torch.randint(0, h - size + 1, (n,), generator=generator).tolist()
    xs = torch.randint(0, w - size + 1, (n,), generator=generator).tolist()
    big = size * scale
    lat, pix = [], []
    for i, (y, x) in enumerate(zip(ys, xs, strict=True)):
        lat.append(latents[i, :, y : y + size, x : x + size])
        pix.append(images[i, :, y * scale : y * scale + big, x * scale : x * scale + big])
    return torch.stack(lat), torch.stack(pix)


def posterior_sample(
    autoencoder: Autoencoder, images: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Latents of `images` from the frozen encoder: the mean plus the posterior's own noise."""
    with torch.no_grad():
        mean, logvar = autoencoder.encode(images)
    noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
    return mean + (0.5 * logvar).exp() * noise


class DecoderStepper:
    """One optimiser step of the decoder alone; `ema` is the decoder to keep."""

    def __init__(self, autoencoder: Autoencoder, tuning: DecoderTuning):
        self.autoencoder = autoencoder
        self.tuning = tuning
        self.decoder = autoencoder.decoder
        self._average = EMA(self.decoder, tuning.ema_decay)
        self.ema = self._average.module
        self.optimizer = torch.optim.Adam(self.decoder.parameters(), lr=tuning.lr)
        self.generator = torch.Generator().manual_seed(tuning.seed)
        self.steps_done = 0

    def learning_rate(self) -> float:
        """Linear warm-up, then a cosine decay to zero at `tuning.steps`."""
        t = self.tuning
        warm = min(1.0, (self.steps_done + 1) / max(1, t.warmup_steps))
        progress = min(1.0, self.steps_done / max(1, t.steps))
        return t.lr * warm * 0.5 * (1.0 + math.cos(math.pi * progress))

    def step(self, images: torch.Tensor) -> dict:
        if self.steps_done == 0:  # the average starts from the decoder as tuning begins
            self.ema.load_state_dict(self.decoder.state_dict())
        self.decoder.requires_grad_(True)  # the trainer freezes the whole autoencoder
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        t = self.tuning
        latents = posterior_sample(self.autoencoder, images, self.generator)
        if t.crop and self.steps_done < t.whole_from * t.steps and t.crop < latents.shape[-1]:
            latents, images = aligned_crops(latents, images, t.crop, self.generator)
        loss, parts = decoder_loss(self.decoder, latents, images, t.edge_weight)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.decoder.requires_grad_(False)
        self._average.decay = warmed_up_decay(t.ema_decay, self.steps_done)
        self._average.update(self.decoder)
        self.steps_done += 1
        return {"loss": loss.item(), **parts}

    def keep(self) -> None:
        """Put the averaged decoder into the autoencoder, ready for export or sampling."""
        self.decoder.load_state_dict(self.ema.state_dict())
        self.decoder.eval().requires_grad_(False)


def replace_decoder(autoencoder: Autoencoder, channels: tuple[int, int], blocks: int) -> None:
    """A new, untrained decoder of the given widths (at H/2, H/4) and blocks per level, for
    `tune_decoder` to train: the encoder and so the latent space stay as they are."""
    autoencoder.config = replace(
        autoencoder.config, decoder_channels=tuple(channels), decoder_blocks=int(blocks)
    )
    autoencoder.decoder = build_decoder(autoencoder.config)


@torch.no_grad()
def reconstruction_error(autoencoder: Autoencoder, images: torch.Tensor, batch=128) -> float:
    """Mean squared error (pixels in [-1, 1]) of decode(encode mean) over `images`."""
    total = 0.0
    for i in range(0, len(images), batch):
        chunk = images[i : i + batch]
        recon = autoencoder.decode(autoencoder.encode(chunk)[0])
        total += float(((recon - chunk) ** 2).sum())
    return total / images.numel()


def tune_decoder(
    autoencoder: Autoencoder,
    images: torch.Tensor,
    tuning: DecoderTuning,
    *,
    probe: torch.Tensor | None = None,
    progress: Callable[[int, dict], None] | None = None,
) -> dict:
    """Tune `autoencoder`'s decoder on `images` (N, C, H, W in [-1, 1]) for `tuning.steps`.

    `probe`: pictures the tuning never sees, whose reconstruction error before and after is
    returned (None: the first 256 of `images`, i.e. training error only)."""
    probe = images[:256] if probe is None else probe
    before = reconstruction_error(autoencoder.eval(), probe)
    stepper = DecoderStepper(autoencoder, tuning)
    started = time.perf_counter()
    for _ in range(tuning.steps):
        pick = torch.randint(0, len(images), (tuning.batch,), generator=stepper.generator)
        parts = stepper.step(images[pick])
        if progress is not None:
            progress(stepper.steps_done, parts)
    stepper.keep()
    autoencoder.eval().requires_grad_(False)
    return {
        "steps": tuning.steps,
        "seconds": round(time.perf_counter() - started, 1),
        "probe_mse_before": before,
        "probe_mse_after": reconstruction_error(autoencoder, probe),
    }
