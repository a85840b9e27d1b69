"""NVAE-style hierarchical VAE (Vahdat & Kautz 2020, "NVAE: A Deep Hierarchical Variational
Autoencoder", arXiv:2007.03898), small enough for a CPU.

The latent is split into groups over several scales (`latent_scales`, coarse to fine). A
bottom-up encoder summarises the picture at each scale; a top-down decoder walks from a learnt
constant through the scales and, at each group, has a prior p(z_l | z_<l) and a posterior
q(z_l | x, z_<l). The posterior is *residual* to the prior (section 3.2, eq. 4):
q = N(mu_p + dmu, (sigma_p * dsigma)^2), which makes KL(q || p) depend only on dmu, dsigma
(eq. 5) and keeps the deep hierarchy stable. Cells are residual blocks with squeeze-and-
excitation (section 3.1). We use GroupNorm where NVAE uses batch norm, so a picture never depends
on its batch-mates and sampling needs no batch-norm readjustment.

Generation extras: `temperature` (default 0.8; NVAE samples with t < 1, section 5) and
`init_image` (reconstruct: image 0 with posterior means, the others posterior samples).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from engine.errors import InputError
from engine.families.common import (
    float_extra,
    generator_for,
    image_seeds,
    load_square,
    run_in_batches,
    to_images,
)

DEFAULTS = {
    "resolution": 64,
    "channels": 3,
    "width": 32,  # channels after the stem
    "max_width": 128,
    "downsample": 2,  # halvings from the picture to the finest latent scale
    "latent_scales": 2,  # number of latent scales (NVAE uses 2-5)
    "groups_per_scale": 2,  # latent groups per scale
    "latent_channels": 8,  # channels of each latent group
    "kl_warmup_steps": 500,  # linear KL warm-up (NVAE anneals over the first 30% of training)
    "learning_rate": 1e-3,
}
SAMPLE_BATCH = 16

NoiseSource = Callable[[tuple[int, ...]], torch.Tensor]


def check_config(config: dict) -> None:
    resolution, halvings = int(config["resolution"]), int(config["downsample"])
    coarsest = resolution >> (halvings + int(config["latent_scales"]) - 1)
    if resolution & (resolution - 1) or coarsest < 2:
        raise InputError(
            f"NVAE needs a power-of-two resolution large enough for {config['latent_scales']} "
            f"latent scales below a {2**halvings}x downsampling (got {resolution})."
        )
    if int(config["latent_scales"]) < 1 or int(config["groups_per_scale"]) < 1:
        raise InputError("NVAE needs at least one latent scale and one group per scale.")


def _norm(width: int) -> nn.GroupNorm:
    return nn.GroupNorm(8 if width % 8 == 0 else 1, width)


class SqueezeExcite(nn.Module):
    """Channel gating from global average pooling (Hu et al. 2018), as in NVAE's cells."""

    def __init__(self, width: int):
        super().__init__()
        hidden = max(4, width // 8)
        self.gate = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, width))

    def forward(self, x):
        return x * torch.sigmoid(self.gate(x.mean(dim=(2, 3))))[:, :, None, None]


class Cell(nn.Module):
    """Norm - Swish - conv3x3 - Norm - Swish - conv3x3 - SE, plus the input (NVAE fig. 3a)."""

    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(
            _norm(width), nn.SiLU(), nn.Conv2d(width, width, 3, padding=1),
            _norm(width), nn.SiLU(), nn.Conv2d(width, width, 3, padding=1),
            SqueezeExcite(width),
        )  # fmt: skip

    def forward(self, x):
        return x + 0.1 * self.body(x)  # scaled residual: stable at init with many cells


def residual_kl(dmu, dlogvar, p_logvar) -> torch.Tensor:
    """KL(N(mu_p + dmu, s_p^2 ds^2) || N(mu_p, s_p^2)) per image (NVAE eq. 5):
    0.5 * (dmu^2 / s_p^2 + ds^2 - 1 - log ds^2), summed over the group."""
    kl = 0.5 * (dmu.pow(2) * torch.exp(-p_logvar) + dlogvar.exp() - 1.0 - dlogvar)
    return kl.flatten(1).sum(1)


class LatentGroup(nn.Module):
    """One latent group of the top-down path: prior from h, residual posterior from h and x."""

    def __init__(self, width: int, latent_channels: int):
        super().__init__()
        self.prior = nn.Conv2d(width, 2 * latent_channels, 3, padding=1)
        self.posterior = nn.Conv2d(2 * width, 2 * latent_channels, 3, padding=1)
        self.combine = nn.Conv2d(latent_channels, width, 1)
        self.cell = Cell(width)
        nn.init.zeros_(self.posterior.weight)  # start with q = p: zero KL, no early explosion
        nn.init.zeros_(self.posterior.bias)

    def prior_params(self, h):
        mu, logvar = self.prior(h).chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 5.0)

    def forward(self, h, encoded, noise: NoiseSource, temperature: float = 1.0):
        p_mu, p_logvar = self.prior_params(h)
        if encoded is None:  # sampling: draw from the prior
            z = p_mu + temperature * torch.exp(0.5 * p_logvar) * noise(tuple(p_mu.shape))
            kl = None
        else:
            dmu, dlogvar = self.posterior(torch.cat([h, encoded], dim=1)).chunk(2, dim=1)
            dlogvar = dlogvar.clamp(-10.0, 5.0)
            q_mu, q_logvar = p_mu + dmu, p_logvar + dlogvar
            eps = torch.zeros_like(q_mu) if temperature == 0 else noise(tuple(q_mu.shape))
            z = q_mu + temperature * torch.exp(0.5 * q_logvar) * eps
            kl = residual_kl(dmu, dlogvar, p_logvar)
        return self.cell(h + self.combine(z)), kl


