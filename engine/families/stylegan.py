"""A StyleGAN-style generator (Karras, Laine & Aila 2019, arXiv:1812.04948; StyleGAN2: Karras
et al. 2020, arXiv:1912.04958), small enough to train on a CPU, up to 128x128.

- Mapping network: z -> w through an 8-layer MLP in the paper (`mapping_layers`) after pixel
  norm, with a 100x lower learning rate (StyleGAN section 2, appendix C).
- Synthesis: a learnt 4x4 constant, then per resolution two 3x3 convolutions whose weights are
  *modulated* by a per-layer style from w and *demodulated* to unit output variance (StyleGAN2
  section 2.2, eq. 1-3), per-pixel noise with a learnt per-channel strength (StyleGAN 2.1), and
  skip-connected toRGB outputs summed across resolutions (StyleGAN2 section 4.1).
- Equalised learning rate: weights ~ N(0, 1) scaled by He's constant at run time (Karras et al.
  2018, "Progressive growing", section 4.1).
- Truncation trick: w' = w_avg + psi (w - w_avg) trades variety for fidelity (StyleGAN 2.3).
- Style mixing: the styles of layers >= `mix_layer` come from a second latent (StyleGAN 3.1).

Generation extras: `truncation` (psi, default 0.7), `mix_seed` + `mix_layer`,
`interpolate_to_seed` (a straight walk in W, which StyleGAN shows is well behaved).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import InputError
from engine.families.common import (
    MAX_SEED,
    batch_noise,
    float_extra,
    generator_for,
    image_seeds,
    int_extra,
    interpolation_weights,
    run_in_batches,
    to_images,
)

DEFAULTS = {
    "resolution": 64,
    "channels": 3,
    "z_dim": 256,
    "w_dim": 256,
    "mapping_layers": 4,  # 8 in the paper; 4 is plenty at this size
    "mapping_lr_mul": 0.01,  # StyleGAN appendix C
    "channel_base": 8192,  # channels at resolution r: min(channel_base / r, channel_max)
    "channel_max": 256,
    "r1_gamma": 0.1,  # R1 weight; StyleGAN2-ADA's heuristic 0.0002 * r^2 / batch is ~0.01-0.5 here
    "r1_every": 4,  # lazy regularisation (StyleGAN2 section 3.1)
    "mixing_prob": 0.9,  # style-mixing regularisation (StyleGAN section 3.1)
    "ema_half_life_images": 10000,  # generator EMA (StyleGAN2: 10k images)
    "ema_rampup": 0.05,  # shorter half-life early on (StyleGAN2-ADA)
    "learning_rate": 2e-3,  # Adam lr 0.002, betas (0, 0.99) (StyleGAN2 appendix B)
}
RESOLUTIONS = (8, 16, 32, 64, 128)
SAMPLE_BATCH = 8
SQRT2 = math.sqrt(2.0)

NoiseSource = Callable[[tuple[int, ...]], torch.Tensor]


def check_config(config: dict) -> None:
    if int(config["resolution"]) not in RESOLUTIONS:
        raise InputError(
            f"The StyleGAN generator works at {', '.join(map(str, RESOLUTIONS))} pixels "
            f"(got {config['resolution']})."
        )


def channels_at(config: dict, resolution: int) -> int:
    return max(1, min(int(config["channel_base"]) // resolution, int(config["channel_max"])))


class EqualLinear(nn.Module):
    """Linear layer with the equalised learning rate (and an optional lr multiplier)."""

    def __init__(self, in_dim, out_dim, *, lr_mul=1.0, bias_init=0.0, activate=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x):
        out = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return F.leaky_relu(out, 0.2) * SQRT2 if self.activate else out


class MappingNetwork(nn.Module):
    """z -> w. Keeps a running mean of w (`w_avg`) for the truncation trick."""

    def __init__(self, config: dict):
        super().__init__()
        z_dim, w_dim, lr_mul = (
            int(config["z_dim"]),
            int(config["w_dim"]),
            float(config["mapping_lr_mul"]),
        )
        dims = [z_dim] + [w_dim] * int(config["mapping_layers"])
        self.layers = nn.Sequential(
            *(
                EqualLinear(a, b, lr_mul=lr_mul, activate=True)
                for a, b in zip(dims[:-1], dims[1:], strict=True)
            )
        )
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)  # pixel norm
        return self.layers(z)


class ModulatedConv(nn.Module):
    """Conv whose weights are scaled per input channel by the style, then demodulated."""

    def __init__(self, in_ch, out_ch, kernel, w_dim, *, demodulate=True, upsample=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0)  # style s = A(w), starts at 1
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.padding = kernel // 2
        self.demodulate, self.upsample = demodulate, upsample

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        style = self.affine(w)  # (N, in)
        weight = self.weight * self.scale
        # Modulating the weights per image (eq. 1) equals scaling the input channels by the
        # style and convolving with the shared weights; demodulation (eq. 3) then scales each
        # output channel by 1 / sqrt(sum_in,k (w * s)^2). This "non-fused" form (as StyleGAN2's
        # own code trains with) is one ordinary batched conv instead of N grouped ones: much
        # faster on CPUs, and the same numbers.
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        out = F.conv2d(x * style[:, :, None, None], weight, padding=self.padding)
        if self.demodulate:
            energy = style.pow(2) @ weight.pow(2).sum(dim=(2, 3)).t()  # (N, out)
            out = out * torch.rsqrt(energy + 1e-8)[:, :, None, None]
        return out


class StyledLayer(nn.Module):
    """Modulated 3x3 conv + per-pixel noise (learnt strength) + bias + leaky ReLU."""

    def __init__(self, in_ch, out_ch, w_dim, *, upsample=False):
        super().__init__()
        self.conv = ModulatedConv(in_ch, out_ch, 3, w_dim, upsample=upsample)
        self.noise_strength = nn.Parameter(torch.zeros(1, out_ch, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, out_ch, 1, 1))

    def forward(self, x, w, noise: NoiseSource):
        x = self.conv(x, w)
        x = x + self.noise_strength * noise((x.shape[0], 1, x.shape[2], x.shape[3]))
        return F.leaky_relu(x + self.bias, 0.2) * SQRT2


class ToRGB(nn.Module):
    def __init__(self, in_ch, channels, w_dim):
        super().__init__()
        self.conv = ModulatedConv(in_ch, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x, w):
        return self.conv(x, w) + self.bias


class Synthesis(nn.Module):
    """4x4 constant -> styled layers per resolution, RGB skips summed (StyleGAN2 fig. 7b)."""

    def __init__(self, config: dict):
        super().__init__()
        check_config(config)
        w_dim, channels = int(config["w_dim"]), int(config["channels"])
        self.constant = nn.Parameter(torch.randn(1, channels_at(config, 4), 4, 4))
        self.first = StyledLayer(channels_at(config, 4), channels_at(config, 4), w_dim)
        self.first_rgb = ToRGB(channels_at(config, 4), channels, w_dim)
        self.blocks = nn.ModuleList()
        self.rgbs = nn.ModuleList()
        resolution = 8
        while resolution <= int(config["resolution"]):
            c_in, c_out = channels_at(config, resolution // 2), channels_at(config, resolution)
            self.blocks.append(
                nn.ModuleList(
                    [
                        StyledLayer(c_in, c_out, w_dim, upsample=True),
                        StyledLayer(c_out, c_out, w_dim),
                    ]
                )
            )
            self.rgbs.append(ToRGB(c_out, channels, w_dim))
            resolution *= 2
        self.num_ws = 1 + 2 * len(self.blocks)  # one style per styled layer

    def forward(self, ws: torch.Tensor, noise: NoiseSource) -> torch.Tensor:
        """ws: (N, num_ws, w_dim). toRGB layers reuse the style of the layer before them."""
        x = self.first(self.constant.expand(ws.shape[0], -1, -1, -1), ws[:, 0], noise)
        rgb = self.first_rgb(x, ws[:, 0])
        for index, ((up, conv), to_rgb) in enumerate(zip(self.blocks, self.rgbs, strict=True)):
            x = up(x, ws[:, 1 + 2 * index], noise)
            x = conv(x, ws[:, 2 + 2 * index], noise)
            rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False)
            rgb = rgb + to_rgb(x, ws[:, 2 + 2 * index])
        return rgb


class Generator(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.z_dim = int(config["z_dim"])
        self.mapping = MappingNetwork(config)
        self.synthesis = Synthesis(config)
        self.num_ws = self.synthesis.num_ws

    def styles(self, z, *, psi=1.0, mix_z=None, mix_layer=None) -> torch.Tensor:
        """Per-layer styles (N, num_ws, w_dim): mapped, truncated, optionally mixed."""
        w = self.truncate(self.mapping(z), psi)
        ws = w[:, None].repeat(1, self.num_ws, 1)
        if mix_z is not None and mix_layer is not None:
            ws[:, mix_layer:] = self.truncate(self.mapping(mix_z), psi)[:, None]
        return ws

    def truncate(self, w: torch.Tensor, psi: float) -> torch.Tensor:
        """Truncation trick (StyleGAN section 2.3): pull w towards the mean w."""
        return w if psi == 1.0 else torch.lerp(self.mapping.w_avg, w, psi)

    def forward(self, z, noise: NoiseSource, *, psi=1.0, mix_z=None, mix_layer=None):
        return self.synthesis(self.styles(z, psi=psi, mix_z=mix_z, mix_layer=mix_layer), noise)


class Discriminator(nn.Module):
    """A plain residual discriminator (StyleGAN2 fig. 7c) with the minibatch standard deviation
    feature (Karras et al. 2018, section 3) before the final layers."""

    def __init__(self, config: dict):
        super().__init__()
        resolution = int(config["resolution"])
        self.from_rgb = nn.Conv2d(int(config["channels"]), channels_at(config, resolution), 1)
        blocks = []
        while resolution > 4:
            c_in, c_out = channels_at(config, resolution), channels_at(config, resolution // 2)
            blocks.append(DiscriminatorBlock(c_in, c_out))
            resolution //= 2
        self.blocks = nn.Sequential(*blocks)
        c4 = channels_at(config, 4)
        self.final_conv = nn.Conv2d(c4 + 1, c4, 3, padding=1)
        self.final = nn.Sequential(
            nn.Flatten(), nn.Linear(c4 * 16, c4), nn.LeakyReLU(0.2), nn.Linear(c4, 1)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.from_rgb(images), 0.2)
        x = self.blocks(x)
        x = torch.cat([x, minibatch_std(x)], dim=1)
        x = F.leaky_relu(self.final_conv(x), 0.2)
        return self.final(x).flatten()


class DiscriminatorBlock(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_in, 3, padding=1)
        self.conv2 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x):
        skip = self.skip(F.avg_pool2d(x, 2))
        x = F.leaky_relu(self.conv1(x), 0.2)
        x = F.avg_pool2d(F.leaky_relu(self.conv2(x), 0.2), 2)
        return (x + skip) / SQRT2


def minibatch_std(x: torch.Tensor, group: int = 4) -> torch.Tensor:
    """One extra feature map: the std of features across a small group of images, averaged."""
    n, _, h, w = x.shape
    g = math.gcd(n, group)
    y = x.reshape(g, -1, *x.shape[1:])
    y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (n / g,)
    return y.repeat(g)[:, None, None, None].expand(n, 1, h, w)


def build(config: dict) -> nn.Module:
    return Generator(config)


def per_image_noise(generators: list[torch.Generator], device) -> NoiseSource:
    def noise(shape):
        return torch.stack([torch.randn(shape[1:], generator=g) for g in generators]).to(device)

    return noise


def generate(model: Generator, config: dict, request, ctx) -> list:
    device = model.synthesis.constant.device
    extras, count = request.extras, request.batch_size
    psi = float_extra(extras, "truncation", 0.7, low=0.0, high=2.0)
    z = batch_noise((model.z_dim,), image_seeds(request.seed, count), device)
    mix_seed = int_extra(extras, "mix_seed", None, low=0, high=MAX_SEED)
    mix_layer = int_extra(extras, "mix_layer", model.num_ws // 2, low=0, high=model.num_ws - 1)
    mix_z = None if mix_seed is None else batch_noise((model.z_dim,), [mix_seed] * count, device)
    target = int_extra(extras, "interpolate_to_seed", None, low=0, high=MAX_SEED)
    # per-pixel noise: per image from its seed; one shared stream along an interpolation so
    # the walk changes only what w changes (no flicker from fresh noise per frame)
    noise_seeds = image_seeds(request.seed, count) if target is None else [request.seed] * count
    generators = [generator_for(s + 104729) for s in noise_seeds]

    def make(start: int, stop: int):
        noise = per_image_noise(generators[start:stop], device)
        if target is not None:
            ws = interpolated_styles(model, request.seed, target, psi, device)[start:stop]
        else:
            mix = None if mix_z is None else mix_z[start:stop]
            ws = model.styles(z[start:stop], psi=psi, mix_z=mix, mix_layer=mix_layer)
        return to_images(model.synthesis(ws, noise).clamp(-1, 1))

    def interpolated_styles(model, seed, target, psi, device):
        ends = batch_noise((model.z_dim,), [seed, target], device)
        w_start, w_end = model.truncate(model.mapping(ends), psi)
        ws = torch.stack([torch.lerp(w_start, w_end, t) for t in interpolation_weights(count)])
        return ws[:, None].repeat(1, model.num_ws, 1)

    return run_in_batches(count, SAMPLE_BATCH, make, ctx)
