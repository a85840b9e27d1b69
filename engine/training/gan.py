"""DCGAN training: alternate discriminator and generator steps with the non-saturating loss.

Goodfellow et al. 2014 (arXiv:1406.2661), section 3: the generator maximises log D(G(z)) rather
than minimising log(1 - D(G(z))), which gives strong gradients early on. With logits s,
-log sigmoid(s) = softplus(-s), so: d_loss = softplus(-D(x)) + softplus(D(G(z))),
g_loss = softplus(-D(G(z))). Adam with lr 2e-4 and beta1 0.5 (Radford et al. 2015).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.families import dcgan
from engine.training.base import EMA, Trainer


def d_loss_nonsaturating(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_loss_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake_logits).mean()


class DCGANTrainer(Trainer):
    default_lr = 2e-4

    def __init__(self, request, config, device):
        # runs started before the generator EMA existed resume with the default half-life
        config = {**dcgan.DEFAULTS, **config}
        super().__init__(request, config, device)
        dcgan.check_config(config)
        self.generator_net = dcgan.Generator(config).to(self.device).train()
        self.discriminator = dcgan.Discriminator(config).to(self.device).train()
        self.num_classes = len(config.get("classes") or [])
        self.z_dim = int(config["z_dim"])
        self.ema = EMA(self.generator_net, decay=0.0)
        self.modules = {
            "generator": self.generator_net,
            "discriminator": self.discriminator,
            "generator_ema": self.ema.module,
        }
        self.optimizers = {
            "generator": self.adam(self.generator_net),
            "discriminator": self.adam(self.discriminator),
        }

    def train_step(self, batch) -> dict[str, float]:
        real = batch.images
        labels = batch.labels if self.num_classes else None
        z = self.randn(real.shape[0], self.z_dim)
        fake = self.generator_net(z, labels)

        # discriminator: real -> 1, fake -> 0 (fake detached: no generator gradient here)
        d_loss = d_loss_nonsaturating(
            self.discriminator(real, labels), self.discriminator(fake.detach(), labels)
        )
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        d_loss.backward()
        self.optimizers["discriminator"].step()

        # generator: make the (just updated) discriminator call the fakes real
        g_loss = g_loss_nonsaturating(self.discriminator(fake, labels))
        self.optimizers["generator"].zero_grad(set_to_none=True)
        g_loss.backward()
        self.optimizers["generator"].step()
        self.ema.decay = self.ema_decay(real.shape[0])
        self.ema.update(self.generator_net)
        d, g = d_loss.item(), g_loss.item()
        return {"loss": d + g, "d_loss": d, "g_loss": g}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if not any(k.startswith("module.generator_ema.") for k in tensors):
            # a checkpoint from before the EMA: start the average at the saved generator
            prefix = "module.generator."
            tensors = tensors | {
                "module.generator_ema." + k.removeprefix(prefix): v
                for k, v in tensors.items()
                if k.startswith(prefix)
            }
        super().load_state_tensors(tensors)

    @torch.no_grad()
    def sample(self, generator: torch.Generator, count: int) -> torch.Tensor:
        z = self.randn(count, self.z_dim, generator=generator)
        labels = None
        if self.num_classes:
            labels = torch.arange(count, device=self.device) % self.num_classes
        return self.ema.module(z, labels)

    def sample_grid(self, generator: torch.Generator):
        return self.grid(self.sample(generator, self.grid_size))

    def export(self):
        return self.ema.module.state_dict(), dict(self.config)
