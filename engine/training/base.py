"""The Trainer protocol every family's trainer follows, and the bits they all share.

`runner.run_training` drives a trainer through: `__init__(request, config, device)`, then
`train_step(batch) -> {"loss": ..., other named losses}` per step, `sample_grid(generator)` every
N steps, `state_tensors()`/`load_state_tensors()` (+ `counters()`/`load_counters()`) to save and
resume, and `export() -> (state_dict, config)` for the model folder that `build(config)` loads.
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from engine.families.common import make_grid, to_images
from engine.training.checkpoint import (
    load_module_tensors,
    load_optimizer_tensors,
    module_tensors,
    optimizer_tensors,
)


class Trainer:
    """Base class: learning rate choice, a training noise generator, state save/load helpers.

    Subclasses list what to save in `modules` and `optimizers` (name -> object) and implement
    `train_step`, `sample_grid` and `export`. `loss_key` names the number shown as "loss".
    """

    default_lr = 2e-4
    grid_size = 16  # pictures in a sample grid

    def __init__(self, request, config: dict[str, Any], device: torch.device):
        self.request = request
        self.config = config
        self.device = torch.device(device)
        self.lr = float(request.learning_rate or config.get("learning_rate") or self.default_lr)
        # Training noise (latents, dropout-free GANs' z, reparameterisation) comes from our own
        # generator, so a run is repeatable and resumes on the same random stream.
        self.generator = torch.Generator().manual_seed(int(request.seed) + 1)
        self.modules: dict[str, torch.nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.step = 0

    # -- to implement -------------------------------------------------------------------------
    def train_step(self, batch) -> dict[str, float]:
        raise NotImplementedError

    def sample_grid(self, generator: torch.Generator) -> Image.Image:
        raise NotImplementedError

    def export(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        raise NotImplementedError

    # -- shared helpers ---------------------------------------------------------------------
    def randn(self, *shape: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Normal noise from the trainer's generator (CPU stream), moved to the device."""
        return torch.randn(shape, generator=generator or self.generator).to(self.device)

    def adam(self, module: torch.nn.Module, *, lr: float | None = None, betas=(0.5, 0.999)):
        return torch.optim.Adam(module.parameters(), lr=lr or self.lr, betas=betas)

    @staticmethod
    def grid(batch: torch.Tensor) -> Image.Image:
        return make_grid(to_images(batch))

    def state_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {"trainer.rng": self.generator.get_state()}
        for name, module in self.modules.items():
            tensors.update(module_tensors(module, f"module.{name}"))
        for name, optimizer in self.optimizers.items():
            tensors.update(optimizer_tensors(optimizer, f"optim.{name}"))
        return tensors

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(tensors["trainer.rng"].to(torch.uint8))
        for name, module in self.modules.items():
            load_module_tensors(module, tensors, f"module.{name}")
        for name, optimizer in self.optimizers.items():
            load_optimizer_tensors(optimizer, tensors, f"optim.{name}")

    def ema_decay(self, batch_size: int) -> float:
        """Decay for the config's generator EMA half-life in images (`ema_half_life_images`),
        shorter early on (`ema_rampup`, StyleGAN2-ADA) so the average is not stuck at init."""
        half_life = float(self.config["ema_half_life_images"])
        seen = (self.step + 1) * batch_size
        if float(self.config.get("ema_rampup", 0)) > 0:
            half_life = min(half_life, seen * float(self.config["ema_rampup"]))
        return 0.5 ** (batch_size / max(half_life, 1e-8))

    def counters(self) -> dict[str, Any]:
        """Plain numbers a trainer needs on resume besides tensors (e.g. an annealing step)."""
        return {}

    def load_counters(self, counters: dict[str, Any]) -> None:
        pass


def warmed_up_decay(decay: float, updates: int) -> float:
    """`decay`, shortened for an average's first updates ((1 + n) / (10 + n): 0.1, 0.18, ...)
    so it does not linger on the starting weights (the DDPM codebases' EMA warm-up)."""
    return min(decay, (1 + updates) / (10 + updates))


class EMA:
    """Exponential moving average of a module's weights (Karras et al. 2018, "Progressive
    growing", used for StyleGAN sampling): a smoother generator than the raw one."""

    def __init__(self, module: torch.nn.Module, decay: float):
        import copy

        self.decay = decay
        self.module = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        for ema_p, p in zip(self.module.parameters(), module.parameters(), strict=True):
            ema_p.lerp_(p.detach(), 1.0 - self.decay)
        for ema_b, b in zip(self.module.buffers(), module.buffers(), strict=True):
            ema_b.copy_(b)
