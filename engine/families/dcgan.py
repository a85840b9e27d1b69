"""DCGAN: a deep convolutional GAN (Radford, Metz & Chintala 2015, arXiv:1511.06434).

The generator maps a Gaussian latent z to a picture through transposed convolutions that double
the size at each stage (4x4 -> resolution), with batch norm and ReLU, and tanh at the end; the
discriminator mirrors it with strided convolutions and leaky ReLU. Class-conditional models
(a folder with one subfolder per class) feed a learnt class embedding beside z (Mirza &
Osindero 2014, "Conditional GAN") and score (picture, class) pairs with a projection
discriminator (Miyato & Koyama 2018, arXiv:1802.05637).

Extras at generation: `class_label` (index or class name), `interpolate_to_seed` (the batch
walks on a great circle from this seed's latent to that seed's; White 2016).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from engine.errors import InputError
from engine.families.common import (
    MAX_SEED,
    batch_noise,
    generator_for,
    image_seeds,
    int_extra,
    interpolation_weights,
    run_in_batches,
    slerp,
    to_images,
)

DEFAULTS = {
    "resolution": 64,
    "channels": 3,
    "z_dim": 100,  # latent size: 100 in the paper
    "g_width": 64,  # generator channels at the last stage (ngf), doubled per stage inward
    "d_width": 64,  # discriminator channels at the first stage (ndf)
    "max_width": 512,
    "classes": [],  # class names; empty = unconditional
    "learning_rate": 2e-4,  # Adam lr 0.0002, beta1 0.5 (paper, section 4)
    # pictures come from an exponential moving average of the generator (Karras et al. 2018):
    # on a few thousand images a DCGAN hops between modes from one step to the next, and the
    # average is far steadier than any single step
    "ema_half_life_images": 10000,
    "ema_rampup": 0.05,
}

RESOLUTIONS = (8, 16, 32, 64, 128, 256)
SAMPLE_BATCH = 16


def check_config(config: dict) -> None:
    if int(config["resolution"]) not in RESOLUTIONS:
        raise InputError(
            f"DCGAN works at {', '.join(map(str, RESOLUTIONS))} pixels "
            f"(got {config['resolution']}); pick one of those resolutions."
        )


def stages(resolution: int) -> int:
    """Number of doublings from the 4x4 start to `resolution`."""
    return int(math.log2(resolution)) - 2


def width_at(config: dict, key: str, stage_from_image: int) -> int:
    return min(int(config[key]) * 2**stage_from_image, int(config["max_width"]))


class Generator(nn.Module):
    """z (+ class embedding) -> 4x4 -> ... -> resolution, tanh output in [-1, 1]."""

    def __init__(self, config: dict):
        super().__init__()
        check_config(config)
        self.z_dim = int(config["z_dim"])
        self.num_classes = len(config.get("classes") or [])
        n = stages(int(config["resolution"]))
        in_dim = self.z_dim
        if self.num_classes:
            self.class_embedding = nn.Embedding(self.num_classes, self.z_dim)
            in_dim += self.z_dim
        widths = [width_at(config, "g_width", n - 1 - i) for i in range(n)]
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(in_dim, widths[0], 4, 1, 0, bias=False),  # 1x1 -> 4x4
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(True),
        ]
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [
                nn.ConvTranspose2d(w_in, w_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(w_out),
                nn.ReLU(True),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], int(config["channels"]), 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            if labels is None:
                raise InputError("This DCGAN is class-conditional: give a class label.")
            z = torch.cat([z, self.class_embedding(labels)], dim=1)
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    """Picture -> one realness logit per image (plus the class projection when conditional)."""

    def __init__(self, config: dict):
        super().__init__()
        n = stages(int(config["resolution"]))
        self.num_classes = len(config.get("classes") or [])
        widths = [width_at(config, "d_width", i) for i in range(n)]
        layers: list[nn.Module] = [
            nn.Conv2d(int(config["channels"]), widths[0], 4, 2, 1),
            nn.LeakyReLU(0.2, True),  # no batch norm on the input layer (paper, section 3)
        ]
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [
                nn.Conv2d(w_in, w_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(w_out),
                nn.LeakyReLU(0.2, True),
            ]
        self.features = nn.Sequential(*layers)  # -> (N, widths[-1], 4, 4)
        self.to_logit = nn.Conv2d(widths[-1], 1, 4, 1, 0)
        if self.num_classes:
            self.class_projection = nn.Embedding(self.num_classes, widths[-1])
        self.apply(init_weights)
        if self.num_classes:
            # small like every other weight: nn.Embedding's default N(0, 1) made the projection
            # term alone about +-100 at the start, so the losses swung between 2 and 38 and the
            # generator never learnt shapes
            nn.init.normal_(self.class_projection.weight, 0.0, 0.02)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(images)
        logit = self.to_logit(h).flatten()
        if self.num_classes and labels is not None:
            # projection discriminator: + <embed(y), pooled features>
            logit = logit + (self.class_projection(labels) * h.mean(dim=(2, 3))).sum(dim=1)
        return logit


def init_weights(module: nn.Module) -> None:
    """N(0, 0.02) for convolutions, N(1, 0.02) for batch-norm scales (paper, section 4)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def build(config: dict) -> nn.Module:
    return Generator(config)


def resolve_class(config: dict, value) -> int | None:
    """A class index from an index or a class name; None when not given."""
    classes = list(config.get("classes") or [])
    if value is None or value == "":
        return None
    if not classes:
        raise InputError("This model was trained without classes; remove the class label.")
    if isinstance(value, str) and not value.lstrip("-").isdigit():
        if value not in classes:
            raise InputError(f"Unknown class '{value}'. This model knows: {', '.join(classes)}.")
        return classes.index(value)
    index = int(value)
    if not 0 <= index < len(classes):
        raise InputError(f"Class label must be 0 to {len(classes) - 1} (got {index}).")
    return index


def latents(config: dict, request, device) -> torch.Tensor:
    """One z per image: from seed + i, or slerped towards `interpolate_to_seed`."""
    z_dim, count = int(config["z_dim"]), request.batch_size
    target = int_extra(request.extras, "interpolate_to_seed", None, low=0, high=MAX_SEED)
    if target is None:
        return batch_noise((z_dim,), image_seeds(request.seed, count), device)
    start, end = batch_noise((z_dim,), [request.seed, target])
    return torch.stack([slerp(start, end, t) for t in interpolation_weights(count)]).to(device)


def labels_for(config: dict, request, device) -> torch.Tensor | None:
    num_classes = len(config.get("classes") or [])
    if not num_classes:
        resolve_class(config, request.extras.get("class_label"))  # refuses a label if given
        return None
    chosen = resolve_class(config, request.extras.get("class_label"))
    if chosen is not None:
        return torch.full((request.batch_size,), chosen, dtype=torch.int64, device=device)
    # no label given: each image draws its class from its own seed (still reproducible)
    drawn = [
        int(torch.randint(num_classes, (1,), generator=generator_for(s + 7919)))
        for s in image_seeds(request.seed, request.batch_size)
    ]
    return torch.tensor(drawn, dtype=torch.int64, device=device)


def generate(model: Generator, config: dict, request, ctx) -> list:
    device = next(model.parameters()).device
    z = latents(config, request, device)
    labels = labels_for(config, request, device)

    def make(start: int, stop: int):
        chunk_labels = None if labels is None else labels[start:stop]
        return to_images(model(z[start:stop], chunk_labels))

    return run_in_batches(request.batch_size, SAMPLE_BATCH, make, ctx)
