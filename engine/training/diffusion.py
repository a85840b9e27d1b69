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
import torch.nn.functional as F

from engine.errors import InputError
from engine.families.ddpm import Schedule, UNet
from engine.families.ldm import Autoencoder
from engine.training.base import warmed_up_decay


@dataclass
class OptimConfig:
    lr: float = 2e-4
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    cond_drop: float = 0.15
    grad_clip: float = 1.0
    warmup_steps: int = 200
    #: min-SNR-gamma loss weighting (Hang et al. 2023); None is the plain DDPM objective
    snr_gamma: float | None = None
    #: a cool-down (warmup-stable-decay, Hagele et al. 2024): the learning rate falls linearly to
    #: zero over the `decay_steps` steps that end at step `decay_end`; None keeps it constant.
    #: A constant rate leaves the weights bouncing around the minimum (the EMA only averages
    #: that); the cool-down is what settles them
    decay_steps: int | None = None
    decay_end: int | None = None

    def lr_factor(self, step: int, warmup_from: int = 0) -> float:
        """The share of `lr` used at optimiser step `step` (counted from 0)."""
        factor = min(1.0, (step - warmup_from + 1) / max(1, self.warmup_steps))
        if self.decay_steps and self.decay_end is not None:
            left = self.decay_end - step
            factor *= min(1.0, max(0.0, left / self.decay_steps))
        return factor


