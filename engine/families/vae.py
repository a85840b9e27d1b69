"""Convolutional VAE and beta-VAE.

VAE: Kingma & Welling 2013, "Auto-Encoding Variational Bayes" (arXiv:1312.6114). An encoder
gives q(z|x) = N(mu, sigma^2); a decoder maps z back to a picture. Training maximises the ELBO:
reconstruction - KL(q(z|x) || N(0, I)), with z = mu + sigma * eps (the reparameterisation trick,
section 2.4) so gradients flow through the sampling.
beta-VAE: Higgins et al. 2017, "beta-VAE: Learning basic visual concepts with a constrained
variational framework" (ICLR): the KL term weighted by beta > 1 pushes towards disentangled,
one-factor-per-dimension latents (family "beta-vae", default beta 4).

`latent: "vector"` gives a flat z (interpolation and traversal read best); `"spatial"` keeps a
(latent_channels, R/2^downsample, R/2^downsample) latent map, the shape latent diffusion needs
(Rombach et al. 2022 use a KL-regularised autoencoder the same way).

Generation extras: `init_image` reconstructs (image 0 decodes the posterior mean, the others
posterior samples); `interpolate_to_image` (a path) walks the latent line from the init image
(or the seed's prior sample) to that picture; `traverse_dim` (-1: the dimension that changes
the picture most) (+ `traverse_range`, default 3)
varies one latent dimension across the batch; `temperature` scales prior samples.
"""

from __future__ import annotations

import torch
from torch import nn

from engine.errors import InputError
from engine.families.common import (
    batch_noise,
    float_extra,
    int_extra,
    interpolation_weights,
    load_square,
    run_in_batches,
    to_images,
)

DEFAULTS = {
    "resolution": 64,
    "channels": 3,
    "latent": "vector",  # "vector" (flat z) or "spatial" (latent map, for latent diffusion)
    "latent_dim": 64,  # size of a vector latent
    "latent_channels": 4,  # channels of a spatial latent
    "downsample": 2,  # halvings down to a spatial latent (factor 2^downsample)
    "width": 32,  # channels after the stem; doubled per halving up to max_width
    "max_width": 256,
    "beta": 1.0,  # KL weight (1 = plain VAE; beta-VAE uses > 1)
    "learning_rate": 1e-3,
}
#: beta-VAE: Higgins et al. 2017 use beta = 4 for their 64x64 experiments
FAMILY_DEFAULTS = {"beta-vae": {"beta": 4.0}}
SAMPLE_BATCH = 16


def check_config(config: dict) -> None:
    resolution = int(config["resolution"])
    if resolution < 8 or resolution & (resolution - 1):
        raise InputError(f"The VAE needs a power-of-two resolution from 8 up (got {resolution}).")
    if config["latent"] not in ("vector", "spatial"):
        raise InputError("VAE 'latent' must be 'vector' or 'spatial'.")
    if config["latent"] == "spatial" and resolution >> int(config["downsample"]) < 1:
        raise InputError("VAE 'downsample' is too large for this resolution.")
    if float(config["beta"]) < 0:
        raise InputError("The VAE's beta must be 0 or more.")


def halvings(config: dict) -> int:
    """How many stride-2 stages: to 4x4 for a vector latent, `downsample` for a spatial one."""
    resolution = int(config["resolution"])
    if config["latent"] == "spatial":
        return int(config["downsample"])
    return max(0, resolution.bit_length() - 1 - 2)


def widths(config: dict) -> list[int]:
    return [
        min(int(config["width"]) * 2**i, int(config["max_width"]))
        for i in range(halvings(config) + 1)
    ]


class ResBlock(nn.Module):
    """GroupNorm - SiLU - conv, twice, plus the input (a pre-activation residual block)."""

    def __init__(self, width: int):
        super().__init__()
        groups = 8 if width % 8 == 0 else 1
        self.body = nn.Sequential(
            nn.GroupNorm(groups, width),
            nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.GroupNorm(groups, width),
            nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1),
        )

    def forward(self, x):
        return x + self.body(x)


