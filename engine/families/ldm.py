"""Latent diffusion (Rombach et al. 2022): the DDPM UNet run in the latent space of a small VAE.

The autoencoder is Easel's own, kept here rather than reusing the VAE family's model because
latent diffusion needs a different trade-off: a spatial latent (4 x H/4 x W/4) that keeps layout,
a KL term only strong enough to keep the latent smooth (weight ~1e-6, as in Stable Diffusion's
KL-f8) rather than a beta-VAE bottleneck, and a decoder cheap enough for a 2-core CPU. Space-to-
depth (pixel unshuffle) does the first and last factor 2 without full-resolution convolutions.

Sampling: prompt -> MiniLM embedding -> UNet (CFG, DDIM or DDPM) on latents -> decode.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.api import Mode
from engine.families.ddpm import settings_used as settings_used  # metadata hook, same sampling
from engine.families.ddpm_unet import group_norm


@dataclass
class AutoencoderConfig:
    image_channels: int = 3
    latent_channels: int = 4
    #: widths at H/2 and H/4; the latent is H/4 x W/4
    channels: tuple[int, ...] = (32, 64)
    #: KL weight used in training, recorded for the card
    kl_weight: float = 1e-6
    #: the decoder's widths at H/4 and H/2 (None: the encoder's) and residual blocks per level;
    #: a decoder can grow after training (engine.training.decoder_tuning) as the latent stays
    decoder_channels: tuple[int, ...] | None = None
    decoder_blocks: int = 1

    def __post_init__(self):
        self.channels = tuple(self.channels)
        if self.decoder_channels is not None:
            self.decoder_channels = tuple(self.decoder_channels)

    @classmethod
    def from_dict(cls, data: dict) -> AutoencoderConfig:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def downscale(self) -> int:
        return 2 ** len(self.channels)


class _Res(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            group_norm(channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            group_norm(channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x):
        return x + self.body(x)


def build_decoder(config: AutoencoderConfig) -> nn.Sequential:
    """Latent (H/4) -> residual blocks -> upsample (H/2) -> residual blocks -> pixels, the last
    factor 2 by pixel shuffle. One block per level is the layout every older model has."""
    c1, c2 = config.decoder_channels or config.channels
    blocks = max(1, int(config.decoder_blocks))
    return nn.Sequential(
        nn.Conv2d(config.latent_channels, c2, 3, padding=1),
        *[_Res(c2) for _ in range(blocks)],
        nn.Upsample(scale_factor=2),
        nn.Conv2d(c2, c1, 3, padding=1),
        *[_Res(c1) for _ in range(blocks)],
        group_norm(c1),
        nn.SiLU(),
        nn.Conv2d(c1, config.image_channels * 4, 3, padding=1),
        nn.PixelShuffle(2),
    )


class Autoencoder(nn.Module):
    """`encode(images in [-1, 1]) -> (mean, logvar)`, `decode(latents) -> images in [-1, 1]`."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = config
        c1, c2 = config.channels
        c_in = config.image_channels * 4  # after pixel unshuffle by 2
        self.encoder = nn.Sequential(
            nn.PixelUnshuffle(2),
            nn.Conv2d(c_in, c1, 3, padding=1),
            _Res(c1),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1),
            _Res(c2),
            group_norm(c2),
            nn.SiLU(),
            nn.Conv2d(c2, 2 * config.latent_channels, 3, padding=1),
        )
        self.decoder = build_decoder(config)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.encoder(images).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(latents)

    def loss(self, images: torch.Tensor, generator=None) -> tuple[torch.Tensor, dict]:
        """L1 reconstruction + a small KL to N(0, I) (the reparameterisation trick)."""
        mean, logvar = self.encode(images)
        std = (0.5 * logvar).exp()
        z = mean + std * torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        recon = self.decode(z)
        l1 = F.l1_loss(recon, images)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(dim=(1, 2, 3)).mean()
        return l1 + self.config.kl_weight * kl, {"l1": l1.item(), "kl": kl.item()}


# --------------------------------------------------------------------------------------------
# The model folder: one module holding the autoencoder and the latent UNet

