"""Denoising diffusion: a small UNet, noise schedules, DDPM and DDIM samplers, guidance.

Read top to bottom:
1. `UNet`: predicts the noise eps in x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (Ho et al.
   2020, "Denoising Diffusion Probabilistic Models"), with a sinusoidal time embedding, residual
   blocks modulated by that embedding (FiLM scale and shift, Dhariwal & Nichol 2021) and
   self-attention at the coarse resolutions. A condition (a class label, or a text embedding such
   as MiniLM's 384-d sentence vector) is projected and added to the time embedding; a learned
   "null" condition stands for "no condition" so one network learns both branches of
   classifier-free guidance (Ho & Salimans 2022).
2. `Schedule`: the betas, linear (Ho et al.) or cosine (Nichol & Dhariwal 2021), and the
   quantities the objective and samplers need.
3. `ddpm_sample` (ancestral, every training timestep) and `ddim_sample` (Song et al. 2021,
   "Denoising Diffusion Implicit Models": any number of steps, eta=0 deterministic, eta=1
   ancestral-like): pure functions of (model, schedule, noise, generator).
4. `GuidedDenoiser`: eps = eps_uncond + scale * (eps_cond - eps_uncond), both branches in one
   batch; the unconditional branch is the negative prompt's embedding when one is given.

Model folders (`family: "ddpm"`) and generation for the engine are at the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import InputError

# --------------------------------------------------------------------------------------------
# 1. The UNet


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


def _norm(channels: int) -> nn.GroupNorm:
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0 and channels // g >= 4)
    return nn.GroupNorm(groups, channels)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice; the embedding scales and shifts the second norm (FiLM)."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1 = _norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = _norm(out_ch)
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
        self.norm = _norm(channels)
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
            _norm(ch), nn.SiLU(), nn.Conv2d(ch, config.in_channels, 3, padding=1)
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


# --------------------------------------------------------------------------------------------
# 2. Noise schedules and the training objective


@dataclass
class ScheduleConfig:
    kind: str = "cosine"  # "linear" (Ho et al. 2020) or "cosine" (Nichol & Dhariwal 2021)
    timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02

    def __post_init__(self):
        if self.kind not in ("linear", "cosine"):
            raise InputError(f"Unknown noise schedule '{self.kind}' (linear or cosine).")
        if not 2 <= self.timesteps <= 10000:
            raise InputError("The number of diffusion timesteps must be 2 to 10000.")

    @classmethod
    def from_dict(cls, data: dict) -> ScheduleConfig:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class Schedule:
    config: ScheduleConfig
    betas: torch.Tensor = field(init=False)
    alphas_cumprod: torch.Tensor = field(init=False)

    def __post_init__(self):
        n = self.config.timesteps
        if self.config.kind == "linear":
            # Ho et al.'s betas are for 1000 steps; scale them so any T spans the same noise
            # levels (Nichol & Dhariwal 2021, `get_named_beta_schedule`)
            scale = 1000 / n
            betas = torch.linspace(
                scale * self.config.beta_start, scale * self.config.beta_end, n, dtype=torch.float64
            ).clamp(max=0.999)
        else:
            s = 0.008  # offset so beta_0 is not vanishingly small (Nichol & Dhariwal, eq. 17)
            steps = torch.arange(n + 1, dtype=torch.float64) / n
            f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
            betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1 - betas, dim=0)

    @property
    def timesteps(self) -> int:
        return self.config.timesteps

    def abar(self, t: torch.Tensor) -> torch.Tensor:
        """abar_t for integer t, with abar_{-1} = 1 (the clean image)."""
        padded = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod])
        return padded[t.long() + 1].float()

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self.abar(t).to(x0.device).view(-1, 1, 1, 1)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise


# --------------------------------------------------------------------------------------------
# 3. Samplers (pure functions; `denoise(x, t) -> eps`, `on_step(i, total, x0_hat)` may raise)

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
OnStep = Callable[[int, int, torch.Tensor], None]


def _predict_x0(x, eps, abar, clip: float | None):
    x0 = (x - (1 - abar).sqrt() * eps) / abar.sqrt()
    return x0.clamp(-clip, clip) if clip else x0


def ddpm_step(
    denoise: Denoise,
    schedule: Schedule,
    x: torch.Tensor,
    step: int,
    generator: torch.Generator,
    clip: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ancestral step t -> t-1 (Ho et al., eq. 6-7); returns (x_{t-1}, predicted x0)."""
    t = torch.full((x.shape[0],), step, dtype=torch.long)
    abar, abar_prev = schedule.abar(t)[0], schedule.abar(t - 1)[0]
    beta = 1 - abar / abar_prev
    x0 = _predict_x0(x, denoise(x, t), abar, clip)
    # posterior q(x_{t-1} | x_t, x0): mean and variance
    mean = (abar_prev.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - abar_prev) * x) / (1 - abar)
    if step == 0:
        return mean, x0
    var = beta * (1 - abar_prev) / (1 - abar)
    return mean + var.sqrt() * torch.randn(x.shape, generator=generator, dtype=x.dtype), x0


