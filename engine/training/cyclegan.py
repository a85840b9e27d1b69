"""CycleGAN training (Zhu et al. 2017, arXiv:1703.10593, sections 3-4).

Per step, with G: A -> B and F: B -> A:
- adversarial (least squares, section 4 "Training details"): G wants D_B(G(a)) -> 1, D_B wants
  D_B(b) -> 1 and D_B(G(a)) -> 0; the same for F and D_A;
- cycle consistency (eq. 2): lambda_cycle * (|F(G(a)) - a|_1 + |G(F(b)) - b|_1);
- identity (section 5.2): lambda_identity * lambda_cycle * (|G(b) - b|_1 + |F(a) - a|_1), which
  keeps colours when no change is needed.
Discriminators see a history of 50 generated pictures rather than only the latest
(Shrivastava et al. 2017), and their loss is halved to slow them relative to the generators.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.families import cyclegan
from engine.training.base import Trainer

PREVIEW_COUNT = 4


def lsgan_loss(prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """Least-squares GAN loss (Mao et al. 2017): (D(x) - target)^2."""
    target = torch.ones_like(prediction) if target_is_real else torch.zeros_like(prediction)
    return F.mse_loss(prediction, target)


class ImagePool:
    """Keeps up to `size` generated pictures; each query returns, per picture, either it or
    (with probability 1/2, once full) a stored older one that it replaces."""

    def __init__(self, size: int, generator: torch.Generator):
        self.size = size
        self.generator = generator
        self.images: torch.Tensor | None = None

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size <= 0:
            return images
        out = []
        for image in images.detach():
            stored = 0 if self.images is None else self.images.shape[0]
            if stored < self.size:
                self.images = (
                    image[None] if self.images is None else torch.cat([self.images, image[None]])
                )
                out.append(image)
            elif float(torch.rand((), generator=self.generator)) < 0.5:
                index = int(torch.randint(self.size, (), generator=self.generator))
                out.append(self.images[index].clone())
                self.images[index] = image
            else:
                out.append(image)
        return torch.stack(out)


class CycleGANTrainer(Trainer):
    default_lr = 2e-4

    def __init__(self, request, config, device):
        super().__init__(request, config, device)
        self.model = cyclegan.CycleGAN(config).to(self.device).train()
        self.d_a = cyclegan.PatchDiscriminator(config).to(self.device).train()
        self.d_b = cyclegan.PatchDiscriminator(config).to(self.device).train()
        self.lambda_cycle = float(config["lambda_cycle"])
        self.lambda_identity = float(config["lambda_identity"])
        self.pool_a = ImagePool(int(config["pool_size"]), self.generator)
        self.pool_b = ImagePool(int(config["pool_size"]), self.generator)
        self.preview: dict[str, torch.Tensor] = {}
        self.modules = {"generators": self.model, "d_a": self.d_a, "d_b": self.d_b}
        self.optimizers = {
            "generators": self.adam(self.model),
            "discriminators": torch.optim.Adam(
                list(self.d_a.parameters()) + list(self.d_b.parameters()),
                lr=self.lr,
                betas=(0.5, 0.999),
            ),
        }

    def train_step(self, batch) -> dict[str, float]:
        real_a, real_b = batch.images, batch.images_b
        if not self.preview:  # the first batch is the fixed preview set for every grid
            self.preview = {
                "a": real_a[:PREVIEW_COUNT].clone(),
                "b": real_b[:PREVIEW_COUNT].clone(),
            }
        g, f = self.model.a_to_b, self.model.b_to_a

        # generators (discriminators frozen so no gradient is wasted on them)
        self.d_a.requires_grad_(False)
        self.d_b.requires_grad_(False)
        fake_b, fake_a = g(real_a), f(real_b)
        adversarial = lsgan_loss(self.d_b(fake_b), True) + lsgan_loss(self.d_a(fake_a), True)
        cycle = F.l1_loss(f(fake_b), real_a) + F.l1_loss(g(fake_a), real_b)
        identity = torch.zeros((), device=self.device)
        if self.lambda_identity > 0:
            identity = F.l1_loss(g(real_b), real_b) + F.l1_loss(f(real_a), real_a)
        g_loss = adversarial + self.lambda_cycle * (cycle + self.lambda_identity * identity)
        self.optimizers["generators"].zero_grad(set_to_none=True)
        g_loss.backward()
        self.optimizers["generators"].step()

        # discriminators on real pictures and on the history of fakes
        self.d_a.requires_grad_(True)
        self.d_b.requires_grad_(True)
        old_b, old_a = self.pool_b.query(fake_b), self.pool_a.query(fake_a)
        d_b_loss = 0.5 * (lsgan_loss(self.d_b(real_b), True) + lsgan_loss(self.d_b(old_b), False))
        d_a_loss = 0.5 * (lsgan_loss(self.d_a(real_a), True) + lsgan_loss(self.d_a(old_a), False))
        self.optimizers["discriminators"].zero_grad(set_to_none=True)
        (d_a_loss + d_b_loss).backward()
        self.optimizers["discriminators"].step()
        return {
            "loss": g_loss.item(),
            "cycle": cycle.item(),
            "identity": identity.item(),
            "g_adversarial": adversarial.item(),
            "d_loss": (d_a_loss + d_b_loss).item(),
        }

    @torch.no_grad()
    def sample_grid(self, generator: torch.Generator):
        """Rows: A pictures, their B translations, B pictures, their A translations."""
        del generator  # translation is deterministic
        if not self.preview:
            return self.grid(torch.zeros(1, int(self.config["channels"]), 8, 8))
        a, b = self.preview["a"], self.preview["b"]
        self.model.eval()
        try:
            rows = [a, self.model.a_to_b(a), b, self.model.b_to_a(b)]
        finally:
            self.model.train()
        from engine.families.common import make_grid, to_images

        return make_grid(to_images(torch.cat(rows).clamp(-1, 1)), columns=a.shape[0])

    def state_tensors(self):
        tensors = super().state_tensors()
        for name, pool in (("a", self.pool_a), ("b", self.pool_b)):
            if pool.images is not None:
                tensors[f"pool.{name}"] = pool.images
        for name, images in self.preview.items():
            tensors[f"preview.{name}"] = images
        return tensors

    def load_state_tensors(self, tensors):
        super().load_state_tensors(tensors)
        for name, pool in (("a", self.pool_a), ("b", self.pool_b)):
            if f"pool.{name}" in tensors:
                pool.images = tensors[f"pool.{name}"].to(self.device)
        self.preview = {
            k: tensors[f"preview.{k}"].to(self.device) for k in "ab" if f"preview.{k}" in tensors
        }

    def export(self):
        return self.model.state_dict(), dict(self.config)