DEFAULTS: dict = {
    "resolution": 64,
    "channels": 3,
    "autoencoder": AutoencoderConfig().to_dict(),
    "unet": {
        "base_channels": 32,
        "channel_mults": [1, 2, 4],
        "blocks_per_level": 1,
        "attention_levels": [2],
        "conditioning": "none",
    },
    #: "auto" (class labels if the data has classes, else none), "none", "class" or "text"
    #: (MiniLM embeddings of the captions; the built-in emoji model)
    "conditioning": "auto",
    "classes": [],
    "ae_steps": 500,  # training steps spent on the autoencoder before the UNet starts
    #: a number: after those steps the decoder alone keeps learning beside the UNet (encoder
    #: frozen), with this weight on its edge loss (engine.training.decoder_tuning). Off by
    #: default: +55 % time per step at the built-in's size, for reconstructions with half the
    #: error but pictures measured no more faithful (docs/benchmarks.md, "Decoder tuning")
    "decoder_tuning_edge_weight": None,
    "schedule": {"kind": "cosine", "timesteps": 1000},
    #: latents are multiplied by this before diffusion so they have unit variance (measured
    #: on the training set after the autoencoder is trained; SD's 0.18215 is the same idea)
    "latent_scale": 1.0,
    "text_encoder": "all-MiniLM-L6-v2",
    "prompt_template": "{}",
    #: bound on predicted clean latents (unit-variance units): keeps DDPM's first steps, where
    #: abar is ~1e-9 and eps errors blow up, from throwing the sample far off
    "latent_clip": 6.0,
    "guidance_scale": 3.0,
    "steps": 20,
    "sampler": "DDIM",
    "learning_rate": 5e-4,
    "ae_learning_rate": 1e-3,
    "warmup_steps": 100,
    "ema_decay": 0.995,
    "snr_gamma": 5.0,  # min-SNR loss weighting: faster convergence (Hang et al. 2023)
    #: the UNet's learning rate falls linearly to 0 over the run's last N steps (a cool-down,
    #: Hagele et al. 2024); None keeps it constant. Measured on emoji-ldm: docs/benchmarks.md
    "lr_decay_steps": None,
    "cond_drop": 0.15,
    #: pictures made per kept picture; above 1 the best are kept by image-text similarity
    #: (engine.families.rerank: needs the folder's rerank-gallery.safetensors or a CLIP model)
    "candidates": 1,
}
#: candidates sampled in one batch (memory stays flat however many are asked for)
CANDIDATE_CHUNK = 16


class LatentDiffusion(nn.Module):
    """The autoencoder and the UNet as one module, so the folder has one weights file."""

    def __init__(self, config: dict):
        super().__init__()
        from engine.families.ddpm import UNet, UNetConfig

        ae_config = AutoencoderConfig.from_dict(config["autoencoder"])
        self.autoencoder = Autoencoder(ae_config)
        unet = dict(config["unet"])
        unet["in_channels"] = ae_config.latent_channels
        self.unet = UNet(UNetConfig.from_dict(unet))
        self.latent_scale = float(config.get("latent_scale", 1.0))


def build(config: dict) -> LatentDiffusion:
    return LatentDiffusion(config)


def generate(model: LatentDiffusion, config: dict, request, ctx) -> list:
    """Prompt -> MiniLM -> UNet on latents (CFG; DDIM or DDPM) -> decoder -> pictures."""
    from engine.families.autoguide import autoguide_for
    from engine.families.common import image_seeds, known_concepts, to_images
    from engine.families.ddpm import sample_for_request

    guide = autoguide_for(model, config, request)

    ae = model.autoencoder.config
    side = int(config["resolution"]) // ae.downscale

    def decode(latents: torch.Tensor) -> torch.Tensor:
        return model.autoencoder.decode(latents / model.latent_scale)

    if request.mode is not Mode.TXT2IMG:
        from engine.families.editing import Space, edit_pictures

        def encode(images: torch.Tensor) -> torch.Tensor:
            mean, _ = model.autoencoder.encode(images)  # the posterior mean: no sampling noise
            return mean * model.latent_scale

        clip = float(config.get("latent_clip", 6.0))
        space = Space(encode, decode, clip=clip)
        concepts = known_concepts(model)
        return edit_pictures(model.unet, config, request, ctx, space, concepts, guide)

    from engine.families.rerank import candidate_count, model_gallery, rerank

    count = candidate_count(config, request)
    seeds = image_seeds(request.seed, count)
    images: list = []
    for start in range(0, count, CANDIDATE_CHUNK):  # memory stays flat for many candidates
        chunk = request.replace(seed=seeds[start], batch_size=min(CANDIDATE_CHUNK, count - start))
        # latents are not bounded like pixels: clip x0 only far outside their training range
        latents = sample_for_request(
            model.unet,
            config,
            chunk,
            ctx,
            latent_shape=(ae.latent_channels, side, side),
            clip=float(config.get("latent_clip", 6.0)),
            decode=decode,
            concepts=known_concepts(model),
            guide=guide,
        )
        images += to_images(decode(latents))
    if count == request.batch_size:
        return images
    return rerank(images, request, config, ctx, model_gallery(model))