def ddpm_sample(
    denoise: Denoise,
    schedule: Schedule,
    noise: torch.Tensor,
    generator: torch.Generator,
    *,
    clip: float | None = 1.0,
    on_step: OnStep | None = None,
) -> torch.Tensor:
    """Ancestral sampling through every training timestep (Ho et al. 2020, Algorithm 2)."""
    x, total = noise, schedule.timesteps
    for i, step in enumerate(reversed(range(total))):
        x, x0 = ddpm_step(denoise, schedule, x, step, generator, clip)
        if on_step:
            on_step(i + 1, total, x0)
    return x


def ddim_timesteps(total: int, steps: int) -> list[int]:
    """`steps` evenly spaced training timesteps, high to low, ending at t=0 ("leading" spacing,
    as in the DDIM paper): the first step is T - T/steps, not T - 1, because at the very last
    cosine timestep abar is ~1e-9 and eps -> x0 amplifies any error in eps by 1/sqrt(abar)."""
    if not 1 <= steps <= total:
        raise InputError(f"Steps must be 1 to {total} for this model.")
    return [int(i * total / steps) for i in reversed(range(steps))]


def ddim_step(
    denoise: Denoise,
    schedule: Schedule,
    x: torch.Tensor,
    step: int,
    prev: int,
    generator: torch.Generator,
    *,
    eta: float = 0.0,
    clip: float | None = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step from timestep `step` to `prev` (-1: the clean image); (x_prev, x0)."""
    t = torch.full((x.shape[0],), step, dtype=torch.long)
    abar, abar_prev = schedule.abar(t)[0], schedule.abar(torch.tensor([prev]))[0]
    eps = denoise(x, t)
    x0 = _predict_x0(x, eps, abar, clip)
    if clip:  # recompute eps from the clipped x0 so the step stays consistent
        eps = (x - abar.sqrt() * x0) / (1 - abar).sqrt()
    sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()
    x = abar_prev.sqrt() * x0 + (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps
    if eta > 0 and prev >= 0:
        x = x + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return x, x0


def ddim_sample(
    denoise: Denoise,
    schedule: Schedule,
    noise: torch.Tensor,
    generator: torch.Generator,
    *,
    steps: int = 50,
    eta: float = 0.0,
    clip: float | None = 1.0,
    on_step: OnStep | None = None,
) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12): eta=0 is deterministic, eta=1 matches DDPM's noise."""
    if not 0.0 <= eta <= 1.0:
        raise InputError(f"DDIM eta must be between 0 and 1, not {eta}.")
    x = noise
    ts = ddim_timesteps(schedule.timesteps, steps)
    for i, step in enumerate(ts):
        prev = ts[i + 1] if i + 1 < len(ts) else -1
        x, x0 = ddim_step(denoise, schedule, x, step, prev, generator, eta=eta, clip=clip)
        if on_step:
            on_step(i + 1, len(ts), x0)
    return x


class GuidedDenoiser:
    """Classifier-free guidance: eps_u + scale * (eps_c - eps_u), one UNet call per step.

    `cond`/`uncond` are what `UNet.forward` takes (None = the learned null condition); the
    negative prompt, when given, is the unconditional branch. `calls` counts UNet evaluations.
    """

    def __init__(self, model: UNet, cond, uncond, scale: float):
        self.model, self.cond, self.uncond, self.scale = model, cond, uncond, scale
        self.calls = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.model.config.conditioning == "none" or self.scale == 1.0:
            return self.model(x, t, self.cond)
        n = x.shape[0]
        cond = self.model.condition_or_null(self.cond, n)
        uncond = self.model.condition_or_null(self.uncond, n)
        both = self.model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, uncond]))
        eps_c, eps_u = both[:n], both[n:]
        return eps_u + self.scale * (eps_c - eps_u)


