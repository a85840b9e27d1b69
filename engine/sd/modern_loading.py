"""Load SD3 / SD3.5 and FLUX.1 pipelines offline: diffusers folders, single files, GGUF.

- A diffusers folder loads as it is; "skip T5" (SD3 only: its T5 encoder is optional) leaves
  `text_encoder_3` out, about 9.5 GB less for the real model; the transformer then sees zeros
  where T5's states would be, as diffusers does.
- A single file (original all-in-one, transformer-only, fp8 safetensors or a GGUF transformer)
  takes whatever it does not hold (text encoders, tokenizers, VAE, scheduler, configs) from a
  *companion*: a diffusers folder of the same family next to the file or in the library.
  Without one, SD3 and FLUX.1 files use the bundled configs (resources/configs/sd3-medium,
  flux-dev, ...) and tokenizers (CLIP-L, CLIP-G, T5): an all-in-one file needs nothing else, a
  transformer-only file takes its text encoders and VAE from separate files, ComfyUI style
  (engine.sd.modern_parts). The transformer's config is the companion's (or bundled one's) with
  the depth, guidance embedder and input width read from the file's tensors, so a schnell file
  runs with a dev companion and the other way round.
- FLUX.1 safetensors files in Black Forest Labs' original layout (transformer-only, bare or
  under ComfyUI's `model.diffusion_model.`, and ComfyUI's all-in-one files) have their
  transformer converted by engine.sd.flux_convert (diffusers' own converter only splits the
  full-width model) with every size read from the tensors; an all-in-one file's VAE and text
  encoders are read from their prefixes of the same file as separate parts (modern_parts), so
  no part reads the others' tensors.
- GGUF transformers load through diffusers' GGUFQuantizationConfig (weights stay quantised in
  memory and are dequantised per layer); fp8 safetensors are upcast to the compute dtype, and
  ComfyUI's scaled-fp8 files have their per-tensor scales applied as they are read
  (engine.library.fp8).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import torch

from engine.errors import ModelError
from engine.library.checkpoint_stream import scaled_single_file
from engine.library.probe import ProbeResult, probe_path
from engine.library.resolve import ResolvedModel
from engine.sd import modern_parts
from engine.sd.modern_families import FamilySpec, family_spec

log = logging.getLogger(__name__)

TRANSFORMER_CLASSES = {
    "sd3": "SD3Transformer2DModel",
    "flux": "FluxTransformer2DModel",
    "flux2": "Flux2Transformer2DModel",
}
FAMILY_NAMES = {"sd3": "SD3", "flux": "FLUX.1", "flux2": "FLUX.2"}


def base_pipeline_class(spec: FamilySpec) -> str:
    """The class of the cached pipeline: text-to-image, or the only mode the model runs."""
    from engine.api import Mode

    return spec.pipelines.get(Mode.TXT2IMG) or next(iter(spec.pipelines.values()))


def load_modern_pipeline(
    resolved: ResolvedModel, dtype: torch.dtype, *, skip_t5: bool, config_dir: Path | None = None
):
    """The base pipeline for an SD3 or FLUX model (not yet placed on a device). `config_dir`
    replaces the bundled config folder for single files without a companion (tests pass tiny
    ones)."""
    import diffusers

    spec = family_spec(resolved.base, resolved.variant)
    cls = getattr(diffusers, base_pipeline_class(spec))
    options: dict[str, Any] = {"dtype": dtype, "local_files_only": True}
    if skip_t5 and spec.base == "sd3":
        options.update(text_encoder_3=None, tokenizer_3=None)
    if resolved.layout == "diffusers":
        folder = resolved.path
        options.update(_shared_clip_tokenizers(folder))
        return _from_pretrained(cls, folder, options, resolved.path)
    probe = probe_path(resolved.path)
    all_in_one = probe.details.get("contents") == "all-in-one"
    companion = _companion_or_none(resolved.path, spec, probe)
    if companion is None:
        config_dir = config_dir or modern_parts.bundled_config(spec)
        if config_dir is None:  # FLUX.2: no bundled config yet
            find_companion(resolved.path, spec, probe)  # raises, naming what is needed
        if all_in_one and probe.details.get("format") != "gguf":
            return _all_in_one(cls, resolved.path, config_dir, options, bundled=True)
        return _from_parts(cls, resolved.path, spec, probe, config_dir, dtype, skip_t5)
    if all_in_one and probe.details.get("format") != "gguf":
        return _all_in_one(cls, resolved.path, companion, options)
    options["transformer"] = load_transformer_file(resolved.path, spec, probe, companion, dtype)
    options.update(_shared_clip_tokenizers(companion))
    return _from_pretrained(cls, companion, options, resolved.path)


def _companion_or_none(path: Path, spec: FamilySpec, probe: ProbeResult) -> Path | None:
    try:
        return find_companion(path, spec, probe)
    except ModelError:
        if spec.base == "flux2":
            raise
        return None


def _from_parts(cls, path: Path, spec, probe, config_dir: Path, dtype, skip_t5: bool):
    """A transformer-only file with separate text encoder and VAE files and a config folder."""
    skip = skip_t5 and spec.base == "sd3"
    parts = modern_parts.choose_parts(path, spec, config_dir, skip_t5=skip)
    transformer = load_transformer_file(path, spec, probe, config_dir, dtype)
    log.info("assembling %s from %s", path.name, ", ".join(p.name for p in parts.values()))
    return modern_parts.assemble_pipeline(cls, config_dir, transformer, parts, dtype, skip_t5=skip)


def _from_pretrained(cls, folder: Path, options: dict, shown: Path):
    try:
        return cls.from_pretrained(str(folder), **options)
    except MemoryError:
        raise
    except Exception as exc:  # diffusers raises OSError, ValueError, RuntimeError, ... here
        raise ModelError(
            f"The model '{shown.name}' could not be loaded from '{folder}': {_first_line(exc)}. "
            "The folder may be incomplete or damaged; copy it again or pick another model."
        ) from exc


def _all_in_one(cls, path: Path, companion: Path, options: dict, *, bundled: bool = False):
    """An original all-in-one file: every weight from the file, configs and tokenizers from the
    companion folder (or a bundled config folder with the bundled tokenizers)."""
    skip = {k: v for k, v in options.items() if k in {"text_encoder_3", "tokenizer_3"}}
    if bundled and cls.__name__.startswith("StableDiffusion3") and not _holds_t5(path):
        # SD3's "incl_clips" files have no T5: run without it, as "skip T5" does
        skip.update(text_encoder_3=None, tokenizer_3=None)
    if bundled:
        tokenizers = _bundled_tokenizers(companion, skip)
    else:
        tokenizers = _shared_clip_tokenizers(companion)
        tokenizers.update(_t5_tokenizers(companion, skip))
    if cls.__name__.startswith("Flux") and _original_flux_file(path):
        return _flux_all_in_one(cls, path, companion, options["dtype"])
    try:
        with scaled_single_file(path, options["dtype"]):  # diffusers ignores fp8 scales
            pipe = cls.from_single_file(
                str(path),
                config=str(companion),
                local_files_only=True,
                torch_dtype=options["dtype"],
                **skip,
                **tokenizers,
            )
    except (MemoryError, ModelError):
        raise
    except Exception as exc:  # noqa: BLE001 - diffusers' conversion errors have many types
        raise ModelError(
            f"'{path.name}' could not be loaded with the settings of '{companion.name}': "
            f"{_first_line(exc)}."
        ) from exc
    return _repair_single_file(pipe, path)


#: where ComfyUI's FLUX.1 all-in-one files keep each part, by config slot architecture
ALL_IN_ONE_PARTS = {
    "clip": ("text_encoders.clip_l.transformer.",),
    "t5": ("text_encoders.t5xxl.transformer.",),
    "vae": ("vae.", "first_stage_model."),
}


def _flux_all_in_one(cls, path: Path, config_dir: Path, dtype: torch.dtype):
    """ComfyUI's FLUX.1 all-in-one file: the transformer through Easel's converter (diffusers'
    only splits full-width ones), the VAE and text encoders as separate parts read from their
    prefixes of the same file. Each part reads only its own tensors, so the file is never in
    memory whole beside the model built from it."""
    from engine.library.header import read_header

    names = read_header(path).names()  # a broken header was refused by the probe already
    parts: dict[str, Any] = {}
    for slot in modern_parts.config_slots(config_dir):
        prefix = next(
            (p for p in ALL_IN_ONE_PARTS[slot.architecture] if any(k.startswith(p) for k in names)),
            None,
        )
        if prefix is None:
            expected = ALL_IN_ONE_PARTS[slot.architecture][0]
            raise ModelError(
                f"'{path.name}' is an incomplete FLUX.1 all-in-one file: nothing is under "
                f"'{expected}', where {slot.describe('flux')} belongs. Download it again, or "
                "load its transformer with separate text encoder and VAE files."
            )
        parts[slot.component] = (path, prefix)
    transformer = _original_flux(path, config_dir, dtype)
    pipe = modern_parts.assemble_pipeline(cls, config_dir, transformer, parts, dtype)
    return _repair_single_file(pipe, path)


def _repair_single_file(pipe, path: Path):
    """Two gaps of diffusers' single-file T5 loader: it fills `shared` only, and under
    transformers 5 the encoder's own `embed_tokens` (the same tensor in T5) stays on the meta
    device, so it is tied again; and it leaves the model in training mode (T5's dropout 0.1
    would make every encoding random), so every part is put in eval mode. Any other tensor left
    unloaded means the file lacks it."""
    for name in ("text_encoder", "text_encoder_2", "text_encoder_3"):
        encoder = getattr(pipe, name, None)
        if encoder is None or not hasattr(encoder, "shared"):
            continue
        embed = encoder.get_encoder().embed_tokens
        if embed.weight.device.type == "meta" and encoder.shared.weight.device.type != "meta":
            embed.weight = encoder.shared.weight
    for name, component in pipe.components.items():
        if isinstance(component, torch.nn.Module):
            component.eval()
            empty = [n for n, p in component.named_parameters() if p.device.type == "meta"]
            if empty:
                raise ModelError(
                    f"'{path.name}' lacks {len(empty)} tensors of its {name} (e.g. {empty[0]}); "
                    "the file is incomplete or of another layout."
                )
    return pipe


def _t5_tokenizers(companion: Path, skip: dict) -> dict:
    """The companion's T5 tokenizer (shared cache), or the bundled one when it has none."""
    from engine.sd import tokenizers

    out = {}
    for component in ("tokenizer_2", "tokenizer_3"):
        folder = companion / component
        if component in skip or not folder.is_dir():
            continue
        if "T5" in (folder / "tokenizer_config.json").read_text(encoding="utf-8", errors="ignore"):
            has_files = tokenizers.content_key(folder) is not None
            out[component] = tokenizers.t5_tokenizer(folder) if has_files else bundled_t5()
    return out


