"""StyleGAN training: non-saturating logistic loss, lazy R1 on reals, style-mixing
regularisation, and an EMA copy of the generator that is what gets sampled and exported.

Losses (StyleGAN2, arXiv:1912.04958, appendix B): g_loss = softplus(-D(G(z))),
d_loss = softplus(D(G(z))) + softplus(-D(x)), plus gamma/2 * E||grad_x D(x)||^2 (R1, Mescheder
et al. 2018, arXiv:1801.04406) computed every `r1_every` steps and scaled up to match (lazy
regularisation, StyleGAN2 section 3.1). Adam betas (0, 0.99); the mapping network's lower
learning rate sits in its equalised layers.
"""

from __future__ import annotations

import torch

from engine.families import stylegan
from engine.training.base import EMA, Trainer
from engine.training.gan import d_loss_nonsaturating, g_loss_nonsaturating

W_AVG_DECAY = 0.995  # running mean of w for the truncation trick (StyleGAN2 code default)


class StyleGANTrainer(Trainer):
    default_lr = 2e-3

    def __init__(self, request, config, device):
        super().__init__(request, config, device)
        stylegan.check_config(config)
        self.generator_net = stylegan.Generator(config).to(self.device).train()
        self.discriminator = stylegan.Discriminator(config).to(self.device).train()
        self.ema = EMA(self.generator_net, decay=0.0)
        self.r1_gamma = float(config["r1_gamma"])
        self.r1_every = max(1, int(config["r1_every"]))
        self.mixing_prob = float(config["mixing_prob"])
        self.modules = {
            "generator": self.generator_net,
            "discriminator": self.discriminator,
            "generator_ema": self.ema.module,
        }
        self.optimizers = {
            "generator": self.adam(self.generator_net, betas=(0.0, 0.99)),
            "discriminator": self.adam(self.discriminator, betas=(0.0, 0.99)),
        }

    def noise(self, shape):
        return self.randn(*shape)

    def fake_images(self, count: int) -> torch.Tensor:
        """G(z), with two latents mixed at a random layer for `mixing_prob` of the batches."""
        g = self.generator_net
        z = self.randn(count, g.z_dim)
        mix_z, mix_layer = None, None
        if float(torch.rand((), generator=self.generator)) < self.mixing_prob:
            mix_z = self.randn(count, g.z_dim)
            mix_layer = int(torch.randint(1, g.num_ws, (), generator=self.generator))
        ws = g.styles(z, mix_z=mix_z, mix_layer=mix_layer)
        with torch.no_grad():  # track mean w for truncation
            g.mapping.w_avg.lerp_(ws[:, 0].mean(0), 1.0 - W_AVG_DECAY)
        return g.synthesis(ws, self.noise)

    def train_step(self, batch) -> dict[str, float]:
        real = batch.images
        fake = self.fake_images(real.shape[0])

        d_loss = d_loss_nonsaturating(self.discriminator(real), self.discriminator(fake.detach()))
        r1 = torch.zeros((), device=self.device)
        if self.r1_gamma > 0 and self.step % self.r1_every == 0:
            r1 = self.r1_penalty(real)
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        (d_loss + r1 * (self.r1_gamma / 2) * self.r1_every).backward()
        self.optimizers["discriminator"].step()

        g_loss = g_loss_nonsaturating(self.discriminator(fake))
        self.optimizers["generator"].zero_grad(set_to_none=True)
        g_loss.backward()
        self.optimizers["generator"].step()
        self.ema.decay = self.ema_decay(real.shape[0])
        self.ema.update(self.generator_net)
        d, g = d_loss.item(), g_loss.item()
        return {"loss": d + g, "d_loss": d, "g_loss": g, "r1": r1.item()}

    def r1_penalty(self, real: torch.Tensor) -> torch.Tensor:
        """E ||grad_x D(x)||^2 on real pictures (Mescheder et al. 2018, eq. 9)."""
        real = real.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.discriminator(real).sum(), real, create_graph=True)
        return grad.pow(2).flatten(1).sum(1).mean()

    @torch.no_grad()
    def sample_grid(self, generator: torch.Generator):
        g = self.ema.module
        z = self.randn(self.grid_size, g.z_dim, generator=generator)

        def noise(shape):
            return self.randn(*shape, generator=generator)

        return self.grid(g(z, noise).clamp(-1, 1))

    def export(self):
        return self.ema.module.state_dict(), dict(self.config)
