"""The device and dtype policy: pure decisions over what a machine offers."""

from __future__ import annotations

import pytest
import torch

from engine.api import RuntimeOptions
from engine.devices import (
    Availability,
    apply_cpu_threads,
    dtype_name,
    pick_dtype,
    prepare,
    select_device,
    usable_cores,
    vae_dtype,
)
from engine.errors import InputError

CPU_ONLY = Availability(cuda=False, mps=False, cpu_bf16=False)
CPU_BF16 = Availability(cuda=False, mps=False, cpu_bf16=True)
GPU_BOX = Availability(cuda=True, mps=False, cpu_bf16=False, cuda_bf16=True)
OLD_GPU = Availability(cuda=True, mps=False, cpu_bf16=False, cuda_bf16=False)
MAC = Availability(cuda=False, mps=True, cpu_bf16=False)


@pytest.mark.parametrize(
    ("have", "expected"),
    [(GPU_BOX, "cuda"), (MAC, "mps"), (CPU_ONLY, "cpu"), (Availability(True, True, True), "cuda")],
)
def test_auto_prefers_cuda_then_mps_then_cpu(have, expected):
    assert select_device(RuntimeOptions(device="auto"), available=have).type == expected


def test_explicit_device_that_is_missing_is_refused_with_a_way_out():
    with pytest.raises(InputError, match="CUDA was chosen.*'cpu'"):
        select_device(RuntimeOptions(device="cuda"), available=CPU_ONLY)
    with pytest.raises(InputError, match="MPS was chosen"):
        select_device(RuntimeOptions(device="mps"), available=GPU_BOX)
    assert select_device(RuntimeOptions(device="cpu"), available=GPU_BOX).type == "cpu"


def test_unknown_device_name_is_an_input_error():
    with pytest.raises(InputError, match="Unknown device 'tpu'"):
        RuntimeOptions(device="tpu")


@pytest.mark.parametrize(
    ("device", "precision", "have", "training", "expected"),
    [
        ("cuda", "auto", GPU_BOX, False, torch.float16),
        ("cuda", "auto", GPU_BOX, True, torch.bfloat16),
        ("cuda", "auto", OLD_GPU, True, torch.float32),
        ("cuda", "bf16", OLD_GPU, False, torch.float16),
        ("cuda", "fp32", GPU_BOX, False, torch.float32),
        ("mps", "auto", MAC, False, torch.float16),
        ("mps", "auto", MAC, True, torch.float32),
        ("mps", "bf16", MAC, False, torch.float32),
        ("cpu", "auto", CPU_ONLY, False, torch.float32),
        ("cpu", "auto", CPU_BF16, False, torch.bfloat16),
        ("cpu", "auto", CPU_BF16, True, torch.float32),
        ("cpu", "fp16", CPU_ONLY, False, torch.float32),
        ("cpu", "fp16", CPU_BF16, False, torch.bfloat16),
        ("cpu", "bf16", CPU_ONLY, False, torch.bfloat16),
        ("cpu", "fp32", CPU_BF16, False, torch.float32),
    ],
)
def test_dtype_policy(device, precision, have, training, expected):
    assert pick_dtype(device, precision, training=training, available=have) == expected


def test_vae_upcast_only_for_fp16_vaes_that_ask_for_it():
    assert vae_dtype(torch.float16, force_upcast=True) == torch.float32
    assert vae_dtype(torch.float16, force_upcast=False) == torch.float16
    assert vae_dtype(torch.bfloat16, force_upcast=True) == torch.bfloat16
    assert vae_dtype(torch.float32, force_upcast=True) == torch.float32


def test_cpu_bf16_detection_can_be_overridden(monkeypatch):
    from engine import devices

    devices.cpu_has_native_bf16.cache_clear()
    monkeypatch.setenv("EASEL_CPU_BF16", "1")
    try:
        assert pick_dtype("cpu", "auto") == torch.bfloat16
        devices.cpu_has_native_bf16.cache_clear()
        monkeypatch.setenv("EASEL_CPU_BF16", "0")
        assert pick_dtype("cpu", "auto") == torch.float32
    finally:
        devices.cpu_has_native_bf16.cache_clear()


def test_thread_count_setting_is_applied_and_zero_means_all_cores():
    before = torch.get_num_threads()
    try:
        assert apply_cpu_threads(1) == 1
        assert torch.get_num_threads() == 1
        assert apply_cpu_threads(0) == usable_cores()
        assert torch.get_num_threads() == usable_cores()
        with pytest.raises(InputError):
            apply_cpu_threads(-1)
    finally:
        torch.set_num_threads(before)


def test_prepare_on_this_machine_gives_cpu_and_a_cpu_dtype():
    before = torch.get_num_threads()
    try:
        device, dtype = prepare(RuntimeOptions(device="cpu", precision="fp32", cpu_threads=1))
        assert (device.type, dtype, torch.get_num_threads()) == ("cpu", torch.float32, 1)
    finally:
        torch.set_num_threads(before)


def test_dtype_names():
    assert [dtype_name(d) for d in (torch.float32, torch.float16, torch.bfloat16)] == [
        "fp32",
        "fp16",
        "bf16",
    ]
