"""The one training loop every family shares: `run_training(request, ctx) -> Result`.

Stages: check the request, load the data, build (or resume) the family's Trainer, run steps with
progress (loss, images/s, time left), a sample grid every `sample_every` steps (preview + saved
under `samples/`), a resumable checkpoint at each sample point and on cancel, then export the
model folder (config, weights, model card) that `easel generate --model DIR` samples from.
"""

from __future__ import annotations

import functools
import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.errors import InputError, JobCancelled
from engine.events import Result
from engine.families.registry import CONFIG_FILE, FAMILIES, family_module, full_config
from engine.training import checkpoint
from engine.training.data import BatchSampler, TrainingData, load_training_data

#: family -> "module:TrainerClass". The diffusion side provides the ddpm and ldm trainers.
TRAINERS: dict[str, str] = {
    "dcgan": "engine.training.gan:DCGANTrainer",
    "stylegan": "engine.training.stylegan:StyleGANTrainer",
    "cyclegan": "engine.training.cyclegan:CycleGANTrainer",
    "vae": "engine.training.vae:VAETrainer",
    "beta-vae": "engine.training.vae:VAETrainer",
    "nvae": "engine.training.vae:NVAETrainer",
    "ddpm": "engine.training.diffusion:DDPMTrainer",
    "ldm": "engine.training.diffusion:LDMTrainer",
    "dalle": "engine.training.dalle:DalleTrainer",
}

#: families that learn a mapping between two picture sets and need `data_dir_b`
TWO_DOMAIN_FAMILIES = {"cyclegan"}


@dataclass
class RunState:
    """Counters the loop keeps (and a checkpoint stores) besides the trainer's tensors."""

    step: int = 0
    elapsed_s: float = 0.0  # training time so far, across resumed sessions
    losses: list[float] = field(default_factory=list)
    images_per_s: float = 0.0


def run_training(request, ctx) -> Result:
    family = request.family.strip().lower()
    trainer_class = _trainer_class(family)
    out_dir = _prepare_out_dir(request)
    device = _training_device(request.runtime)
    resume_tensors, resume_counters = (
        checkpoint.load_checkpoint(out_dir) if request.resume else ({}, {})
    )
    saved_config = resume_counters.get("config")
    if saved_config and saved_config.get("family") != family:
        raise InputError(
            f"The run in '{out_dir}' trains a {saved_config.get('family')} model, not {family}: "
            "pick that family to resume it, or another folder for a new run."
        )
    data, data_b = _load_data(request, family, saved_config, ctx.check_cancelled)
    config = saved_config or training_config(request, family, data)
    with torch.random.fork_rng(devices=[]):  # weights start from the request's seed
        torch.manual_seed(int(request.seed))
        trainer = trainer_class(request, config, device)
    if hasattr(trainer, "attach_data"):  # a trainer that precomputes per picture (dalle)
        trainer.attach_data(data)
    sampler = BatchSampler(
        data, request.batch_size, seed=request.seed, device=device, flip=request.flip, data_b=data_b
    )
    state = RunState()
    if request.resume:
        state = _restore(trainer, sampler, resume_tensors, resume_counters)
    loop = _Loop(request, ctx, trainer, sampler, state, out_dir, data, device)
    return loop.run()


def training_config(request, family: str, data: TrainingData) -> dict[str, Any]:
    """The family's defaults, architecture knobs from `request.extras`, and the data's shape."""
    config = full_config(family, {})
    unknown = [k for k in request.extras if k not in config and k not in _LOOP_EXTRAS]
    if unknown:
        raise InputError(
            f"Unknown setting(s) for {family}: {', '.join(sorted(unknown))}. "
            f"Known: {', '.join(sorted(k for k in config if k not in ('family', 'format')))}."
        )
    config.update({k: v for k, v in request.extras.items() if k in config})
    config.update(resolution=data.resolution, channels=data.channels, classes=list(data.classes))
    check = getattr(family_module(family), "check_config", None)
    if check is not None:
        check(config)
    return config


_LOOP_EXTRAS = {"licence", "title"}