# --------------------------------------------------------------------------------------------
# 4. Choosing a sampler from a request


def sample(
    model: UNet,
    schedule: Schedule,
    shape: tuple[int, ...],
    generator: torch.Generator,
    *,
    cond=None,
    uncond=None,
    guidance_scale: float = 1.0,
    sampler: str = "DDIM",
    steps: int = 20,
    eta: float = 0.0,
    clip: float | None = 1.0,
    on_step: OnStep | None = None,
) -> tuple[torch.Tensor, GuidedDenoiser]:
    """Draw samples of `shape`; returns them and the denoiser (its `calls` for the record)."""
    noise = torch.randn(shape, generator=generator)
    denoise = GuidedDenoiser(model, cond, uncond, guidance_scale)
    with torch.inference_mode():
        if sampler.upper() == "DDPM":
            x = ddpm_sample(denoise, schedule, noise, generator, clip=clip, on_step=on_step)
        elif sampler.upper() == "DDIM":
            x = ddim_sample(
                denoise,
                schedule,
                noise,
                generator,
                steps=steps,
                eta=eta,
                clip=clip,
                on_step=on_step,
            )
        else:
            raise InputError(
                f"The sampler '{sampler}' is not available for Easel's diffusion models; "
                "choose DDIM (fast, any number of steps) or DDPM (every timestep)."
            )
    return x, denoise


# --------------------------------------------------------------------------------------------
# 5. The model folder (`family: "ddpm"`) and generation for the engine

DEFAULTS: dict = {
    "resolution": 32,
    "channels": 3,
    "unet": {
        "base_channels": 32,
        "channel_mults": [1, 2, 2],
        "blocks_per_level": 1,
        "attention_levels": [2],
        "conditioning": "none",
    },
    "schedule": {"kind": "cosine", "timesteps": 1000},
    "classes": [],
    #: "auto" (class labels if the data has classes, else none), "none", "class" or "text"
    "conditioning": "auto",
    "text_encoder": "",  # "all-MiniLM-L6-v2" for text-conditioned models
    "prompt_template": "{}",
    "guidance_scale": 3.0,
    "steps": 20,
    "sampler": "DDIM",
    "learning_rate": 2e-4,
    "warmup_steps": 100,  # linear learning-rate warm-up
    "ema_decay": 0.999,  # samples come from the EMA weights
    "snr_gamma": 5.0,  # min-SNR loss weighting: faster convergence (Hang et al. 2023)
    "cond_drop": 0.15,  # share of conditions dropped in training, for classifier-free guidance
}
SAMPLERS = ("DDIM", "DDPM")
PREVIEW_EVERY = 5  # steps between previews (a preview costs a decode for latent models)


def unet_config(config: dict, in_channels: int) -> UNetConfig:
    return UNetConfig.from_dict({**config["unet"], "in_channels": in_channels})


def build(config: dict) -> UNet:
    return UNet(unet_config(config, int(config["channels"])))


def schedule_for(config: dict) -> Schedule:
    return Schedule(ScheduleConfig.from_dict(config["schedule"]))


def class_index(config: dict, value) -> int | None:
    """A class from an index or a name (case-insensitive); None for nothing given."""
    classes = [str(c) for c in config.get("classes") or []]
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(classes):
            raise InputError(f"Class label must be 0 to {len(classes) - 1} (got {index}).")
        return index
    lowered = [c.lower() for c in classes]
    if text.lower() not in lowered:
        raise InputError(f"Unknown class '{text}'. This model knows: {', '.join(classes)}.")
    return lowered.index(text.lower())


