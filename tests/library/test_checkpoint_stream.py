"""The streamed checkpoint reader gives the tensors safetensors gives, in the compute dtype."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.library.checkpoint_stream import read_checkpoint


def test_tensors_equal_safetensors_own_reader_and_floats_take_the_dtype(tmp_path):
    path = tmp_path / "model.safetensors"
    torch.manual_seed(0)
    save_file(
        {
            "a.weight": torch.randn(3, 5, dtype=torch.float16),
            "b.bias": torch.randn(7),
            "steps": torch.tensor([1, 2, 3], dtype=torch.int64),
            "empty": torch.zeros(0),
        },
        str(path),
    )
    expected = load_file(str(path))
    as_stored = read_checkpoint(path, None)
    assert set(as_stored) == set(expected)
    for name, tensor in expected.items():
        assert as_stored[name].dtype == tensor.dtype and torch.equal(as_stored[name], tensor)
    converted = read_checkpoint(path, torch.bfloat16)
    assert converted["a.weight"].dtype == converted["b.bias"].dtype == torch.bfloat16
    assert converted["steps"].dtype == torch.int64  # integers keep their type
    assert torch.equal(converted["a.weight"], expected["a.weight"].to(torch.bfloat16))


def test_a_truncated_file_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.randn(64, 64)}, str(path))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(Exception, match="truncated|past the end|larger"):
        read_checkpoint(path, torch.float32)


def test_a_single_file_loads_in_the_compute_dtype_with_every_weight(tmp_path):
    from engine.library.single_file import load_single_file_pipeline

    from .builders import save_config_folder, tiny_sd_pipeline
    from .ldm_layout import pipeline_to_ldm

    torch.set_num_threads(1)
    original = tiny_sd_pipeline(xl=False)
    checkpoint = tmp_path / "model.safetensors"
    save_file(pipeline_to_ldm(original), str(checkpoint))
    config = save_config_folder(original, tmp_path / "config")
    loaded = load_single_file_pipeline(checkpoint, torch_dtype=torch.bfloat16, config=config)
    for name in ("unet", "vae", "text_encoder"):
        want = getattr(original, name).state_dict()
        got = getattr(loaded, name).state_dict()
        for key, tensor in want.items():
            if tensor.is_floating_point():
                assert got[key].dtype == torch.bfloat16, f"{name}.{key}"
                assert torch.equal(got[key], tensor.to(torch.bfloat16)), f"{name}.{key}"
