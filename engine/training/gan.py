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
from engine.training.base import Trainer


def d_loss_nonsaturating(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_loss_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake_logits).mean()


class DCGANTrainer(Trainer):
    default_lr = 2e-4

    def __init__(self, request, config, device):
        super().__init__(request, config, device)
        dcgan.check_config(config)
        self.generator_net = dcgan.Generator(config).to(self.device).train()
        self.discriminator = dcgan.Discriminator(config).to(self.device).train()
        self.num_classes = len(config.get("classes") or [])
        self.z_dim = int(config["z_dim"])
        self.modules = {"generator": self.generator_net, "discriminator": self.discriminator}
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
        d, g = d_loss.item(), g_loss.item()
        return {"loss": d + g, "d_loss": d, "g_loss": g}

    @torch.no_grad()
    def sample(self, generator: torch.Generator, count: int) -> torch.Tensor:
        z = self.randn(count, self.z_dim, generator=generator)
        labels = None
        if self.num_classes:
            labels = torch.arange(count, device=self.device) % self.num_classes
        self.generator_net.eval()
        try:
            return self.generator_net(z, labels)
        finally:
            self.generator_net.train()

    def sample_grid(self, generator: torch.Generator):
        return self.grid(self.sample(generator, self.grid_size))

    def export(self):
        return self.generator_net.state_dict(), dict(self.config)