class _Loop:
    def __init__(self, request, ctx, trainer, sampler, state, out_dir, data, device):
        self.request, self.ctx, self.trainer, self.sampler = request, ctx, trainer, sampler
        self.state, self.out_dir, self.data, self.device = state, out_dir, data, device
        self.sample_seed = int(request.seed)

    def run(self) -> Result:
        total = self.request.steps
        session_images, session_train_s = 0, 0.0
        try:
            while self.state.step < total:
                self.ctx.check_cancelled()
                began = time.perf_counter()
                self.trainer.step = self.state.step
                losses = self.trainer.train_step(self.sampler.next())
                took = time.perf_counter() - began
                self.state.step += 1
                session_images += self.request.batch_size
                session_train_s += took
                self.state.elapsed_s += took
                self._report(losses, session_images / max(session_train_s, 1e-9), total)
                if (
                    self.state.step % max(1, self.request.sample_every) == 0
                    and self.state.step < total
                ):
                    self._sample_and_save()
        except JobCancelled:
            self._save(stopped=True)
            raise
        grid = self._save(stopped=False)
        return self._result(grid)

    def _report(self, losses: dict[str, float], images_per_s: float, total: int) -> None:
        loss = float(losses["loss"])
        self.state.losses.append(loss)
        self.state.images_per_s = images_per_s
        left = (total - self.state.step) * self.request.batch_size / max(images_per_s, 1e-9)
        extra = {k: float(v) for k, v in losses.items() if k != "loss"}
        self.ctx.progress(
            self.state.step,
            total,
            loss=loss,
            images_per_s=images_per_s,
            seconds_left=left,
            losses=extra,
        )

    def _sample_and_save(self):
        grid = self._sample()
        self._save_checkpoint()
        return grid

    def _sample(self):
        generator = torch.Generator().manual_seed(self.sample_seed)
        grid = self.trainer.sample_grid(generator)
        self.ctx.preview(grid, force=True)
        samples = self.out_dir / "samples"
        samples.mkdir(parents=True, exist_ok=True)
        grid.save(samples / f"step_{self.state.step:07d}.png")
        return grid

    def _save_checkpoint(self) -> None:
        save_run_checkpoint(
            self.out_dir, self.trainer, self.state, self.request, self.sampler.state()
        )

    def _save(self, *, stopped: bool):
        """Checkpoint, final grid, model folder and card. Also on cancel: what was learnt so far
        is usable at once, and the checkpoint lets a later run continue."""
        if self.state.step == 0:  # stopped before the first step: nothing worth keeping
            return None
        self._save_checkpoint()
        grid = self._sample()
        grid.save(self.out_dir / "samples" / "final.png")
        state_dict, config = self.trainer.export()
        config = self._store_known_concepts(config)
        checkpoint.save_model(self.out_dir, state_dict, config)
        checkpoint.write_card(self.out_dir, self._summary(config, stopped))
        return grid

    def _store_known_concepts(self, config: dict[str, Any]) -> dict[str, Any]:
        """A text-conditioned model has learnt pictures only for its captions: store them
        beside the weights (engine.text.concepts) so an unfamiliar prompt can be steered to
        the nearest one. Off (strength 0) until the user turns the Concepts control up; one
        neighbour, the mix measured best on the built-in (docs/benchmarks.md, stop 29)."""
        if str(config.get("conditioning")) != "text":
            return config
        captions = sorted({c.strip() for c in (self.data.captions or []) if c and c.strip()})
        if not captions:
            return config
        from engine.text.concepts import save_concepts
        from engine.text.minilm import shared_encoder

        encoder = str(config.get("text_encoder") or "all-MiniLM-L6-v2")
        save_concepts(self.out_dir, captions, shared_encoder().encode(captions), encoder)
        return {"concept_strength": 0.0, "concept_neighbours": 1, **config}

    def _summary(self, config: dict[str, Any], stopped: bool) -> dict[str, Any]:
        losses = self.state.losses[-20:]
        return {
            "config": config,
            "title": self.request.extras.get("title", ""),
            "licence": self.request.extras.get("licence") or self.data.licence,
            "data_source": self.data.source
            + (f" + {self.request.data_dir_b}" if self.request.data_dir_b else ""),
            "image_count": len(self.data),
            "skipped_count": len(self.data.skipped),
            "step": self.state.step,
            "total_steps": self.request.steps,
            "batch_size": self.request.batch_size,
            "stopped": stopped,
            "elapsed_s": self.state.elapsed_s,
            "device": str(self.device),
            "final_loss": f"{sum(losses) / len(losses):.4f} (mean of the last {len(losses)} steps)"
            if losses
            else "n/a",
            "seed": self.request.seed,
            "out_dir": str(self.out_dir),
        }

    def _result(self, grid) -> Result:
        losses = self.state.losses
        info = {
            "out_dir": str(self.out_dir),
            "family": self.trainer.config["family"],
            "steps": self.state.step,
            "final_loss": losses[-1] if losses else None,
            "loss_history": losses,
            "images_per_s": self.state.images_per_s,
            "elapsed_s": self.state.elapsed_s,
            "image_count": len(self.data),
            "skipped": list(self.data.skipped),
        }
        metadata = [{**self.request.to_dict(), "kind": "sample_grid", "seed": self.sample_seed}]
        return Result(self.ctx.job_id, images=[grid], metadata=metadata, info=info)