class VAE(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        check_config(config)
        self.config = config
        self.spatial = config["latent"] == "spatial"
        w = widths(config)
        channels = int(config["channels"])
        down: list[nn.Module] = [nn.Conv2d(channels, w[0], 3, padding=1)]
        for w_in, w_out in zip(w[:-1], w[1:], strict=True):
            down += [ResBlock(w_in), nn.Conv2d(w_in, w_out, 4, stride=2, padding=1)]
        down += [ResBlock(w[-1]), nn.GroupNorm(8 if w[-1] % 8 == 0 else 1, w[-1]), nn.SiLU()]
        self.encoder = nn.Sequential(*down)
        self.bottom = int(config["resolution"]) >> halvings(config)  # latent side length
        if self.spatial:
            zc = int(config["latent_channels"])
            self.to_moments = nn.Conv2d(w[-1], 2 * zc, 1)  # mu and log sigma^2 per position
            self.from_latent = nn.Conv2d(zc, w[-1], 3, padding=1)
        else:
            flat = w[-1] * self.bottom**2
            self.to_moments = nn.Linear(flat, 2 * int(config["latent_dim"]))
            self.from_latent = nn.Linear(int(config["latent_dim"]), flat)
        up: list[nn.Module] = [ResBlock(w[-1])]
        for w_in, w_out in zip(w[:0:-1], w[-2::-1], strict=True):
            up += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(w_in, w_out, 3, padding=1),
            ]
            up += [ResBlock(w_out)]
        up += [nn.GroupNorm(8 if w[0] % 8 == 0 else 1, w[0]), nn.SiLU()]
        up += [nn.Conv2d(w[0], channels, 3, padding=1)]
        self.decoder = nn.Sequential(*up)
        self.top_width = w[-1]

    @property
    def latent_shape(self) -> tuple[int, ...]:
        if self.spatial:
            return (int(self.config["latent_channels"]), self.bottom, self.bottom)
        return (int(self.config["latent_dim"]),)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x): mean and log-variance, each of `latent_shape` per image."""
        h = self.encoder(x)
        if not self.spatial:
            h = h.flatten(1)
        mu, logvar = self.to_moments(h).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)  # keep exp() finite early in training

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.from_latent(z)
        if not self.spatial:
            h = h.view(-1, self.top_width, self.bottom, self.bottom)
        return self.decoder(h)

    @staticmethod
    def reparameterise(mu, logvar, eps):
        """z = mu + sigma * eps, eps ~ N(0, I) (Kingma & Welling 2013, eq. 10)."""
        return mu + torch.exp(0.5 * logvar) * eps

    def forward(self, x: torch.Tensor, eps: torch.Tensor):
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterise(mu, logvar, eps)), mu, logvar


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) summed per image (Kingma & Welling 2013, appendix B)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


def build(config: dict) -> nn.Module:
    return VAE(config)


# -- generation -------------------------------------------------------------------------------
def generate(model: VAE, config: dict, request, ctx) -> list:
    device = next(model.parameters()).device
    z = latents_for_request(model, config, request, device)
    return run_in_batches(
        len(z), SAMPLE_BATCH, lambda a, b: to_images(model.decode(z[a:b]).clamp(-1, 1)), ctx
    )


def encode_picture(model: VAE, config: dict, path: str, device, what: str) -> torch.Tensor:
    x = load_square(path, int(config["resolution"]), int(config["channels"]), what).to(device)
    return model.encode(x)


def latents_for_request(model: VAE, config: dict, request, device) -> torch.Tensor:
    """The z per output image for the request's exploration mode."""
    extras, count = request.extras, request.batch_size
    shape = model.latent_shape
    temperature = float_extra(extras, "temperature", 1.0, low=0.0, high=5.0)
    seeds = [(request.seed + i) % 2**32 for i in range(count)]
    start_mu, start_logvar = None, None
    if request.init_image:
        start_mu, start_logvar = encode_picture(
            model, config, request.init_image, device, "init image"
        )
    if extras.get("interpolate_to_image"):
        start = (
            start_mu
            if start_mu is not None
            else batch_noise(shape, seeds[:1], device) * temperature
        )
        end, _ = encode_picture(
            model, config, extras["interpolate_to_image"], device, "second image"
        )
        return torch.cat([torch.lerp(start, end, t) for t in interpolation_weights(count)])
    if "traverse_dim" in extras:
        return traversal(model, extras, shape, count, start_mu, seeds, device, temperature)
    if start_mu is not None:
        eps = batch_noise(shape, seeds, device)
        eps[0].zero_()  # image 0: the posterior mean (the plain reconstruction)
        return model.reparameterise(start_mu, start_logvar, eps)
    return batch_noise(shape, seeds, device) * temperature


def most_varied_dimension(model, base, shape, span: float, batch: int = 64) -> int:
    """The latent dimension whose -span..+span ends change the decoded picture most. A
    beta-VAE switches most of its dimensions off (their KL term goes to zero), so traversing an
    arbitrary one shows the same picture eight times."""
    flat = base.flatten(1)
    size = flat.shape[1]
    changes = []
    for start in range(0, size, batch):
        dims = torch.arange(start, min(size, start + batch), device=flat.device)
        low, high = flat.repeat(len(dims), 1), flat.repeat(len(dims), 1)
        low[torch.arange(len(dims)), dims] = -span
        high[torch.arange(len(dims)), dims] = span
        ends = model.decode(torch.cat([low, high]).view(-1, *shape))
        changes.append((ends[: len(dims)] - ends[len(dims) :]).abs().flatten(1).mean(1))
    return int(torch.cat(changes).argmax())


def traversal(model, extras, shape, count, start_mu, seeds, device, temperature):
    """Vary one latent dimension from -range to +range, all others fixed (Higgins et al. 2017,
    figure 7): what that dimension has learnt to encode becomes visible."""
    size = int(torch.Size(shape).numel())
    span = float_extra(extras, "traverse_range", 3.0, low=0.1, high=10.0)
    base = start_mu if start_mu is not None else batch_noise(shape, seeds[:1], device) * temperature
    if extras.get("traverse_dim") == -1:  # "the most telling one": most beta-VAE dims are idle
        dim = most_varied_dimension(model, base, shape, span)
    else:
        dim = int_extra(extras, "traverse_dim", 0, low=0, high=size - 1)
    z = base.flatten(1).repeat(count, 1)
    z[:, dim] = torch.linspace(-span, span, count, device=device) if count > 1 else 0.0
    return z.view(count, *shape)
