"""Load a single-file Stable Diffusion checkpoint into a diffusers pipeline, fully offline.

diffusers' `from_single_file` fetches component configs and tokenizers from the Hugging Face hub
unless it is handed a local diffusers-layout folder. Easel ships those folders for every family it
runs (`resources/configs/<name>`) and the CLIP tokenizers (`resources/tokenizers/`); the probe
picks the folder from the checkpoint's tensors. `HF_HUB_OFFLINE=1` and `local_files_only=True`
make any forgotten path fail loudly instead of reaching for the network.

Pickled checkpoints are checked by the probe with `torch.load(weights_only=True)` before diffusers
(which also loads with `weights_only=True`) sees them, so a pickle that needs code is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from engine.errors import ModelError
from engine.library.probe import BASE_NAMES, TRANSFORMER_BASES, ProbeResult, probe_path
from engine.paths import resource

#: `base` arguments accepted as a config override, mapped to a bundled config folder.
CONFIG_ALIASES = {
    "sd1": "sd1",
    "sd2": "sd2-768-v",
    "sd2-v": "sd2-768-v",
    "sd2-epsilon": "sd2-512",
    "sdxl": "sdxl-base",
    "sdxl-refiner": "sdxl-refiner",
}


def bundled_configs() -> list[str]:
    """The bundled Stable Diffusion (UNet) configs; SD3/FLUX ones belong to modern_loading."""
    root = resource("configs")
    return sorted(p.name for p in root.iterdir() if (p / "unet").is_dir())


def choose_config(path: str | Path, *, base: str | None = None) -> tuple[Path, ProbeResult]:
    """The bundled config folder for checkpoint `path` (or the one `base` names), with the probe.

    Raises ModelError for anything that is not a loadable single-file checkpoint.
    """
    path = Path(path)
    result = check_checkpoint(path)
    name = result.config
    if base:
        name = CONFIG_ALIASES.get(base, base)
        if name not in bundled_configs():
            choices = ", ".join(bundled_configs())
            raise ModelError(f"Unknown model type '{base}'. Choose one of: {choices}.")
    if not name:
        raise ModelError(
            f"'{path.name}' is {_describe(result)}, and Easel has no settings for that kind yet."
        )
    return resource("configs", name), result


def check_checkpoint(path: Path, *, allow_unknown_family: bool = False) -> ProbeResult:
    """Probe `path` and refuse anything that is not a single-file checkpoint Easel can load."""
    if not path.is_file():
        raise ModelError(f"Model file not found: '{path}'.")
    result = probe_path(path)
    if result.status in {"broken", "unsafe"}:
        raise ModelError(
            result.reason
            if result.status == "unsafe"
            else f"'{path.name}' is damaged: {result.reason}."
        )
    if result.kind != "checkpoint":
        raise ModelError(
            f"'{path.name}' is {_describe(result)}, not a full model. Pick a checkpoint as the "
            + ("model and add this file as a LoRA." if result.kind == "lora" else "model.")
        )
    family_unknown = result.status == "unsupported" and not result.base
    if result.base in TRANSFORMER_BASES and result.ok:
        raise ModelError(
            f"'{path.name}' is {_describe(result)}: it is loaded with its transformer family's "
            "own loader (engine.sd.modern_loading), not as a Stable Diffusion checkpoint."
        )
    if result.base in TRANSFORMER_BASES or (
        result.status != "ok" and not (allow_unknown_family and family_unknown)
    ):
        raise ModelError(f"'{path.name}' cannot be loaded: {result.reason}.")
    return result


def load_single_file_pipeline(
    path: str | Path,
    *,
    torch_dtype: Any = None,
    base: str | None = None,
    config: str | Path | None = None,
    pipeline_class: Any = None,
):
    """A diffusers pipeline for checkpoint `path`, built from bundled configs with no network.

    `base` forces a bundled config ("sd2-512", "sdxl", ...) when the probe cannot decide;
    `config` points at another local diffusers-layout folder (tests use tiny ones). The pipeline
    class is the config's (`StableDiffusionPipeline`, `StableDiffusionXLPipeline`, their inpaint
    variants, `StableDiffusionXLImg2ImgPipeline` for the refiner) unless `pipeline_class` is given.
    """
    path = Path(path)
    if config is not None:
        result = check_checkpoint(path, allow_unknown_family=True)
        config_dir = Path(config)
    else:
        config_dir, result = choose_config(path, base=base)
    os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub is first imported, if it is not yet
    pipeline_class = pipeline_class or _pipeline_class(config_dir)
    quiet_progress_bars()
    kwargs = _component_overrides(config_dir, result)
    try:
        # Every weight comes from the checkpoint: skip transformers' random initialisation of
        # the text encoders, which on the meta device still costs about 0.3 s per load.
        from engine.library.checkpoint_stream import streamed_single_file

        # tensor by tensor into the compute dtype: the fp16 file and a bf16 copy never coexist
        with _no_init_weights(), streamed_single_file(torch_dtype):
            pipe = pipeline_class.from_single_file(
                str(path),
                config=str(config_dir),
                local_files_only=True,
                torch_dtype=torch_dtype,
                **kwargs,
            )
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(
            f"Could not load '{path.name}' as {_describe(result)}: {_short(exc)}. "
            "If the model type was guessed wrong, pick it explicitly (e.g. SD 2.x 512 vs 768-v)."
        ) from exc
    except Exception as exc:  # diffusers' SingleFileComponentError and friends
        if type(exc).__module__.startswith("diffusers"):
            raise ModelError(f"Could not load '{path.name}': {_short(exc)}.") from exc
        raise
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _no_init_weights():
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers
        from contextlib import nullcontext

        return nullcontext()
    return no_init_weights()


def quiet_progress_bars() -> None:
    """No terminal progress bars from inside the engine: Easel reports progress through its own
    events. tqdm starts a never-ending monitor thread for every bar, even a disabled one (pipeline
    calls create one per run), so the monitor is switched off too."""
    import tqdm
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
    tqdm.tqdm.monitor_interval = 0


def _pipeline_class(config_dir: Path):
    import diffusers

    index = _read_json(config_dir / "model_index.json")
    name = index.get("_class_name", "")
    pipeline_class = getattr(diffusers, name, None)
    if pipeline_class is None:
        raise ModelError(f"The model settings in '{config_dir}' name an unknown pipeline '{name}'.")
    return pipeline_class


def _component_overrides(config_dir: Path, result: ProbeResult) -> dict[str, Any]:
    """Tokenizers from resources/tokenizers (named in the folder's easel.json), and the
    scheduler with the probed prediction type when it differs from the config's default."""
    from engine.sd import tokenizers

    overrides: dict[str, Any] = {
        component: tokenizers.bundled(variant)
        for component, variant in tokenizer_variants(config_dir).items()
    }
    if "v_prediction" in result.variant.split(","):
        scheduler_config = _read_json(config_dir / "scheduler" / "scheduler_config.json")
        if scheduler_config.get("prediction_type", "epsilon") != "v_prediction":
            import diffusers

            scheduler_class = getattr(diffusers, scheduler_config["_class_name"])
            overrides["scheduler"] = scheduler_class.from_config(
                scheduler_config, prediction_type="v_prediction"
            )
    return overrides


def tokenizer_variants(config_dir: Path) -> dict[str, str]:
    """{component: resources/tokenizers variant} named in a bundled config's easel.json."""
    easel = config_dir / "easel.json"
    return dict(_read_json(easel).get("tokenizers", {})) if easel.is_file() else {}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"Easel's model settings file '{path}' is missing or broken.") from exc


def _describe(result: ProbeResult) -> str:
    """'an SDXL checkpoint', 'a LoRA', ... for messages."""
    if result.kind == "unknown":
        return "not a model Easel recognises"
    name = BASE_NAMES.get(result.base, "")
    kind = {"lora": "LoRA", "vae": "VAE"}.get(result.kind, result.kind)
    text = f"{name} {kind}" if name else kind
    article = "an" if text.startswith(("SD", "upscaler", "embedding")) else "a"
    return f"{article} {text}"


def _short(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else type(exc).__name__
