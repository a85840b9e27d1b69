"""Training the DALL-E family (`easel train --family dalle`): two stages in one run.

1. Steps 0 .. `tokenizer_steps`: the VQ-VAE tokenizer (engine.families.dalle_vq) on random crops
   of the pictures: reconstruction + commitment loss, codebook by EMA with dead-code restarts.
2. Then the tokenizer is frozen, every picture (and its mirror image when flips are on) is
   tokenised once, and the transformer learns next-token prediction (cross-entropy) on
   [caption prefix | image tokens], the caption dropped `cond_drop` of the time for guidance.
   AdamW with a linear warm-up and a cosine decay to a tenth over the stage (Loshchilov & Hutter
   2017), weight decay on matrices only, as GPT-2 codebases do.

Captions: the picture's caption (a sidecar .txt), else its file name ("red_apple.png" -> "red
apple"); `caption_templates` wrap them ("an emoji of {}"). Everything random comes from the
trainer's generator, saved in the checkpoint, so a resumed run equals a straight one.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F

from engine.errors import InputError
from engine.training.base import Trainer


def caption_from_name(name: str) -> str:
    """'fruit/red_apple-2' -> 'red apple': the file name as words, a trailing number dropped."""
    stem = name.replace("\\", "/").rsplit("/", 1)[-1]
    words = re.sub(r"[_\-.]+", " ", stem)
    return re.sub(r"\s*\d+$", "", words).strip() or stem


class DalleTrainer(Trainer):
    default_lr = 5e-4
    grid_size = 16

    def __init__(self, request, config: dict, device):
        super().__init__(request, config, device)
        from engine.families.dalle import build, check_config

        check_config(self.config)
        self.model = build(self.config).to(self.device)
        self.tokenizer, self.transformer = self.model.tokenizer, self.model.transformer
        self.tokenizer_steps = int(self.config["tokenizer_steps"])
        self.optimizers = {
            "tokenizer": torch.optim.Adam(
                self.tokenizer.parameters(), lr=float(self.config["tokenizer_learning_rate"])
            ),
            "transformer": self._adamw(),
        }
        self.modules = {"model": self.model}
        self.text = str(self.config.get("conditioning", "text")) == "text"
        self.captions: list[str] = []
        self.tokens: torch.Tensor | None = None  # (N, T), and (N, T) mirrored when flipping
        self.mirrored: torch.Tensor | None = None
        self._data = None
        self._embeddings: dict[str, torch.Tensor] = {}
        self._last_images: torch.Tensor | None = None

    def _adamw(self) -> torch.optim.AdamW:
        decay = [p for p in self.transformer.parameters() if p.ndim >= 2]
        rest = [p for p in self.transformer.parameters() if p.ndim < 2]
        groups = [
            {"params": decay, "weight_decay": float(self.config["weight_decay"])},
            {"params": rest, "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=self.lr, betas=(0.9, 0.95))

    # -- data --------------------------------------------------------------------------------
    def attach_data(self, data) -> None:
        """The runner hands over the decoded set: captions now, tokens when stage 2 starts."""
        self._data = data
        given = data.captions or [""] * len(data)
        names = data.names or [""] * len(data)
        self.captions = [c or caption_from_name(n) for c, n in zip(given, names, strict=True)]
        if self.text and not any(self.captions):
            raise InputError(
                "The dalle family learns from captions: add a .txt beside each picture or give "
                "the pictures names that say what they show (or --set conditioning=none)."
            )

    @torch.no_grad()
    def _tokenise_all(self) -> None:
        self.tokenizer.eval().requires_grad_(False)
        pixels = self._data.images
        self.tokens = self._encode(pixels)
        if self.request.flip:
            self.mirrored = self._encode(pixels.flip(-1))

    def _encode(self, pixels: torch.Tensor, batch: int = 64) -> torch.Tensor:
        rows = []
        for start in range(0, len(pixels), batch):
            images = pixels[start : start + batch].to(self.device).float() / 127.5 - 1.0
            rows.append(self.tokenizer.encode(images).flatten(1).cpu())
        return torch.cat(rows)

    def embed(self, captions: list[str]) -> torch.Tensor:
        from engine.text.minilm import shared_encoder

        missing = [c for c in dict.fromkeys(captions) if c not in self._embeddings]
        if missing:
            self._embeddings.update(zip(missing, shared_encoder().encode(missing), strict=True))
        return torch.stack([self._embeddings[c] for c in captions]).to(self.device)

    def _templated(self, indices: list[int]) -> list[str]:
        templates = list(self.config.get("caption_templates") or ["{}"])
        picks = torch.randint(0, len(templates), (len(indices),), generator=self.generator)
        return [
            templates[t].format(self.captions[i])
            for t, i in zip(picks.tolist(), indices, strict=True)
        ]

    # -- steps -------------------------------------------------------------------------------
    def train_step(self, batch) -> dict[str, float]:
        if self.step < self.tokenizer_steps:
            return self._tokenizer_step(batch)
        if self.tokens is None:
            self._tokenise_all()
        return self._transformer_step(batch)

    def _tokenizer_step(self, batch) -> dict[str, float]:
        from engine.training.diffusion import random_crops

        self._last_images = batch.images[:8]
        crop = int(self.config.get("tokenizer_crop") or batch.images.shape[-1])
        images = random_crops(batch.images, crop, self.generator)
        self.tokenizer.train()
        loss, parts = self.tokenizer.loss(images, self.generator)
        optimizer = self.optimizers["tokenizer"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {
            "loss": loss.item(),
            "tokenizer_mse": parts["mse"],
            "codes_used": float(parts["codes_used"]),
        }

    def _learning_rate(self) -> float:
        step = self.step - self.tokenizer_steps
        total = max(1, self.request.steps - self.tokenizer_steps)
        warmup = int(self.config.get("warmup_steps", 100))
        if step < warmup:
            return self.lr * (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return self.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    def _transformer_step(self, batch) -> dict[str, float]:
        indices = batch.indices.tolist()
        tokens = self.tokens[batch.indices]
        if batch.flipped is not None and batch.flipped.any():
            tokens = torch.where(batch.flipped[:, None], self.mirrored[batch.indices], tokens)
        tokens = tokens.to(self.device)
        prefix = self._training_prefix(indices)
        self.transformer.train()
        logits = self.transformer(prefix, tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1))
        optimizer = self.optimizers["transformer"]
        for group in optimizer.param_groups:
            group["lr"] = self._learning_rate()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.transformer.parameters(), 1.0)
        optimizer.step()
        return {"loss": loss.item(), "bits_per_token": loss.item() / math.log(2)}

    def _training_prefix(self, indices: list[int]) -> torch.Tensor:
        count = len(indices)
        null = self.transformer.prefix(None, count)
        if not self.text:
            return null
        text = self.transformer.prefix(self.embed(self._templated(indices)), count)
        drop = torch.rand(count, generator=self.generator) < float(self.config["cond_drop"])
        return torch.where(drop.to(self.device)[:, None, None], null, text)

    # -- grids and export --------------------------------------------------------------------
    @torch.no_grad()
    def sample_grid(self, generator: torch.Generator):
        self.model.eval()
        if self.step < self.tokenizer_steps or self.tokens is None:
            return self._reconstruction_grid()
        from engine.families.dalle import GuidedLogits, SamplingOptions, sample_tokens

        count = self.grid_size
        seeds = torch.randint(0, 2**31, (count,), generator=generator).tolist()
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        captions = [self.captions[i % len(self.captions)] for i in range(count)]
        text = self.embed(captions) if self.text else None
        options = SamplingOptions(
            top_k=int(self.config["top_k"]), guidance_scale=float(self.config["guidance_scale"])
        )
        guide = GuidedLogits(self.transformer, text, None, count, options.guidance_scale)
        tokens = sample_tokens(self.transformer, guide, generators, options)
        side = self.model.grid_side
        return self.grid(self.tokenizer.decode(tokens.view(-1, side, side)))

    def _reconstruction_grid(self):
        """Stage 1: each picture of the last batch above its reconstruction through the codes."""
        images = self._last_images
        if images is None:
            images = self._data.images[:8].to(self.device).float() / 127.5 - 1.0
        recon = self.tokenizer.decode(self.tokenizer.encode(images))
        return self.grid(torch.cat([images, recon]).clamp(-1, 1))

    def export(self):
        if int(self.config.get("rerank_gallery", 0)) and self._data is not None:
            self._fill_gallery()
        return dict(self.model.state_dict()), dict(self.config)

    @torch.no_grad()
    def _fill_gallery(self) -> None:
        """Inception features and caption embeddings of some training pictures (re-ranking)."""
        from engine.families.common import to_images
        from engine.families.rerank import inception_features

        count = len(self.model.gallery_features)
        pick = torch.randperm(len(self._data), generator=torch.Generator().manual_seed(0))
        pick = pick[: min(count, len(self._data))]
        if len(pick) < count:  # fewer pictures than gallery slots: repeat (equal scores)
            pick = pick.repeat(math.ceil(count / len(pick)))[:count]
        pictures = to_images(self._data.images[pick].float() / 127.5 - 1.0)
        features = torch.cat(
            [inception_features(pictures[i : i + 32]) for i in range(0, count, 32)]
        )
        self.model.gallery_features.copy_(features.half())
        self.model.gallery_captions.copy_(
            self.embed([self.captions[i] for i in pick.tolist()]).half()
        )
