"""Speed levers for Stable Diffusion pipelines, chosen per device and kept only where they pay.

The dtype itself is `engine.devices.pick_dtype`'s choice (bf16 where the CPU computes it
natively, else fp32). On top of it, measured with `bench/cpu_floor.py --levers` on the
2-core AVX-512-BF16/AMX machine (docs/benchmarks.md, "CPU speed (issue 15)"):

- channels_last memory format for the UNet and the VAE: oneDNN's convolutions run NHWC natively;
  NCHW tensors are reordered around every conv. On by default on every device.
- SDPA attention: diffusers' default processor (`AttnProcessor2_0`) calls
  `F.scaled_dot_product_attention`, which on the CPU runs torch's fused flash kernel;
  `sdpa_in_use` checks it and `bench/cpu_floor.py` reports it.
- fused QKV projections: one matmul instead of three; it changes module structure that LoRA
  loading targets (to_q/to_k/to_v), so it is off unless measured worth it and asked for
  (`EASEL_FUSE_QKV=1`).
- torch.compile: off on the CPU by default. `bench/compile_cache.py` (SD 1.5 at 512 px, 2 cores)
  measured a compiled step equal to the eager bf16 + channels_last one within the noise (3.60 vs
  3.52 s; with inductor's freezing 3.44, max-autotune slower), for a 68 s first compile and an
  11 s start from the warm cache: the step is oneDNN's convolutions and torch's flash attention
  either way. `EASEL_TORCH_COMPILE=1` turns it on with a persistent inductor cache in the data
  folder. A compile failure falls back to eager execution for good (`compile_with_fallback`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpeedPlan:
    """Which levers a pipeline gets. `notes` say what was skipped and why (for logs)."""

    channels_last: bool = True
    fuse_qkv: bool = False
    compile_unet: bool = False
    notes: tuple[str, ...] = field(default=(), compare=False)

    def describe(self) -> str:
        levers = [
            name
            for name, on in (
                ("channels_last", self.channels_last),
                ("fused_qkv", self.fuse_qkv),
                ("compile", self.compile_unet),
            )
            if on
        ]
        return "+".join(levers) or "none"


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return value.strip().lower() not in {"", "0", "false", "no", "off"}


def plan_for(device: torch.device | str, dtype: torch.dtype) -> SpeedPlan:
    """The automatic policy; `EASEL_CHANNELS_LAST`, `EASEL_FUSE_QKV`, `EASEL_TORCH_COMPILE`
    (1/0) override each lever for measurements and for users who know their machine."""
    device_type = torch.device(device).type
    channels_last = _env_flag("EASEL_CHANNELS_LAST")
    fuse = _env_flag("EASEL_FUSE_QKV")
    compile_flag = _env_flag("EASEL_TORCH_COMPILE")
    notes = []
    if compile_flag is None:
        compile_flag = False
        notes.append(f"torch.compile off on {device_type} (EASEL_TORCH_COMPILE=1 to try it)")
    return SpeedPlan(
        channels_last=True if channels_last is None else channels_last,
        fuse_qkv=bool(fuse),
        compile_unet=compile_flag,
        notes=tuple(notes),
    )


def apply_speed_plan(pipe, plan: SpeedPlan) -> SpeedPlan:
    """Apply `plan` to a loaded pipeline's UNet and VAE once; returns the plan in effect."""
    applied = getattr(pipe, "_easel_speed_plan", None)
    if applied is not None:
        return applied
    unet = getattr(pipe, "unet", None)
    vae = getattr(pipe, "vae", None)
    if plan.channels_last and unet is not None:
        to_channels_last(unet)
    if vae is not None:
        prepare_vae(vae, plan)
    fused = plan.fuse_qkv and unet is not None and _try_fuse(unet)
    compiled = plan.compile_unet and unet is not None
    if compiled:
        compile_with_fallback(unet, cache_dir=compile_cache_dir())
    in_effect = SpeedPlan(plan.channels_last, bool(fused), compiled, plan.notes)
    pipe._easel_speed_plan = in_effect
    log.info("speed levers: %s", in_effect.describe())
    return in_effect


def prepare_vae(vae, plan: SpeedPlan) -> None:
    """The VAE's levers: channels_last (its decoder is all 3x3 convolutions at up to 512x512)."""
    if plan.channels_last:
        to_channels_last(vae)


def to_channels_last(model: torch.nn.Module) -> None:
    """`model.to(memory_format=channels_last)`, one top-level block at a time with the freed
    NCHW copies handed back to the OS in between: converted whole, SD 1.5's old copies stayed in
    the heap and made loading the job's memory peak (+350 MiB, engine.native_memory)."""
    from engine.native_memory import return_freed_memory

    for child in model.children():
        child.to(memory_format=torch.channels_last)
        return_freed_memory()
    model.to(memory_format=torch.channels_last)  # the model's own tensors, if any


def _try_fuse(unet) -> bool:
    try:
        unet.fuse_qkv_projections()
    except (ValueError, AttributeError, RuntimeError) as exc:
        log.info("fused QKV not used: %s", exc)
        return False
    return True


def sdpa_in_use(module) -> bool:
    """True when every attention processor of `module` calls torch's fused SDPA kernels."""
    processors = getattr(module, "attn_processors", {})
    return bool(processors) and all(
        "2_0" in type(processor).__name__ for processor in processors.values()
    )


# -- torch.compile with a clean fallback ------------------------------------------------------
def compile_cache_dir() -> str:
    """A persistent inductor cache in the data folder, so a second run compiles from the cache."""
    from engine.paths import user_data_dir

    folder = user_data_dir() / "cache" / "torch-compile"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


def compile_with_fallback(
    module: torch.nn.Module,
    *,
    cache_dir: str | None = None,
    compiler: Callable[[Callable], Callable] | None = None,
) -> None:
    """Make `module.forward` the compiled forward; if compiling or running it fails, the module
    goes back to eager execution for the rest of its life and the job goes on.

    Compiling is lazy (it happens on the first call), so the failure can only be caught there.
    """
    if cache_dir:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", cache_dir)
        os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    eager_forward = module.forward
    try:
        compiled_forward = (compiler or torch.compile)(eager_forward)
    except Exception as exc:  # noqa: BLE001 - any compiler error means: stay eager
        log.warning("torch.compile unavailable, running eagerly: %s", exc)
        return
    state = {"failed": False}

    def forward(*args, **kwargs):
        if state["failed"]:
            return eager_forward(*args, **kwargs)
        try:
            return compiled_forward(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - inductor raises many kinds of errors
            state["failed"] = True
            module._easel_compile_error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("torch.compile failed, running eagerly from now on: %s", exc)
            return eager_forward(*args, **kwargs)

    module.forward = forward
    module._easel_compile_state = state
