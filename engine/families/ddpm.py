"""Denoising diffusion: a small UNet, noise schedules, DDPM and DDIM samplers, guidance.

Read top to bottom:
1. `UNet` (engine/families/ddpm_unet.py): predicts the noise eps of x_t, conditioned on the
   timestep and a class label or text embedding, with a learned null condition for
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
from dataclasses import dataclass, field

import torch

from engine.errors import InputError
from engine.families.ddpm_unet import UNet, UNetConfig

# --------------------------------------------------------------------------------------------
# 1. The UNet is in ddpm_unet.py (UNet, UNetConfig); imported here for the families that
#    build it through this module

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
    negative prompt, when given, is the unconditional branch. `guide` (engine.families.autoguide)
    also pushes away from a weaker copy of the model. `calls` counts denoising steps.
    """

    def __init__(self, model: UNet, cond, uncond, scale: float, guide=None):
        self.model, self.cond, self.uncond, self.scale = model, cond, uncond, scale
        self.guide = guide
        self.calls = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.model.config.conditioning == "none" or self.scale == 1.0:
            cond = self.cond
            eps_c = eps = self.model(x, t, cond)
        else:
            n = x.shape[0]
            cond = self.model.condition_or_null(self.cond, n)
            uncond = self.model.condition_or_null(self.uncond, n)
            both = self.model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, uncond]))
            eps_c, eps_u = both[:n], both[n:]
            eps = eps_u + self.scale * (eps_c - eps_u)
        if self.guide is None:
            return eps
        return self.guide.push(eps, eps_c, x, t, cond)


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
    #: the UNet's learning rate falls linearly to 0 over the run's last N steps (a cool-down,
    #: Hagele et al. 2024); None keeps it constant. Measured on emoji-ldm: docs/benchmarks.md
    "lr_decay_steps": None,
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


def conditions(model: UNet, config: dict, request, concepts=None) -> tuple:
    """(cond, uncond) for `GuidedDenoiser` from the prompt, negative prompt or class label;
    with the model's known `concepts` (engine.text.concepts), the prompt is steered to them."""
    kind = model.config.conditioning
    if kind == "text":
        from engine.text.concepts import steer_prompt
        from engine.text.minilm import shared_encoder

        template = config.get("prompt_template") or "{}"
        prompt, negative = request.prompt.strip(), request.negative_prompt.strip()
        encoder = shared_encoder() if prompt or negative else None
        cond = encoder.encode([template.format(prompt)]) if prompt else None
        uncond = encoder.encode([template.format(negative)]) if negative else None
        return steer_prompt(cond, concepts, config, request), uncond
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
    concepts=None,
    guide=None,
) -> torch.Tensor:
    """Sample `request.batch_size` images (or latents) with progress, previews and cancel;
    `guide`: engine.families.autoguide.Autoguide, or None.

    Image i starts from the noise of seed + i (so with DDIM eta=0 it is the same picture as a
    single image with that seed); DDPM and eta>0 draw their fresh noise from `seed`.
    """
    from engine.families.common import batch_noise, generator_for, image_seeds, to_images

    options = sampler_options(config, request)
    cond, uncond = conditions(model, config, request, concepts)
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
    denoise = GuidedDenoiser(model, cond, uncond, options["guidance_scale"], guide)
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
    from engine.families.autoguide import autoguide_for
    from engine.families.common import known_concepts, to_images

    concepts = known_concepts(model)
    guide = autoguide_for(model, config, request)
    if request.mode is not Mode.TXT2IMG:
        from engine.families.editing import Space, edit_pictures

        same = lambda x: x  # noqa: E731 - pixel space: nothing to encode
        space = Space(same, same, clip=1.0)
        return edit_pictures(model, config, request, ctx, space, concepts, guide)
    r, c = int(config["resolution"]), int(config["channels"])
    x = sample_for_request(
        model,
        config,
        request,
        ctx,
        latent_shape=(c, r, r),
        clip=1.0,
        decode=lambda x0: x0,
        concepts=concepts,
        guide=guide,
    )
    return to_images(x)
