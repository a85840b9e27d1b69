"""Assemble an SD3 / FLUX.1 pipeline from separate files, ComfyUI style, with bundled configs.

Most people hold these models as a transformer file (or GGUF) plus `clip_l.safetensors`,
`clip_g.safetensors`, `t5xxl_fp16.safetensors` (or fp8) and a VAE (`ae.safetensors`), in
ComfyUI's `models/diffusion_models`, `models/text_encoders` (or `clip`) and `models/vae`. When
no companion diffusers folder exists, Easel builds the pipeline from:

- the bundled diffusers config folder of the family (resources/configs/sd3-medium, flux-dev,
  ...; any folder of that layout can be passed instead, which is how tests use tiny models);
- the text encoder and VAE files found next to the transformer, in the sibling ComfyUI folders,
  in Easel's models folder and in the model library. Each config slot takes the file whose
  tensors match it (architecture, width, depth), so a CLIP-G file never lands in CLIP-L's slot;
- the tokenizers bundled in resources/tokenizers (named in the config's easel.json).

Every part is loaded offline (`local_files_only`) with its bundled config; a part that cannot be
found is named in the message with the usual file name and the folder to put it in. A part may
also be one prefix of a single file (ComfyUI's FLUX.1 all-in-one: `vae.`, `text_encoders.*`),
read without the file's other tensors.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.errors import ModelError
from engine.library.checkpoint_stream import scaled_single_file
from engine.library.probe import ProbeResult, probe_path
from engine.sd.modern_families import FamilySpec
from engine.sd.modern_text_encoders import load_text_encoder

log = logging.getLogger(__name__)

#: (base, model variant) -> bundled config folder; other SD3 depths start from medium's
BUNDLED_CONFIGS = {
    ("sd3", "medium"): "sd3-medium",
    ("sd3", "3.5-medium"): "sd3.5-medium",
    ("sd3", "large"): "sd3.5-large",
    ("sd3", "large-turbo"): "sd3.5-large-turbo",
    ("sd3", ""): "sd3-medium",
    ("flux", "dev"): "flux-dev",
    ("flux", "fill"): "flux-dev",
    ("flux", "kontext"): "flux-dev",
    ("flux", "control"): "flux-dev",
    ("flux", "control-canny"): "flux-dev",
    ("flux", "control-depth"): "flux-dev",
    ("flux", "schnell"): "flux-schnell",
}
PART_FOLDERS = ("text_encoders", "clip", "vae")
WEIGHT_SUFFIXES = (".safetensors", ".sft")
#: names people know the real files by, for messages: (architecture, width) -> (label, file)
KNOWN_PARTS = {
    ("clip", 768): ("a CLIP-L text encoder", "clip_l.safetensors"),
    ("clip", 1280): ("a CLIP-G text encoder", "clip_g.safetensors"),
    ("t5", 4096): ("a T5-XXL text encoder", "t5xxl_fp16.safetensors or t5xxl_fp8_e4m3fn"),
}
VAE_FILES = {
    "flux": "the FLUX.1 VAE file (ae.safetensors)",
    "sd3": "the SD3 VAE file (e.g. sd3_vae.safetensors)",
}


def configs_root() -> Path:
    """Where the bundled family configs live (a function so a test can point it elsewhere)."""
    from engine.paths import resource

    return Path(resource("configs"))


def bundled_config(spec: FamilySpec) -> Path | None:
    name = BUNDLED_CONFIGS.get((spec.base, spec.variant))
    folder = configs_root() / name if name else None
    return folder if folder is not None and (folder / "model_index.json").is_file() else None


@dataclass(frozen=True)
class Slot:
    """A component of the config that a separate file fills."""

    component: str  # text_encoder, text_encoder_2, text_encoder_3, vae
    architecture: str  # clip | t5 | vae
    width: int = 0
    layers: int = 0

    def fits(self, probe: ProbeResult) -> bool:
        details = probe.details
        if self.architecture == "vae":
            return probe.kind == "vae" and details.get("latent_channels") == self.width
        return (
            probe.kind == "text_encoder"
            and details.get("architecture") == self.architecture
            and details.get("width") == self.width
            and details.get("layers") == self.layers
        )

    def describe(self, base: str) -> str:
        if self.architecture == "vae":
            return VAE_FILES.get(base, "a 16-channel VAE file")
        known = KNOWN_PARTS.get((self.architecture, self.width))
        if known:
            return f"{known[0]} file ({known[1]})"
        label = f"a {self.architecture.upper()} text encoder"
        return f"{label} file ({self.width} wide, {self.layers} layers)"


def config_slots(config_dir: Path, *, skip_t5: bool = False) -> list[Slot]:
    """The separately stored parts the config folder's pipeline needs."""
    index = _read_json(config_dir / "model_index.json")
    slots = []
    for component in sorted(index):
        entry = index[component]
        if not (isinstance(entry, list) and entry and entry[0]):
            continue
        if component.startswith("text_encoder"):
            config = _read_json(config_dir / component / "config.json")
            if config.get("model_type") == "t5":
                if skip_t5:
                    continue
                slots.append(Slot(component, "t5", config["d_model"], config["num_layers"]))
            else:
                width, layers = config["hidden_size"], config["num_hidden_layers"]
                slots.append(Slot(component, "clip", width, layers))
        elif component == "vae":
            config = _read_json(config_dir / "vae" / "config.json")
            slots.append(Slot("vae", "vae", config.get("latent_channels", 16)))
    return slots


