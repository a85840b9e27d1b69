"""Free a cached pipeline's text encoders after the prompts are encoded, when RAM is short.

Once the prompt embeddings exist, the text encoders (246 MB in bf16 for SD 1.5's CLIP, 1.6 GB
for SDXL's two) sit idle through the UNet steps and the VAE decode, where a job's memory peaks.
When the memory plan says RAM is short (`MemoryPlan.free_text_encoder`), their weights are
written once to a cache file in the data folder and dropped from memory (each parameter keeps
its dtype and device, so the pipeline's `.dtype`/`.device` lookups still answer, but holds no
data). The next call of a freed encoder - the next job's prompts, whatever path reaches it -
first reads the weights back from that file tensor by tensor (engine/library/checkpoint_stream),
through a forward pre-hook, so no caller has to remember to restore them. The file goes when
the model leaves the cache (the module is collected) or at the next start (stale files).
"""

from __future__ import annotations

import logging
import os
import uuid
import weakref
from pathlib import Path

import torch

log = logging.getLogger(__name__)

TEXT_ENCODERS = ("text_encoder", "text_encoder_2")
_ENV = "EASEL_FREE_TEXT_ENCODER"


def wanted(plan_says: bool) -> bool:
    """The memory plan's choice unless `EASEL_FREE_TEXT_ENCODER` (1/0) overrides it."""
    value = os.environ.get(_ENV)
    if value is None:
        return plan_says
    return value.strip().lower() not in {"", "0", "false", "no", "off"}


def release_text_encoders(pipe) -> int:
    """Free every text encoder of `pipe` (reloaded on its next call); returns bytes freed."""
    freed = 0
    for name in TEXT_ENCODERS:
        encoder = getattr(pipe, name, None)
        if isinstance(encoder, torch.nn.Module):
            freed += _release(encoder)
    if freed:
        from engine.native_memory import return_freed_memory

        return_freed_memory()  # else glibc keeps the pages and the RSS does not fall
        log.info("text encoders freed after encoding: %.0f MB", freed / 2**20)
    return freed


def is_released(module: torch.nn.Module) -> bool:
    return bool(getattr(module, "_easel_released", False))


def restore(module: torch.nn.Module) -> None:
    """Read the weights back from the cache file (what the pre-hook does on the next call)."""
    if not is_released(module):
        return
    from engine.library.checkpoint_stream import read_checkpoint

    state = read_checkpoint(Path(module._easel_weights_file), None)
    for name, param in module.named_parameters():
        stored = state.get(_plain_name(name))
        if stored is not None:  # LoRA layers injected meanwhile keep their own weights
            param.data = stored
    module._easel_released = False
    log.info("text encoder weights read back from %s", Path(module._easel_weights_file).name)


def _release(module: torch.nn.Module) -> int:
    if is_released(module) or _device_type(module) != "cpu":
        return 0  # a GPU's copy is VRAM, not the RAM this saves
    if getattr(module, "_easel_weights_file", None) is None:
        module._easel_weights_file = str(_write_weights(module))
        weakref.finalize(module, _remove_quietly, module._easel_weights_file)
        module.register_forward_pre_hook(_restore_before_call)
    freed = 0
    for name, param in module.named_parameters():
        if _is_adapter(name):
            continue
        freed += param.numel() * param.element_size()
        param.data = torch.empty(0, dtype=param.dtype, device=param.device)
    module._easel_released = True
    return freed


def _restore_before_call(module, args):
    restore(module)


def _write_weights(module: torch.nn.Module) -> Path:
    """The encoder's own weights (LoRA layers left out) in a cache file, written atomically."""
    from safetensors.torch import save_file

    folder = _cache_folder()
    target = folder / f"{os.getpid()}-{uuid.uuid4().hex[:12]}.safetensors"
    state = {
        _plain_name(name): param.detach().contiguous()
        for name, param in module.named_parameters()
        if not _is_adapter(name)
    }
    partial = target.with_suffix(".partial")
    save_file(state, str(partial))
    os.replace(partial, target)
    return target


def _plain_name(name: str) -> str:
    # peft wraps a layer a LoRA targets: "q_proj.weight" becomes "q_proj.base_layer.weight"
    return name.replace(".base_layer.", ".")


def _is_adapter(name: str) -> bool:
    return ".lora_" in name


def _device_type(module: torch.nn.Module) -> str:
    first = next(module.parameters(), None)
    return first.device.type if first is not None else "cpu"


def _cache_folder() -> Path:
    from engine.paths import user_data_dir

    folder = user_data_dir() / "cache" / "text-encoders"
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale(folder)
    return folder


def _remove_stale(folder: Path) -> None:
    """Files a process that has ended left behind (a crash, a kill)."""
    for path in folder.glob("*.safetensors"):
        pid = path.name.split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            _remove_quietly(str(path))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