def bundled_t5():
    from engine.sd import tokenizers

    return tokenizers.bundled("t5")


def _bundled_tokenizers(config_dir: Path, skip: dict) -> dict:
    from engine.library.single_file import tokenizer_variants
    from engine.sd import tokenizers

    return {
        component: tokenizers.bundled(variant)
        for component, variant in tokenizer_variants(config_dir).items()
        if component not in skip
    }


def _holds_t5(path: Path) -> bool:
    from engine.library.header import BrokenFile, read_header

    try:
        return any(k.startswith("text_encoders.t5xxl.") for k in read_header(path).names())
    except BrokenFile:
        return True  # let the load report the damage


# -- transformer files ---------------------------------------------------------------------
def load_transformer_file(
    path: Path, spec: FamilySpec, probe: ProbeResult, companion: Path, dtype: torch.dtype
):
    """A transformer from a single file (safetensors, fp8 safetensors or GGUF)."""
    import diffusers

    gguf = probe.details.get("format") == "gguf"
    if spec.base == "flux" and not gguf and probe.details.get("key_layout") == "original":
        return _original_flux(path, companion, dtype)

    cls = getattr(diffusers, TRANSFORMER_CLASSES[spec.base])
    options: dict[str, Any] = {
        "config": str(companion),
        "subfolder": "transformer",
        "local_files_only": True,
        "torch_dtype": dtype,
        **transformer_overrides(spec.base, probe),
    }
    if gguf:
        options["quantization_config"] = _gguf_config(path, probe, dtype)
    try:
        with scaled_single_file(path, dtype):  # diffusers ignores fp8 scales
            return cls.from_single_file(str(path), **options)
    except (MemoryError, ModelError):
        raise
    except Exception as exc:  # noqa: BLE001 - conversion and shape errors have many types
        raise ModelError(
            f"The transformer in '{path.name}' could not be loaded: {_first_line(exc)}. The file "
            "may be damaged, or it is a variant Easel does not know."
        ) from exc