# -- finding the files -------------------------------------------------------------------------
def search_folders(path: Path) -> list[Path]:
    """Where separate parts are looked for: next to the file, ComfyUI's sibling folders
    (`models/text_encoders`, `models/clip`, `models/vae`) and the same in Easel's models folder."""
    from engine.paths import models_dir

    roots = [path.parent.parent, models_dir()]
    folders = [path.parent] + [root / name for root in roots for name in PART_FOLDERS]
    seen, out = set(), []
    for folder in folders:
        key = str(folder.resolve()) if folder.exists() else ""
        if key and key not in seen and folder.is_dir():
            seen.add(key)
            out.append(folder)
    return out


def candidate_parts(path: Path) -> list[tuple[Path, ProbeResult]]:
    """Text encoder and VAE files near `path` and in the library, with their probe results."""
    files: list[Path] = []
    for folder in search_folders(path):
        try:
            files += sorted(p for p in folder.iterdir() if p.suffix.lower() in WEIGHT_SUFFIXES)
        except OSError:
            continue
    files += _library_parts()
    out, seen = [], {path.resolve()}
    for file in files:
        resolved = file.resolve()
        if resolved in seen or not file.is_file():
            continue
        seen.add(resolved)
        result = probe_path(file)
        if result.kind in ("text_encoder", "vae"):
            out.append((file, result))
    return out


def _library_parts() -> list[Path]:
    try:
        from engine.library.records import ModelLibrary
        from engine.paths import database_path

        if not database_path().exists():
            return []
        library = ModelLibrary()
        records = [r for kind in ("text_encoder", "vae") for r in library.list_models(kind=kind)]
    except Exception as exc:  # noqa: BLE001 - a broken library must not stop a load
        log.debug("library not read for separate parts: %s", exc)
        return []
    return [Path(r.path) for r in records if r.status == "ok"]


def choose_parts(
    path: Path, spec: FamilySpec, config_dir: Path, *, skip_t5: bool = False
) -> dict[str, Path]:
    """{component: file} for every slot of the config, or ModelError naming what is missing."""
    candidates = [(f, p) for f, p in candidate_parts(path) if p.ok]
    chosen, missing = {}, []
    for slot in config_slots(config_dir, skip_t5=skip_t5):
        fitting = [(f, p) for f, p in candidates if slot.fits(p)]
        if not fitting:
            missing.append(slot)
            continue
        fitting.sort(key=lambda item: _preference(item, spec.base))
        chosen[slot.component] = fitting[0][0]
    if missing:
        raise ModelError(missing_parts_message(path, spec, missing, candidates))
    return chosen


def _preference(item: tuple[Path, ProbeResult], base: str) -> tuple:
    """Full precision before fp8; for the VAE (SD3's and FLUX's look alike) a file whose name
    mentions the family, then FLUX's usual `ae` name for FLUX."""
    file, probe = item
    name = file.stem.lower()
    hints = ("flux", "ae") if base == "flux" else ("sd3", "sd35", "sd3.5")
    named = any(name == h or name.startswith(h) or f"{h}_" in name for h in hints)
    return ("fp8" in probe.variant, not named, name)