class NVAE(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        check_config(config)
        channels, halvings = int(config["channels"]), int(config["downsample"])
        self.scales, groups = int(config["latent_scales"]), int(config["groups_per_scale"])
        stem = [
            min(int(config["width"]) * 2**i, int(config["max_width"])) for i in range(halvings + 1)
        ]
        width = stem[-1]  # every latent scale runs at this width
        # bottom-up: picture -> finest latent scale, then one halving per further scale
        pre: list[nn.Module] = [nn.Conv2d(channels, stem[0], 3, padding=1)]
        for w_in, w_out in zip(stem[:-1], stem[1:], strict=True):
            pre += [Cell(w_in), nn.Conv2d(w_in, w_out, 4, stride=2, padding=1)]
        self.preprocess = nn.Sequential(*pre)
        self.encoder_cells = nn.ModuleList(Cell(width) for _ in range(self.scales))
        self.encoder_down = nn.ModuleList(
            nn.Conv2d(width, width, 4, stride=2, padding=1) for _ in range(self.scales - 1)
        )
        # top-down: learnt constant at the coarsest scale, groups, upsampling between scales
        coarsest = int(config["resolution"]) >> (halvings + self.scales - 1)
        self.h0 = nn.Parameter(torch.zeros(1, width, coarsest, coarsest))
        self.groups = nn.ModuleList(
            nn.ModuleList(LatentGroup(width, int(config["latent_channels"])) for _ in range(groups))
            for _ in range(self.scales)
        )
        self.decoder_up = nn.ModuleList(
            nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(width, width, 3, padding=1))
            for _ in range(self.scales - 1)
        )
        post: list[nn.Module] = []
        for w_in, w_out in zip(stem[:0:-1], stem[-2::-1], strict=True):
            post += [Cell(w_in), nn.Upsample(scale_factor=2), nn.Conv2d(w_in, w_out, 3, padding=1)]
        post += [
            Cell(stem[0]),
            _norm(stem[0]),
            nn.SiLU(),
            nn.Conv2d(stem[0], channels, 3, padding=1),
        ]
        self.postprocess = nn.Sequential(*post)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Bottom-up features per latent scale, returned coarse to fine (top-down order)."""
        h = self.preprocess(x)
        features = []
        for index, cell in enumerate(self.encoder_cells):
            h = cell(h)
            features.append(h)
            if index < self.scales - 1:
                h = self.encoder_down[index](h)
        return features[::-1]

    def top_down(self, batch: int, features, noise: NoiseSource, temperature: float = 1.0):
        h = self.h0.expand(batch, -1, -1, -1)
        kls = []
        for scale, groups in enumerate(self.groups):
            for group in groups:
                encoded = None if features is None else features[scale]
                h, kl = group(h, encoded, noise, temperature)
                if kl is not None:
                    kls.append(kl)
            if scale < self.scales - 1:
                h = self.decoder_up[scale](h)
        return self.postprocess(h), kls

    def forward(self, x: torch.Tensor, *, generator: torch.Generator):
        """Training pass: (reconstruction, [KL per group, each (N,)])."""

        def noise(shape):
            return torch.randn(shape, generator=generator).to(x.device)

        return self.top_down(x.shape[0], self.encode(x), noise)

    def sample(self, count: int, *, generator: torch.Generator, temperature: float = 1.0):
        device = self.h0.device

        def noise(shape):
            return torch.randn(shape, generator=generator).to(device)

        return self.top_down(count, None, noise, temperature)[0]


def build(config: dict) -> nn.Module:
    return NVAE(config)


def per_image_noise(generators: list[torch.Generator], device) -> NoiseSource:
    """Noise for a batch where image i draws only from generator i (seed + i reproducible)."""

    def noise(shape):
        return torch.stack([torch.randn(shape[1:], generator=g) for g in generators]).to(device)

    return noise


def generate(model: NVAE, config: dict, request, ctx) -> list:
    device = model.h0.device
    temperature = float_extra(request.extras, "temperature", 0.8, low=0.0, high=2.0)
    generators = [generator_for(s) for s in image_seeds(request.seed, request.batch_size)]
    source = None
    if request.init_image:
        source = load_square(request.init_image, int(config["resolution"]), int(config["channels"]))
        source = source.to(device)

    def make(start: int, stop: int):
        noise = per_image_noise(generators[start:stop], device)
        if source is None:
            return to_images(model.top_down(stop - start, None, noise, temperature)[0].clamp(-1, 1))
        features = [f.expand(stop - start, -1, -1, -1) for f in model.encode(source)]
        outputs = []
        for offset in range(stop - start):  # image 0 decodes posterior means (t = 0)
            t = 0.0 if start + offset == 0 else temperature
            one = [f[offset : offset + 1] for f in features]
            image_noise = per_image_noise([generators[start + offset]], device)
            outputs.append(model.top_down(1, one, image_noise, t)[0])
        return to_images(torch.cat(outputs).clamp(-1, 1))

    return run_in_batches(request.batch_size, SAMPLE_BATCH, make, ctx)
