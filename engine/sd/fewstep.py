"""Few-step SD 1.x / SDXL models and LoRAs: which kind, and the settings it is made for.

Read from what the model is, never from its file name. Signals, per kind:

- LCM checkpoints: a UNet with a guidance-embedding input (`time_cond_proj_dim` in its config;
  `time_embedding.cond_proj.weight` in the tensors), or a folder whose scheduler is
  `LCMScheduler`.
- SDXL-Turbo / SD-Turbo (and other adversarially distilled folders): the scheduler config
  Stability ships with them, Euler ancestral with `timestep_spacing: "trailing"`.
- single files and LoRAs (LCM-LoRA, SDXL-Lightning, Hyper-SD, Turbo merges): their safetensors
  metadata (`modelspec.title`, `modelspec.architecture`, `modelspec.description`,
  `ss_output_name`, `ss_training_comment`) naming the method; a step count written there
  ("8 steps", "8step") sets the steps. A file with no such metadata is an ordinary model: the
  user sets steps and guidance.

Every kind samples with trailing timestep spacing (the distillation schedule's last step is
the noisiest one); the user's explicit steps/guidance/sampler still win (`model_defaults`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.sd.modern_families import StepDefaults

METADATA_FIELDS = (
    "modelspec.title",
    "modelspec.architecture",
    "modelspec.description",
    "modelspec.implementation",
    "ss_output_name",
    "ss_training_comment",
)
#: kind -> settings it is made for (the published recommendations of each method)
PROFILES = {
    "lcm": StepDefaults(4, 1.0, "LCM"),
    "turbo": StepDefaults(1, 0.0, "Euler a"),
    "lightning": StepDefaults(4, 0.0, "Euler"),
    "hyper": StepDefaults(8, 0.0, "DDIM"),
}
_WORDS = {"lcm": "lcm", "latent consistency": "lcm", "turbo": "turbo", "lightning": "lightning"}
_WORDS["hyper-sd"] = "hyper"
_WORDS["hyper sd"] = "hyper"


@dataclass(frozen=True)
class FewStep:
    kind: str  # lcm | turbo | lightning | hyper
    source: str  # what said so, for the Result info
    defaults: StepDefaults
    scheduler_options: dict = field(default_factory=lambda: {"timestep_spacing": "trailing"})


def detect(pipe, model_path: Path, layout: str, lora_paths: list[Path]) -> FewStep | None:
    """The few-step kind of a loaded SD pipeline with its LoRAs, or None for ordinary models."""
    unet = getattr(pipe, "unet", None)
    if unet is not None and getattr(unet.config, "time_cond_proj_dim", None):
        return _profile("lcm", "the UNet takes a guidance embedding (LCM distilled)")
    scheduler = dict(getattr(pipe, "_easel_scheduler_config", None) or {})
    if scheduler.get("_class_name") == "LCMScheduler":
        return _profile("lcm", "the model ships an LCM scheduler")
    if (
        layout == "diffusers"
        and scheduler.get("_class_name") == "EulerAncestralDiscreteScheduler"
        and scheduler.get("timestep_spacing") == "trailing"
    ):
        return _profile("turbo", "the model ships the Turbo scheduler (trailing Euler a)")
    for path in ([model_path] if layout == "single_file" else []) + list(lora_paths):
        found = from_metadata(_metadata(path))
        if found is not None:
            kind, steps = found
            profile = _profile(kind, f"the metadata of '{path.name}'")
            if steps:
                defaults = StepDefaults(
                    steps, profile.defaults.guidance_scale, profile.defaults.sampler
                )
                profile = FewStep(kind, profile.source, defaults)
            return profile
    return None


def from_metadata(metadata: dict[str, str]) -> tuple[str, int] | None:
    """(kind, steps or 0) from safetensors metadata text, or None."""
    text = " ".join(str(metadata.get(k, "")) for k in METADATA_FIELDS).lower()
    if not text.strip():
        return None
    for word, kind in _WORDS.items():
        if re.search(rf"(?<![a-z]){re.escape(word)}(?![a-z])", text):
            steps = re.search(r"(\d{1,2})[\s_-]?steps?\b", text)
            return kind, int(steps.group(1)) if steps else 0
    return None


def _profile(kind: str, source: str) -> FewStep:
    return FewStep(kind, source, PROFILES[kind])


def _metadata(path: Path) -> dict[str, str]:
    from engine.library.header import BrokenFile, read_header

    try:
        return read_header(path).metadata
    except (BrokenFile, OSError):
        return {}
