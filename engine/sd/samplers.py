"""Sampler names as users know them (A1111's) mapped to diffusers schedulers.

Every job builds a fresh scheduler with `from_config(pipe.scheduler.config, ...)`: the model's
own config supplies the noise schedule and prediction type (epsilon or v-prediction), the entry
below only chooses the solver. Schedulers keep per-run state, so one is never shared by two jobs.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from engine.api import SAMPLERS
from engine.errors import InputError


@dataclass(frozen=True)
class SamplerSpec:
    scheduler_class: str  # name in the `diffusers` package
    options: dict[str, Any] = field(default_factory=dict)
    #: the scheduler draws noise from a Brownian tree seeded at construction
    needs_noise_seed: bool = False


_KARRAS_OFF = {"use_karras_sigmas": False}

SAMPLER_SPECS: dict[str, SamplerSpec] = {
    "Euler": SamplerSpec("EulerDiscreteScheduler", _KARRAS_OFF),
    "Euler a": SamplerSpec("EulerAncestralDiscreteScheduler"),
    "DPM++ 2M": SamplerSpec(
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, **_KARRAS_OFF},
    ),
    "DPM++ 2M Karras": SamplerSpec(
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "DPM++ SDE Karras": SamplerSpec(
        "DPMSolverSDEScheduler", {"use_karras_sigmas": True}, needs_noise_seed=True
    ),
    "DDIM": SamplerSpec("DDIMScheduler"),
    "DDPM": SamplerSpec("DDPMScheduler"),
    "PNDM": SamplerSpec("PNDMScheduler", {"skip_prk_steps": True}),
    "LMS": SamplerSpec("LMSDiscreteScheduler", _KARRAS_OFF),
    "UniPC": SamplerSpec("UniPCMultistepScheduler"),
    "LCM": SamplerSpec("LCMScheduler"),
}


def make_scheduler(
    name: str,
    base_config: Any,
    *,
    seeds: list[int] | None = None,
    overrides: dict[str, Any] | None = None,
):
    """A new scheduler for sampler `name`, configured from the model's own scheduler config.

    `seeds` (one per image) seed the SDE sampler's Brownian noise so image i of a batch is
    reproducible on its own, as the latents are. `overrides` change the model's config (a
    few-step model's trailing timestep spacing).
    """
    spec = SAMPLER_SPECS.get(name)
    if spec is None:
        raise InputError(f"Unknown sampler '{name}'. Choose one of: {', '.join(SAMPLERS)}.")
    import diffusers

    scheduler_class = getattr(diffusers, spec.scheduler_class)
    # Keep only what this scheduler takes: the model's config was written for another class
    # (PNDM's skip_prk_steps, say), and diffusers would print a warning for every extra key.
    accepted = inspect.signature(scheduler_class.__init__).parameters
    config = {k: v for k, v in {**dict(base_config), **(overrides or {})}.items() if k in accepted}
    options = dict(spec.options)
    if spec.needs_noise_seed and seeds is not None:
        options["noise_sampler_seed"] = list(seeds)
    return scheduler_class.from_config(config, **options)
