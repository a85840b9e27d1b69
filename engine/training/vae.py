"""VAE, beta-VAE and NVAE training: maximise the ELBO (minimise its negative).

Per image: loss = reconstruction + beta * KL. The reconstruction term is the negative Gaussian
log-likelihood with a fixed variance of 1/2, i.e. the summed squared error (up to a constant),
as in Kingma & Welling 2013; KL is analytic. NVAE (Vahdat & Kautz 2020, section 3.2 and
appendix) warms the KL weight up linearly over the first steps so the decoder learns to use the
latents before the KL term can switch them off ("posterior collapse"); Adamax-style Adam with
lr 1e-3 works for both at this scale.
"""

from __future__ import annotations

import torch

from engine.families import nvae, vae
from engine.training.base import Trainer


def reconstruction_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Summed squared error per image: -log N(x; x_hat, 1/2) up to a constant."""
    return (x - x_hat).pow(2).flatten(1).sum(1)


class VAETrainer(Trainer):
    default_lr = 1e-3

    def __init__(self, request, config, device):
        super().__init__(request, config, device)
        self.model = vae.VAE(config).to(self.device).train()
        self.beta = float(config["beta"])
        self.modules = {"vae": self.model}
        self.optimizers = {"vae": self.adam(self.model, betas=(0.9, 0.999))}

    def train_step(self, batch) -> dict[str, float]:
        x = batch.images
        eps = self.randn(x.shape[0], *self.model.latent_shape)
        x_hat, mu, logvar = self.model(x, eps)
        recon = reconstruction_error(x, x_hat).mean()
        kl = vae.kl_to_standard_normal(mu, logvar).mean()
        loss = recon + self.beta * kl
        self.optimizers["vae"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["vae"].step()
        return {"loss": loss.item(), "reconstruction": recon.item(), "kl": kl.item()}

    @torch.no_grad()
    def sample_grid(self, generator: torch.Generator):
        z = self.randn(self.grid_size, *self.model.latent_shape, generator=generator)
        self.model.eval()
        try:
            return self.grid(self.model.decode(z).clamp(-1, 1))
        finally:
            self.model.train()

    def export(self):
        return self.model.state_dict(), dict(self.config)


class NVAETrainer(Trainer):
    default_lr = 1e-3

    def __init__(self, request, config, device):
        super().__init__(request, config, device)
        self.model = nvae.NVAE(config).to(self.device).train()
        self.warmup_steps = int(config["kl_warmup_steps"])
        self.modules = {"nvae": self.model}
        self.optimizers = {"nvae": self.adam(self.model, betas=(0.9, 0.999))}

    def kl_weight(self) -> float:
        """Linear KL warm-up from a small weight to 1 (NVAE, section 3.2 / appendix A)."""
        if self.warmup_steps <= 0:
            return 1.0
        return max(1e-4, min(1.0, (self.step + 1) / self.warmup_steps))

    def train_step(self, batch) -> dict[str, float]:
        x = batch.images
        x_hat, kls = self.model(x, generator=self.generator)
        recon = reconstruction_error(x, x_hat).mean()
        kl = torch.stack([k.mean() for k in kls]).sum()
        loss = recon + self.kl_weight() * kl
        self.optimizers["nvae"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["nvae"].step()
        elbo = recon + kl  # the unweighted negative ELBO: what the warm-up converges to
        result = {"loss": loss.item(), "reconstruction": recon.item(), "kl": kl.item()}
        result["neg_elbo"] = elbo.item()
        return result

    @torch.no_grad()
    def sample_grid(self, generator: torch.Generator):
        self.model.eval()
        try:
            return self.grid(self.model.sample(self.grid_size, generator=generator).clamp(-1, 1))
        finally:
            self.model.train()

    def export(self):
        return self.model.state_dict(), dict(self.config)
