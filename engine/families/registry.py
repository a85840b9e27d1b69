"""Native families by name, the model-folder format, and the `GenerationRequest` runner for them.

A native model is a folder (see docs/notes/native-models.md):
`config.json` ({"family", "format": 1, hyperparameters, "resolution", "channels", ...}),
`model.safetensors` (the weights `build(config)` expects), `README.md` (the model card) and
optionally `samples/` and a resume checkpoint. Each family module exposes `DEFAULTS` (config
defaults), `build(config) -> nn.Module` and `generate(model, config, request, ctx) -> [PIL]`.
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from engine.errors import ModelError
from engine.families.autoguide import GUIDE_ATTRIBUTE, autoguidance_used, load_guide
from engine.families.common import image_seeds, known_concepts
from engine.text.concepts import concepts_used, unfamiliar_prompt_notice

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"

#: family name -> module. "beta-vae" is the VAE module with a larger beta (Higgins et al. 2017).
FAMILIES: dict[str, str] = {
    "dcgan": "engine.families.dcgan",
    "stylegan": "engine.families.stylegan",
    "cyclegan": "engine.families.cyclegan",
    "vae": "engine.families.vae",
    "beta-vae": "engine.families.vae",
    "nvae": "engine.families.nvae",
    "ddpm": "engine.families.ddpm",
    "ldm": "engine.families.ldm",
    "dalle": "engine.families.dalle",
}


def family_names() -> list[str]:
    return list(FAMILIES)


def family_module(family: str) -> ModuleType:
    """The module that implements `family`, or ModelError naming the families Easel knows."""
    name = (family or "").strip().lower()
    if name not in FAMILIES:
        raise ModelError(
            f"Unknown model family '{family}'. Easel's native families are: {', '.join(FAMILIES)}."
        )
    try:
        return importlib.import_module(FAMILIES[name])
    except ModuleNotFoundError as exc:
        if exc.name != FAMILIES[name]:
            raise
        raise ModelError(f"The '{name}' family is not available in this build of Easel.") from exc


def full_config(family: str, config: dict[str, Any]) -> dict[str, Any]:
    """The family's DEFAULTS overlaid with `config` (so older folders gain new knobs)."""
    module = family_module(family)
    # a module serving several families (vae, beta-vae) may vary its defaults per family
    per_family = getattr(module, "FAMILY_DEFAULTS", {}).get(family, {})
    merged = {**getattr(module, "DEFAULTS", {}), **per_family, **config}
    merged["family"] = family
    merged.setdefault("format", FORMAT_VERSION)
    return merged


@dataclass
class NativeModel:
    """A loaded native model: the module `build` made, its config and where it came from."""

    family: str
    module: ModuleType
    model: torch.nn.Module
    config: dict[str, Any]
    folder: Path

    @property
    def components(self) -> dict[str, torch.nn.Module]:
        # ModelCache sizes entries through `.components` (as for diffusers pipelines); the
        # autoguidance weak copy lives outside the model's module tree, so it is named here
        weak = getattr(self.model, GUIDE_ATTRIBUTE, None)
        return {"model": self.model, **({"autoguide": weak.unet} if weak is not None else {})}

    def to(self, device: torch.device) -> NativeModel:
        for part in self.components.values():
            first = next(part.parameters(), None)
            if first is not None and first.device != torch.device(device):
                part.to(device)
        return self


