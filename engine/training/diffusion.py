"""Training for the diffusion families: the DDPM UNet (pixels or latents) and the LDM autoencoder.

The pieces are small steppers so one loop (the shared training runner, or the built-in models'
build script) can drive them: each `step(batch)` does one optimiser update and returns numbers to
log. The UNet stepper keeps an exponential moving average of the weights (EMA, as in Ho et al.
2020 and every diffusion codebase since): samples come from the EMA copy, which is far less noisy
than the raw weights after short training. Conditions are dropped (replaced by the learned null
condition) with probability `cond_drop` so the same network serves classifier-free guidance.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from engine.families.ddpm import Schedule, UNet, diffusion_loss
from engine.families.ldm import Autoencoder


@dataclass
class OptimConfig:
    lr: float = 2e-4
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    cond_drop: float = 0.15
    grad_clip: float = 1.0
    warmup_steps: int = 200


class UNetStepper:
    """One optimiser step of the epsilon objective, with condition dropout and EMA."""

    def __init__(self, model: UNet, schedule: Schedule, optim: OptimConfig, *, seed: int = 0):
        self.model = model.train()
        self.ema = copy.deepcopy(model).eval().requires_grad_(False)
        self.schedule = schedule
        self.optim = optim
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay
        )
        self.generator = torch.Generator().manual_seed(seed)
        self.steps_done = 0

    def drop_conditions(self, cond: torch.Tensor | None) -> torch.Tensor | None:
        """Replace a random `cond_drop` share of rows by the null condition (kept trainable)."""
        if cond is None or self.optim.cond_drop <= 0:
            return cond
        drop = torch.rand(cond.shape[0], generator=self.generator) < self.optim.cond_drop
        if self.model.config.conditioning == "class":
            return torch.where(drop, torch.full_like(cond, self.model.config.num_classes), cond)
        null = self.model.null_text.expand(cond.shape[0], -1)
        return torch.where(drop[:, None], null, cond)

    def step(self, x0: torch.Tensor, cond: torch.Tensor | None = None) -> dict:
        warmup = min(1.0, (self.steps_done + 1) / max(1, self.optim.warmup_steps))
        for group in self.optimizer.param_groups:
            group["lr"] = self.optim.lr * warmup
        loss = diffusion_loss(
            self.model, self.schedule, x0, self.drop_conditions(cond), self.generator
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.optim.grad_clip)
        self.optimizer.step()
        self.update_ema()
        self.steps_done += 1
        return {"loss": loss.item()}

    @torch.no_grad()
    def update_ema(self) -> None:
        # a short warm-up of the decay so the EMA is not stuck near the random init
        decay = min(self.optim.ema_decay, (1 + self.steps_done) / (10 + self.steps_done))
        for ema_p, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
            ema_p.lerp_(p.detach(), 1 - decay)

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "steps_done": self.steps_done,
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps_done = int(state["steps_done"])


class AutoencoderStepper:
    """One optimiser step of the LDM autoencoder (L1 + small KL)."""

    def __init__(self, model: Autoencoder, *, lr: float = 1e-3, seed: int = 0):
        self.model = model.train()
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        self.generator = torch.Generator().manual_seed(seed)
        self.steps_done = 0

    def step(self, images: torch.Tensor) -> dict:
        loss, parts = self.model.loss(images, self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.steps_done += 1
        return {"loss": loss.item(), **parts}


def random_crops(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Random `size` crops: the convolutional autoencoder learns the same kernels on crops at a
    fraction of the cost of whole images (it never sees absolute positions)."""
    n, _, h, w = images.shape
    if size >= h and size >= w:
        return images
    ys = torch.randint(0, h - size + 1, (n,), generator=generator).tolist()
    xs = torch.randint(0, w - size + 1, (n,), generator=generator).tolist()
    pairs = zip(images, ys, xs, strict=True)
    return torch.stack([img[:, y : y + size, x : x + size] for img, y, x in pairs])


@torch.no_grad()
def encode_latents(ae: Autoencoder, images: torch.Tensor, batch: int = 128) -> torch.Tensor:
    """Latent means of `images` (deterministic): what the latent UNet trains on."""
    ae.eval()
    return torch.cat([ae.encode(images[i : i + batch])[0] for i in range(0, len(images), batch)])