def conditions(model: UNet, config: dict, request) -> tuple:
    """(cond, uncond) for `GuidedDenoiser` from the prompt, negative prompt or class label."""
    kind = model.config.conditioning
    if kind == "text":
        from engine.text.minilm import shared_encoder

        template = config.get("prompt_template") or "{}"
        prompt, negative = request.prompt.strip(), request.negative_prompt.strip()
        encoder = shared_encoder() if prompt or negative else None
        cond = encoder.encode([template.format(prompt)]) if prompt else None
        uncond = encoder.encode([template.format(negative)]) if negative else None
        return cond, uncond
    if kind == "class":
        chosen = class_index(config, request.extras.get("class_label", request.prompt))
        avoid = class_index(config, request.negative_prompt)
        as_tensor = lambda i: None if i is None else torch.tensor([i])  # noqa: E731
        return as_tensor(chosen), as_tensor(avoid)
    return None, None


def sampler_options(config: dict, request) -> dict:
    """Sampler, steps, eta and guidance from the request (other samplers fall back to DDIM)."""
    from engine.families.common import float_extra

    name = request.sampler.upper() if request.sampler.upper() in SAMPLERS else "DDIM"
    return {
        "sampler": name,
        "steps": int(request.steps or config.get("steps", 20)),
        "eta": float_extra(request.extras, "eta", 0.0, low=0.0, high=1.0),
        "guidance_scale": float(request.guidance_scale),
    }


def settings_used(config: dict, request) -> dict:
    """What sampling really used, for the image's metadata (a request for "Euler a" runs DDIM)."""
    options = sampler_options(config, request)
    return {"sampler": options["sampler"], "steps": options["steps"]}


def sample_for_request(
    model: UNet,
    config: dict,
    request,
    ctx,
    *,
    latent_shape: tuple[int, ...],
    clip: float | None,
    decode=None,
) -> torch.Tensor:
    """Sample `request.batch_size` images (or latents) with progress, previews and cancel.

    Image i starts from the noise of seed + i (so with DDIM eta=0 it is the same picture as a
    single image with that seed); DDPM and eta>0 draw their fresh noise from `seed`.
    """
    from engine.families.common import batch_noise, generator_for, image_seeds, to_images

    options = sampler_options(config, request)
    cond, uncond = conditions(model, config, request)
    steps_total = (
        options["steps"] if options["sampler"] == "DDIM" else schedule_for(config).timesteps
    )
    if options["sampler"] == "DDIM" and not 1 <= options["steps"] <= steps_total:
        raise InputError("Steps must be at least 1.")

    def on_step(step: int, total: int, x0: torch.Tensor) -> None:
        ctx.check_cancelled()
        ctx.progress(step, total)
        if decode is not None and (step % PREVIEW_EVERY == 0) and step < total:
            ctx.preview(to_images(decode(x0[:1]))[0])

    noise = batch_noise(latent_shape, image_seeds(request.seed, request.batch_size))
    denoise = GuidedDenoiser(model, cond, uncond, options["guidance_scale"])
    generator = generator_for(request.seed)
    schedule = schedule_for(config)
    if options["sampler"] == "DDPM":
        return ddpm_sample(denoise, schedule, noise, generator, clip=clip, on_step=on_step)
    return ddim_sample(
        denoise,
        schedule,
        noise,
        generator,
        steps=options["steps"],
        eta=options["eta"],
        clip=clip,
        on_step=on_step,
    )


def generate(model: UNet, config: dict, request, ctx) -> list:
    from engine.api import Mode
    from engine.families.common import to_images

    if request.mode is not Mode.TXT2IMG:
        from engine.families.editing import Space, edit_pictures

        same = lambda x: x  # noqa: E731 - pixel space: nothing to encode
        return edit_pictures(model, config, request, ctx, Space(same, same, clip=1.0))
    r, c = int(config["resolution"]), int(config["channels"])
    x = sample_for_request(
        model, config, request, ctx, latent_shape=(c, r, r), clip=1.0, decode=lambda x0: x0
    )
    return to_images(x)