def read_config(folder: str | Path) -> dict[str, Any]:
    """`config.json` of a native model folder, checked for a family and a known format."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise ModelError(f"'{folder}' has no {CONFIG_FILE}; it is not an Easel model folder.")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"'{path}' is not valid JSON ({exc}); the model is broken.") from exc
    if not isinstance(config, dict) or not config.get("family"):
        raise ModelError(f"'{path}' does not say which family the model is ('family' key).")
    if int(config.get("format", FORMAT_VERSION)) > FORMAT_VERSION:
        raise ModelError(
            f"'{folder}' was saved by a newer Easel (format {config['format']}); update Easel."
        )
    return config


def load_native_model(folder: str | Path, device: torch.device | str = "cpu") -> NativeModel:
    """Build the family's module from `config.json` and load `model.safetensors` into it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    stored = read_config(folder)
    family = stored["family"]
    module = family_module(family)
    config = full_config(family, stored)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(f"'{folder}' has no {WEIGHTS_FILE}: the model has no weights yet.")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"'{weights}' is not a readable safetensors file ({exc}).") from exc
    model = module.build(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise ModelError(
            f"The weights in '{weights.name}' do not fit the {family} architecture in "
            f"{CONFIG_FILE} ({first_line}). The folder is broken or was edited by hand."
        ) from exc
    model.eval().requires_grad_(False).to(device)
    from engine.families.common import CONCEPTS_ATTRIBUTE
    from engine.text.concepts import load_concepts

    # a plain attribute, not a buffer: the concepts stay on the CPU beside the text encoder
    setattr(model, CONCEPTS_ATTRIBUTE, load_concepts(folder))
    from engine.families.rerank import GALLERY_ATTRIBUTE, load_gallery

    setattr(model, GALLERY_ATTRIBUTE, load_gallery(folder))
    guide = load_guide(folder, model)
    if guide is not None:
        guide.unet.to(device)
    setattr(model, GUIDE_ATTRIBUTE, guide)
    return NativeModel(family, module, model, config, folder)


def generate_native(request, ctx, resolved):
    """Run a GenerationRequest on a native model folder; one metadata dict per image."""
    from engine.events import Result

    device = _inference_device(request.runtime)
    started = time.perf_counter()
    key = _cache_key(resolved, ctx.cache)
    loader = lambda: load_native_model(resolved.path, device)  # noqa: E731
    if key not in ctx.cache:
        ctx.progress(0, request.steps, stage="loading model")
    with ctx.cache.use(key, loader) as native:
        native.to(device)
        loaded = time.perf_counter()
        with torch.inference_mode():
            images = native.module.generate(native.model, native.config, request, ctx)
    finished = time.perf_counter()
    # the family says what it really ran (e.g. the sampler it fell back to) so that metadata
    # and "reuse settings" describe the picture, not only what was asked; fields the model did
    # not use (a GAN's sampler, CFG scale) are left out rather than claimed
    used = getattr(native.module, "settings_used", None)
    base = {**request.to_dict(), **(used(native.config, request) if used else {})}
    steering = concepts_used(known_concepts(native.model), native.config, request)
    base.update(steering)
    base.update(autoguidance_used(native.model, native.config, request))
    if notice := unfamiliar_prompt_notice(request.prompt, steering):
        ctx.notice(notice)
    for name in _unused_fields(native, resolved, request):
        base.pop(name, None)
    base.update(model_name=resolved.path.name, model_hash=_weights_hash(resolved.path))
    metadata = [
        {
            **base,
            # a family that re-ranks candidates says which seed made each kept picture
            "seed": image.info.get("easel_seed", image_seeds(request.seed, index + 1)[index]),
            "family": native.family,
            "model_path": str(resolved.path),
            "image_index": index,
            "width": image.width,
            "height": image.height,
        }
        for index, image in enumerate(images)
    ]
    info = {
        "family": native.family,
        "load_s": loaded - started,
        "generate_s": finished - loaded,
        "device": str(device),
    }
    return Result(ctx.job_id, images=images, metadata=metadata, info=info)


def _unused_fields(native: NativeModel, resolved, request) -> tuple[str, ...]:
    from engine.capabilities import native_capabilities

    return native_capabilities(resolved.path.name, native.config).unused_fields(request)


def _weights_hash(folder: Path) -> str:
    """A1111's short hash of the weights file: the model's identity in metadata."""
    from engine.library.hashing import cached_short_hash

    try:
        return cached_short_hash(Path(folder) / WEIGHTS_FILE)
    except (OSError, ModelError):
        return ""


def _cache_key(resolved, cache) -> str:
    """The resolved key plus the weights' modification time: a folder trained further (resume)
    in the same session is reloaded, and its stale copy leaves the cache."""
    try:
        stamp = (Path(resolved.path) / WEIGHTS_FILE).stat().st_mtime_ns
    except OSError:
        stamp = 0
    key = f"{resolved.cache_key}@{stamp}"
    for old in cache.keys():
        if old.startswith(f"{resolved.cache_key}@") and old != key:
            cache.drop(old)
    return key


def _inference_device(runtime) -> torch.device:
    """The device from the user's setting; native models are small and always run in fp32."""
    try:
        from engine.devices import apply_cpu_threads, select_device
    except ImportError:  # devices.py is optional for native models: the CPU always works
        return torch.device("cpu")
    apply_cpu_threads(runtime.cpu_threads)
    return select_device(runtime)
