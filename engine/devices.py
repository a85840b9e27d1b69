"""Where a job runs and in which number format: device choice, dtype policy, CPU threads.

Every family calls `select_device(runtime)` and `pick_dtype(device, runtime.precision)` so the
whole engine follows one policy:

- device: `auto` tries CUDA, then Apple MPS, then the CPU; an explicit choice that is not
  available is refused with a message (never silently moved to another device).
- dtype on CUDA: fp16 (half the memory, tensor cores); a VAE whose config asks for it
  (`force_upcast`, e.g. the SDXL VAE, which overflows in fp16) decodes in fp32.
- dtype on MPS: fp16; bf16 is not reliable on MPS, so it falls back to fp32.
- dtype on CPU: bf16 only where the CPU computes bf16 natively (AVX-512 BF16 or AMX), where it
  measured about 1.75x faster than fp32 for an SD 1.5 UNet; elsewhere bf16 is emulated and
  slower than fp32 (measured in bench/sd_step_time.py), so fp32. fp16 on the CPU is emulated and
  slow, so an fp16 request on the CPU runs in bf16 or fp32 instead (and says so).
- training on CPU and MPS stays fp32 unless asked otherwise: low precision hurts optimiser state.

CUDA and MPS cannot be exercised on the build machine, so their paths are kept small and go
through the same functions as the CPU path; the policy itself is pure and unit-tested.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass

import torch

from engine.api import DeviceChoice, Precision, RuntimeOptions
from engine.errors import InputError

log = logging.getLogger(__name__)

_DTYPES = {
    Precision.FP32: torch.float32,
    Precision.FP16: torch.float16,
    Precision.BF16: torch.bfloat16,
}


@dataclass(frozen=True)
class Availability:
    """What this machine offers; `detect()` fills it, tests build their own."""

    cuda: bool
    mps: bool
    cpu_bf16: bool
    cuda_bf16: bool = False

    @staticmethod
    def detect() -> Availability:
        cuda = torch.cuda.is_available()
        mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
        return Availability(
            cuda=cuda,
            mps=mps,
            cpu_bf16=cpu_has_native_bf16(),
            cuda_bf16=cuda and torch.cuda.is_bf16_supported(),
        )


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 arithmetic in hardware (x86 AVX-512 BF16 / AMX, Arm BF16).

    Read from /proc/cpuinfo flags (Linux). Elsewhere we cannot tell cheaply, so we say no and
    the CPU runs fp32, which is always correct.
    """
    override = os.environ.get("EASEL_CPU_BF16")
    if override is not None:
        return override.strip() not in {"", "0", "false", "no"}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return False
    flags = set(text.split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def select_device(
    runtime: RuntimeOptions | None = None, *, available: Availability | None = None
) -> torch.device:
    """The device a job runs on. Raises InputError when an explicit choice is not available."""
    choice = (runtime or RuntimeOptions()).device
    have = available or Availability.detect()
    if choice is DeviceChoice.AUTO:
        if have.cuda:
            return torch.device("cuda")
        if have.mps:
            return torch.device("mps")
        return torch.device("cpu")
    if choice is DeviceChoice.CUDA and not have.cuda:
        raise InputError(
            "CUDA was chosen but no NVIDIA GPU is usable here (or this torch build has no CUDA). "
            "Choose 'auto' or 'cpu', or install a CUDA build of torch (see README, TORCH_SPEC)."
        )
    if choice is DeviceChoice.MPS and not have.mps:
        raise InputError(
            "Apple MPS was chosen but is not available on this machine. Choose 'auto' or 'cpu'."
        )
    return torch.device(choice.value)


def pick_dtype(
    device: torch.device | str,
    precision: Precision | str = Precision.AUTO,
    *,
    training: bool = False,
    available: Availability | None = None,
) -> torch.dtype:
    """The compute dtype for model weights on `device` under the user's precision setting."""
    device_type = torch.device(device).type
    precision = Precision(precision)
    have = available or _lazy_availability(device_type)
    if device_type == "cuda":
        return _cuda_dtype(precision, training=training, have=have)
    if device_type == "mps":
        return _mps_dtype(precision, training=training)
    return _cpu_dtype(precision, training=training, have=have)


def _lazy_availability(device_type: str) -> Availability:
    # Only the CPU branch needs to know about bf16 on the CPU; avoid probing CUDA needlessly.
    if device_type == "cpu":
        return Availability(cuda=False, mps=False, cpu_bf16=cpu_has_native_bf16())
    return Availability.detect()


def _cuda_dtype(precision: Precision, *, training: bool, have: Availability) -> torch.dtype:
    if precision is Precision.AUTO:
        if training:
            return torch.bfloat16 if have.cuda_bf16 else torch.float32
        return torch.float16
    if precision is Precision.BF16 and not have.cuda_bf16:
        log.warning("this GPU has no bf16 support; using fp16")
        return torch.float16
    return _DTYPES[precision]


def _mps_dtype(precision: Precision, *, training: bool) -> torch.dtype:
    if precision is Precision.AUTO:
        return torch.float32 if training else torch.float16
    if precision is Precision.BF16:
        log.warning("bf16 is not reliable on Apple MPS; using fp32")
        return torch.float32
    return _DTYPES[precision]


def _cpu_dtype(precision: Precision, *, training: bool, have: Availability) -> torch.dtype:
    if precision is Precision.AUTO:
        return torch.bfloat16 if have.cpu_bf16 and not training else torch.float32
    if precision is Precision.FP16:
        fallback = torch.bfloat16 if have.cpu_bf16 else torch.float32
        log.warning("fp16 is emulated (slow) on the CPU; using %s", fallback)
        return fallback
    return _DTYPES[precision]


def vae_dtype(dtype: torch.dtype, *, force_upcast: bool) -> torch.dtype:
    """The VAE's dtype: fp32 when weights run in fp16 and the VAE overflows there.

    `force_upcast` comes from the VAE's own config (diffusers sets it for VAEs known to
    overflow in fp16, such as SDXL's); bf16 has fp32's range and never needs it.
    """
    if dtype == torch.float16 and force_upcast:
        return torch.float32
    return dtype


def apply_cpu_threads(count: int) -> int:
    """Set torch's intra-op threads: `count`, or every core this process may use when 0.

    On a shared 2-core machine torch with 2 threads collapses when another process holds a core,
    so this is a user setting, applied per job. Returns the count in effect.
    """
    if count < 0:
        raise InputError("CPU threads must be 0 (all cores) or a positive number.")
    wanted = count or usable_cores()
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
    return wanted


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def prepare(runtime: RuntimeOptions | None = None) -> tuple[torch.device, torch.dtype]:
    """Device and dtype for an inference job, with CPU threads applied: the one-call entry."""
    runtime = runtime or RuntimeOptions()
    device = select_device(runtime)
    apply_cpu_threads(runtime.cpu_threads)
    return device, pick_dtype(device, runtime.precision)


def dtype_name(dtype: torch.dtype) -> str:
    """'fp32', 'fp16' or 'bf16': how settings and metadata spell a dtype."""
    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}.get(
        dtype, str(dtype).replace("torch.", "")
    )