def _trainer_class(family: str):
    if family not in FAMILIES or family not in TRAINERS:
        raise InputError(
            f"Easel cannot train the family '{family}'. Choose one of: {', '.join(TRAINERS)}."
        )
    module_name, class_name = TRAINERS[family].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise InputError(f"Training '{family}' is not available in this build of Easel.") from exc
    return getattr(module, class_name)


def _prepare_out_dir(request) -> Path:
    out_dir = Path(request.out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"'{out_dir}' is a file; choose a folder to save the model in.")
    if not request.resume and (
        (out_dir / CONFIG_FILE).exists() or checkpoint.has_checkpoint(out_dir)
    ):
        raise InputError(
            f"'{out_dir}' already holds a trained model. Choose an empty folder, or resume "
            "to continue that training."
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"Cannot create the output folder '{out_dir}' ({exc}).") from exc
    return out_dir


def _load_data(request, family: str, saved_config: dict | None, check_cancelled):
    resolution = int(saved_config["resolution"]) if saved_config else request.resolution
    channels = int(saved_config.get("channels", 3)) if saved_config else 3
    load = functools.partial(
        load_training_data, resolution=resolution, channels=channels, check=check_cancelled
    )
    data = load(request.data_dir)
    data_b = None
    if family in TWO_DOMAIN_FAMILIES:
        if not request.data_dir_b:
            raise InputError(
                f"{family} learns to translate between two sets of pictures: give the second "
                "folder too (--data-b, or 'Second folder' in the Train dialog)."
            )
        data_b = load(request.data_dir_b)
        data.skipped.extend(f"(B) {s}" for s in data_b.skipped)
    return data, data_b


def save_run_checkpoint(out_dir: Path, trainer, state: RunState, request, extra_tensors=None):
    """The checkpoint `run_training(resume=True)` continues from: the trainer's tensors (and the
    batch sampler's, when it has run) with the loop's counters."""
    counters = {
        "step": state.step,
        "elapsed_s": state.elapsed_s,
        "losses": state.losses,
        "config": trainer.config,
        "trainer": trainer.counters(),
        "request": request.to_dict(),
    }
    tensors = {**trainer.state_tensors(), **(extra_tensors or {})}
    checkpoint.save_checkpoint(out_dir, tensors, counters)


def _restore(trainer, sampler, tensors, counters) -> RunState:
    trainer.load_state_tensors(tensors)
    trainer.load_counters(counters.get("trainer", {}))
    sampler.set_state(tensors)
    return RunState(
        step=int(counters.get("step", 0)),
        elapsed_s=float(counters.get("elapsed_s", 0.0)),
        losses=list(counters.get("losses", [])),
    )


def _training_device(runtime) -> torch.device:
    try:
        from engine.devices import apply_cpu_threads, select_device
    except ImportError:
        return torch.device("cpu")
    apply_cpu_threads(runtime.cpu_threads)
    return select_device(runtime)