def diffusion_loss(
    model: UNet,
    schedule: Schedule,
    x0: torch.Tensor,
    cond: torch.Tensor | None,
    generator: torch.Generator | None = None,
    snr_gamma: float | None = None,
) -> torch.Tensor:
    """MSE between the true and the predicted noise at a random t (Ho et al. 2020).

    With `snr_gamma`, each sample is weighted by min(SNR, gamma) / SNR: the near-clean
    timesteps, whose noise is easy to predict but which dominate the plain objective's
    gradient, count less, and the noisy ones that decide the picture's layout count more.
    Hang et al. (2023) measured about 3x faster convergence with gamma = 5.
    """
    t = torch.randint(0, schedule.timesteps, (x0.shape[0],), generator=generator)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    predicted = model(schedule.add_noise(x0, noise, t), t, cond)
    if snr_gamma is None:
        return F.mse_loss(predicted, noise)
    per_sample = (predicted - noise).pow(2).flatten(1).mean(1)
    abar = schedule.abar(t).to(per_sample)
    snr = abar / (1 - abar)
    return (per_sample * snr.clamp(max=snr_gamma) / snr).mean()


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
        #: the step the learning-rate warm-up counts from (a run continued with a fresh optimiser
        #: warms up again: Adam's first steps are full-size whatever the gradient's scale)
        self.warmup_from = 0

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
        factor = self.optim.lr_factor(self.steps_done, self.warmup_from)
        for group in self.optimizer.param_groups:
            group["lr"] = self.optim.lr * factor
        loss = diffusion_loss(
            self.model,
            self.schedule,
            x0,
            self.drop_conditions(cond),
            self.generator,
            self.optim.snr_gamma,
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
        decay = warmed_up_decay(self.optim.ema_decay, self.steps_done)
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


# --------------------------------------------------------------------------------------------
# Trainers for the shared training runner (`easel train --family ddpm|ldm`)

from engine.training.base import Trainer  # noqa: E402

GRID_STEPS = 20  # DDIM steps for the sample grids shown during training


def resolve_conditioning(config: dict) -> dict:
    """Fill the UNet's conditioning from the top-level `conditioning` setting and the data.

    "auto" means class labels when the folder has class subfolders, else unconditional; text
    conditioning (MiniLM) is asked for explicitly (`--set conditioning=text`) and needs captions.
    """
    config = {**config, "unet": dict(config["unet"])}
    kind = str(config.get("conditioning", "auto"))
    if kind == "auto":
        kind = "class" if config.get("classes") else "none"
    if kind not in ("none", "class", "text"):
        raise InputError(f"Unknown conditioning '{kind}': use auto, none, class or text.")
    if kind == "class" and not config.get("classes"):
        raise InputError("Class conditioning needs class subfolders in the training folder.")
    config["conditioning"] = kind
    config["unet"]["conditioning"] = kind
    config["unet"]["num_classes"] = len(config.get("classes") or [])
    if kind == "text":
        from engine.text.minilm import EMBEDDING_DIM

        config["unet"]["cond_dim"] = EMBEDDING_DIM
        config["text_encoder"] = "all-MiniLM-L6-v2"
    return config


def decay_steps_setting(config: dict) -> int | None:
    """The `lr_decay_steps` setting, checked: a whole number of steps above 0, or None (off)."""
    value = config.get("lr_decay_steps")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(
            f"lr_decay_steps must be a whole number of steps above 0 (got {value!r}): the "
            "learning rate then falls to 0 over the run's last that many steps. Leave it out "
            "to keep the rate constant."
        )
    return value


class DDPMTrainer(Trainer):
    """Pixel-space diffusion: the epsilon objective on the images themselves."""

    default_lr = 2e-4

    def __init__(self, request, config: dict, device):
        super().__init__(request, resolve_conditioning(config), device)
        from engine.families import ddpm

        self.unet = ddpm.UNet(ddpm.unet_config(self.config, self.model_channels())).to(device)
        self.schedule = ddpm.schedule_for(self.config)
        optim = OptimConfig(
            lr=self.lr,
            ema_decay=float(self.config.get("ema_decay", 0.999)),
            cond_drop=float(self.config.get("cond_drop", 0.15)),
            warmup_steps=int(self.config.get("warmup_steps", 100)),
            snr_gamma=self.config.get("snr_gamma"),
            decay_steps=decay_steps_setting(self.config),
        )
        self.stepper = UNetStepper(self.unet, self.schedule, optim)
        self.stepper.generator = self.generator  # one training stream, saved with the state
        self.modules = {"unet": self.unet, "ema": self.stepper.ema}
        self.optimizers = {"unet": self.stepper.optimizer}
        self.unet_first_step = 0  # the LDM trains its autoencoder first
        self._embeddings: dict[str, torch.Tensor] = {}
        self._grid_conditions: torch.Tensor | None = None

    def model_channels(self) -> int:
        return int(self.config["channels"])

    def conditions(self, batch) -> torch.Tensor | None:
        kind = self.config["conditioning"]
        if kind == "class":
            return batch.labels
        if kind != "text":
            return None
        if not batch.captions:
            raise InputError(
                "Text conditioning needs a caption per picture (a .txt file beside each image, "
                "or captions.txt); add them or train with --set conditioning=auto."
            )
        return self.embed(batch.captions)

    def embed(self, captions: list[str]) -> torch.Tensor:
        from engine.text.minilm import shared_encoder

        missing = [c for c in dict.fromkeys(captions) if c not in self._embeddings]
        if missing:
            self._embeddings.update(zip(missing, shared_encoder().encode(missing), strict=True))
        return torch.stack([self._embeddings[c] for c in captions]).to(self.device)

    def to_model_space(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def train_step(self, batch) -> dict:
        cond = self.conditions(batch)
        if self._grid_conditions is None and cond is not None:
            self._grid_conditions = cond[: self.grid_size].detach().clone()
        self.stepper.steps_done = self.step - self.unet_first_step
        # the cool-down ends with the run (a resume asked for more steps moves it)
        self.stepper.optim.decay_end = int(self.request.steps) - self.unet_first_step
        return self.stepper.step(self.to_model_space(batch.images), cond)

    def grid_conditions(self) -> torch.Tensor | None:
        if self.config["conditioning"] == "class":
            count = len(self.config["classes"])
            return torch.arange(self.grid_size) % count
        return self._grid_conditions

    @torch.no_grad()
    def sample_grid(self, generator: torch.Generator):
        from engine.families.ddpm import GuidedDenoiser, ddim_sample

        cond = self.grid_conditions()
        count = self.grid_size if cond is None else len(cond)
        noise = torch.randn((count, *self.sample_shape()), generator=generator).to(self.device)
        scale = float(self.config.get("guidance_scale", 3.0)) if cond is not None else 1.0
        denoise = GuidedDenoiser(self.stepper.ema, cond, None, scale)
        x = ddim_sample(
            denoise, self.schedule, noise, generator, steps=GRID_STEPS, clip=self.clip()
        )
        return self.grid(self.to_pixels(x))

    def sample_shape(self) -> tuple[int, ...]:
        r = int(self.config["resolution"])
        return (int(self.config["channels"]), r, r)

    def clip(self) -> float | None:
        return 1.0

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def export(self):
        return dict(self.stepper.ema.state_dict()), self.config


class LDMTrainer(DDPMTrainer):
    """Latent diffusion: `ae_steps` steps train the autoencoder, then the UNet on its latents."""

    default_lr = 5e-4

    def __init__(self, request, config: dict, device):
        from engine.families.ldm import Autoencoder, AutoencoderConfig

        ae_config = AutoencoderConfig.from_dict(config["autoencoder"])
        self._latent_channels = ae_config.latent_channels
        super().__init__(request, config, device)
        self.autoencoder = Autoencoder(ae_config).to(device)
        ae_lr = float(self.config.get("ae_learning_rate", 1e-3))
        self.ae_stepper = AutoencoderStepper(self.autoencoder, lr=ae_lr)
        self.ae_stepper.generator = self.generator
        self.modules["autoencoder"] = self.autoencoder
        self.optimizers["autoencoder"] = self.ae_stepper.optimizer
        self.ae_steps = self.unet_first_step = int(self.config.get("ae_steps", 500))
        self.latent_scale = float(self.config.get("latent_scale", 1.0))
        self._scale_measured = False
        self.decoder_stepper = self._decoder_stepper()

    def _decoder_stepper(self):
        """While the UNet trains, the decoder keeps learning on the frozen encoder's latents
        (engine.training.decoder_tuning): sharper pictures from the same latent space."""
        from engine.training.decoder_tuning import DecoderStepper, DecoderTuning

        edge_weight = self.config.get("decoder_tuning_edge_weight")
        if edge_weight is None:  # off (the default): the decoder stops with the encoder
            return None
        steps = max(1, int(self.request.steps) - self.ae_steps)
        tuning = DecoderTuning(steps=steps, edge_weight=float(edge_weight))
        stepper = DecoderStepper(self.autoencoder, tuning)
        stepper.generator = self.generator  # one training stream, saved with the state
        self.modules["decoder_ema"] = stepper.ema
        self.optimizers["decoder"] = stepper.optimizer
        return stepper

    def model_channels(self) -> int:
        return self._latent_channels

    def train_step(self, batch) -> dict:
        if self.step < self.ae_steps:
            out = self.ae_stepper.step(batch.images)
            return {"loss": out["loss"], "autoencoder_l1": out["l1"]}
        if not self._scale_measured:
            # unit-variance latents, measured once the autoencoder is frozen (SD's 0.18215)
            self.autoencoder.eval().requires_grad_(False)
            mean, _ = self.autoencoder.encode(batch.images)
            self.latent_scale = float(1.0 / mean.std().clamp(min=1e-6))
            self._scale_measured = True
        out = {"loss": super().train_step(batch)["loss"]}
        if self.decoder_stepper is not None:
            self.decoder_stepper.steps_done = self.step - self.ae_steps
            out["decoder_loss"] = self.decoder_stepper.step(batch.images)["loss"]
        return out

    def to_model_space(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.autoencoder.encode(images)[0] * self.latent_scale

    def sample_shape(self) -> tuple[int, ...]:
        side = int(self.config["resolution"]) // self.autoencoder.config.downscale
        return (self._latent_channels, side, side)

    def clip(self) -> float | None:
        return float(self.config.get("latent_clip", 6.0))

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.decode(x / self.latent_scale)

    def counters(self) -> dict:
        return {"latent_scale": self.latent_scale, "scale_measured": self._scale_measured}

    def load_counters(self, counters: dict) -> None:
        self.latent_scale = float(counters.get("latent_scale", self.latent_scale))
        self._scale_measured = bool(counters.get("scale_measured", False))
        if self._scale_measured:
            self.autoencoder.eval().requires_grad_(False)

    def export(self):
        state = {f"unet.{k}": v for k, v in self.stepper.ema.state_dict().items()}
        state.update({f"autoencoder.{k}": v for k, v in self.autoencoder.state_dict().items()})
        if self.decoder_stepper is not None and self.decoder_stepper.steps_done > 0:
            decoder = self.decoder_stepper.ema.state_dict()  # the averaged, tuned decoder
            state.update({f"autoencoder.decoder.{k}": v for k, v in decoder.items()})
        return state, {**self.config, "latent_scale": self.latent_scale}