def missing_parts_message(
    path: Path, spec: FamilySpec, missing: list[Slot], candidates: list[tuple[Path, ProbeResult]]
) -> str:
    from engine.paths import models_dir

    family = {"sd3": "SD3", "flux": "FLUX.1"}.get(spec.base, spec.title)
    encoders = [s.describe(spec.base) for s in missing if s.architecture != "vae"]
    needs = []
    if encoders:
        needs.append(f"{_join(encoders)} in {models_dir() / 'text_encoders'}")
    if any(s.architecture == "vae" for s in missing):
        vae = next(s for s in missing if s.architecture == "vae")
        needs.append(f"{vae.describe(spec.base)} in {models_dir() / 'vae'}")
    found = ", ".join(f"{f.name} ({p.describe()})" for f, p in candidates) or "none"
    return (
        f"'{path.name}' holds only the transformer of {_article(spec.title)} {spec.title} model. "
        f"{family} needs "
        f"{_join(needs)} (or next to the file, in '{path.parent}'); found: {found}. A diffusers "
        "folder of the model next to the file works too."
    )


def _article(title: str) -> str:
    return "an" if title.startswith("SD") else "a"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# -- building the pipeline ---------------------------------------------------------------------
def load_vae_file(file: Path, config_dir: Path, dtype: torch.dtype, *, prefix: str = ""):
    """A VAE file (original `ae.safetensors` keys or diffusers keys) with the config's settings
    (its scaling and shift factors are the family's, not in the file). With a `prefix` (an
    all-in-one file's `vae.`), only the tensors under it are read."""
    from diffusers import AutoencoderKL

    try:
        with scaled_single_file(file, dtype):  # diffusers ignores fp8 scales
            return AutoencoderKL.from_single_file(
                _prefixed_tensors(file, prefix) if prefix else str(file),
                config=str(config_dir),
                subfolder="vae",
                local_files_only=True,
                torch_dtype=dtype,
            )
    except (MemoryError, ModelError):
        raise
    except Exception as exc:  # noqa: BLE001 - conversion and shape errors have many types
        raise ModelError(f"The VAE file '{file.name}' could not be loaded: {exc}") from exc


def _prefixed_tensors(file: Path, prefix: str) -> dict:
    """The tensors of `file` under `prefix`, names kept (diffusers' VAE converter strips the
    `vae.` / `first_stage_model.` prefixes itself)."""
    from engine.library.checkpoint_stream import iter_checkpoint

    # dtype None: tensors as stored; a scaled VAE's weights times their scales, in float32
    return dict(iter_checkpoint(file, lambda _: None, prefix=prefix))


#: a part file, or (file, prefix) for one part of an all-in-one file
Part = Path | tuple[Path, str]


def assemble_pipeline(
    cls,
    config_dir: Path,
    transformer,
    parts: dict[str, Part],
    dtype: torch.dtype,
    *,
    skip_t5: bool = False,
):
    """A pipeline of class `cls` from the config folder's layout, the transformer and the
    part files; the scheduler from the config, tokenizers bundled (or the config's own)."""
    index = _read_json(config_dir / "model_index.json")
    components = {"transformer": transformer}
    for component, entry in index.items():
        if component.startswith("_") or component == "transformer":
            continue
        if not (isinstance(entry, list) and entry and entry[0]):
            continue
        components[component] = _component(config_dir, component, entry[1], parts, dtype)
    if skip_t5 and "text_encoder_3" in components:
        components.update(text_encoder_3=None, tokenizer_3=None)
    accepted = _init_parameters(cls)
    pipe = cls(**{k: v for k, v in components.items() if k in accepted})
    return pipe


def _component(config_dir: Path, component: str, class_name: str, parts, dtype):
    import diffusers

    if component == "scheduler":
        scheduler_class = getattr(diffusers, class_name)
        return scheduler_class.from_pretrained(
            str(config_dir), subfolder="scheduler", local_files_only=True
        )
    if component.startswith("tokenizer"):
        return _tokenizer(config_dir, component, class_name)
    if component not in parts:
        return None  # skipped (T5 when the user chose "skip T5")
    part = parts[component]
    file, prefix = part if isinstance(part, tuple) else (part, "")
    if component == "vae":
        return load_vae_file(file, config_dir, dtype, prefix=prefix)
    return load_text_encoder(file, config_dir, component, dtype, prefix=prefix)


def _tokenizer(config_dir: Path, component: str, class_name: str):
    from engine.library.single_file import tokenizer_variants
    from engine.sd import tokenizers

    own = config_dir / component
    if own.is_dir() and tokenizers.content_key(own):
        return tokenizers.shared_tokenizer(own, class_name)
    variant = tokenizer_variants(config_dir).get(component)
    if not variant:
        raise ModelError(f"The model settings in '{config_dir}' name no {component}.")
    return tokenizers.bundled(variant)


def _init_parameters(cls) -> set[str]:
    import inspect

    return set(inspect.signature(cls.__init__).parameters) - {"self"}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"Easel's model settings file '{path}' is missing or broken.") from exc