def _original_flux(path: Path, config_dir: Path, dtype: torch.dtype):
    """A FLUX.1 transformer in BFL's layout, through Easel's converter (engine.sd.flux_convert):
    the config folder's settings, every size read from the file's tensors."""
    from engine.sd.flux_convert import load_original_transformer

    config_path = config_dir / "transformer" / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"The FLUX.1 settings file '{config_path}' is missing or broken.") from exc
    return load_original_transformer(path, config, dtype)


def _original_flux_file(path: Path) -> bool:
    from engine.library.header import BrokenFile, read_header
    from engine.sd.flux_convert import is_original_flux

    try:
        return is_original_flux(read_header(path).names())
    except BrokenFile:
        return False  # let the load report the damage


def transformer_overrides(base: str, probe: ProbeResult) -> dict[str, Any]:
    """Config values read from the file's tensors (depth, guidance embedder, input width)."""
    details = probe.details
    if base == "flux2":
        out = {
            "num_layers": details.get("double_blocks"),
            "num_single_layers": details.get("single_blocks"),
            "guidance_embeds": details.get("guidance_embeds"),
        }
    elif base == "flux":
        out = {
            "num_layers": details.get("double_blocks"),
            "num_single_layers": details.get("single_blocks"),
            "guidance_embeds": details.get("guidance_embeds"),
            "in_channels": details.get("image_in_channels"),
            # a Fill or control file's output is narrower than its input (the bundled config
            # leaves out_channels to follow in_channels)
            "out_channels": details.get("image_out_channels"),
        }
    else:
        out = {"num_layers": details.get("depth")}
        if details.get("dual_attention_layers") is not None:
            out["dual_attention_layers"] = tuple(details["dual_attention_layers"])
    # False is a real setting (a schnell file with a dev companion); 0 or None: not read
    return {k: v for k, v in out.items() if v is not None and (v is False or v != 0)}


def _gguf_config(path: Path, probe: ProbeResult, dtype: torch.dtype):
    try:
        from diffusers import GGUFQuantizationConfig
        from diffusers.utils import is_gguf_available
    except ImportError:
        is_gguf_available = None
    if is_gguf_available is None or not is_gguf_available():
        raise ModelError(
            f"'{path.name}' is a GGUF file; reading it needs the 'gguf' package: "
            "pip install gguf (it ships with Easel's installer)."
        )
    if probe.status != "ok":
        raise ModelError(f"'{path.name}' cannot be loaded: {probe.reason}.")
    return GGUFQuantizationConfig(compute_dtype=dtype)


# -- companions ------------------------------------------------------------------------------
def find_companion(path: Path, spec: FamilySpec, probe: ProbeResult) -> Path:
    """The diffusers folder that supplies what the single file `path` lacks, or ModelError
    naming the files it needs and where to put them."""
    candidates = _sibling_folders(path) + _library_folders(spec.base)
    usable = [c for c in candidates if _companion_base(c) == spec.base]
    # the same variant first (its scheduler settings fit), then any of the family
    usable.sort(key=lambda c: _companion_variant(c) != spec.variant)
    needed = _needed_components(spec, probe)
    for folder in usable:
        if all((folder / part).is_dir() for part in needed):
            return folder
    raise ModelError(missing_components_message(path, spec, probe, needed))


def missing_components_message(
    path: Path, spec: FamilySpec, probe: ProbeResult, needed: list[str]
) -> str:
    what = (
        "holds only the transformer"
        if probe.details.get("contents") != "all-in-one"
        else "holds the weights but not the model settings and tokenizers"
    )
    family = FAMILY_NAMES[spec.base]
    return (
        f"'{path.name}' {what} of a {spec.title} model. Easel takes the rest from a {family} "
        f"model in diffusers folder layout (with {', '.join(p + '/' for p in needed)} and "
        f"model_index.json): put that folder next to the file in '{path.parent}', or add it "
        "to the model library."
    )


def _needed_components(spec: FamilySpec, probe: ProbeResult) -> list[str]:
    needed = ["transformer", *spec.companions]  # the transformer's config.json
    if probe.details.get("contents") == "all-in-one":
        needed = [p for p in needed if p.startswith(("tokenizer", "scheduler", "transformer"))]
    return needed


def _sibling_folders(path: Path) -> list[Path]:
    try:
        return sorted(p for p in path.parent.iterdir() if (p / "model_index.json").is_file())
    except OSError:
        return []


def _library_folders(base: str) -> list[Path]:
    try:
        from engine.library.records import ModelLibrary
        from engine.paths import database_path

        if not database_path().exists():
            return []
        records = ModelLibrary().list_models(kind="checkpoint", include_missing=False)
    except Exception as exc:  # noqa: BLE001 - a broken library must not stop a load
        log.debug("library not read for companions: %s", exc)
        return []
    return [Path(r.path) for r in records if r.base == base and r.layout == "diffusers"]


def _companion_base(folder: Path) -> str:
    from engine.library.probe_folder import probe_folder

    result = probe_folder(folder)
    return result.base if result.kind == "checkpoint" else ""


def _companion_variant(folder: Path) -> str:
    from engine.library.probe_folder import probe_folder

    return probe_folder(folder).variant


def _shared_clip_tokenizers(folder: Path) -> dict[str, Any]:
    from engine.sd.loading import _shared_tokenizers

    return _shared_tokenizers(folder)


def _first_line(exc: BaseException) -> str:
    text = [line for line in str(exc).strip().splitlines() if line.strip()]
    return re.sub(r"\s+", " ", text[0] if text else type(exc).__name__)[:300]
