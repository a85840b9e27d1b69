"""Scaled-fp8 dequantisation (engine.library.fp8) and the streamed reader that uses it, down to an
SD 1.x single file in ComfyUI's scaled-fp8 layout loaded through Easel's loader."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from engine.errors import ModelError
from engine.library.checkpoint_stream import read_checkpoint
from engine.library.fp8 import dequantise_state
from tests.helpers.scaled_fp8 import psnr, to_scaled_fp8

U = "model.diffusion_model."


def _weights(seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        "a.weight": torch.randn(6, 4, generator=generator),
        "a.bias": torch.randn(6, generator=generator),
        "b.weight": 3 * torch.randn(5, 6, generator=generator),
        "norm.weight": torch.ones(5),
    }


def test_read_checkpoint_applies_each_scale_exactly_and_drops_scales(tmp_path):
    scaled = to_scaled_fp8(_weights())
    scaled["a.scale_input"] = torch.ones(())  # activation scale: not a weight, dropped
    path = tmp_path / "m.safetensors"
    save_file(scaled, str(path))
    for dtype in (torch.float32, torch.bfloat16, None):
        state = read_checkpoint(path, dtype)
        assert set(state) == {"a.weight", "a.bias", "b.weight", "norm.weight"}
        for name in ("a.weight", "b.weight"):
            want = scaled[name].to(torch.float32) * scaled[name[:-6] + "scale_weight"]
            assert torch.equal(state[name], want.to(dtype or torch.float32)), (name, dtype)
        assert torch.equal(state["a.bias"], scaled["a.bias"].to(dtype or torch.float32))


def test_a_per_row_weight_scale_and_a_plain_fp8_file(tmp_path):
    weight = torch.randn(6, 4)
    rows = weight.abs().amax(dim=1, keepdim=True) / 448  # (6, 1): one scale per output row
    fp8 = (weight / rows).to(torch.float8_e4m3fn)
    state = dequantise_state({"l.weight": fp8, "l.weight_scale": rows}, torch.float32)
    assert set(state) == {"l.weight"}
    assert torch.equal(state["l.weight"], fp8.float() * rows)
    assert (state["l.weight"] - weight).abs().max() < 0.07 * weight.abs().max()
    flat = dequantise_state({"l.weight": fp8, "l.weight_scale": rows[:, 0]}, torch.float32)
    assert torch.equal(flat["l.weight"], state["l.weight"])
    path = tmp_path / "plain.safetensors"  # fp8 without scales: the dtype table knows F8 now
    save_file({"l.weight": fp8, "e.weight": fp8.to(torch.float8_e5m2)}, str(path))
    plain = read_checkpoint(path, torch.float16)
    assert plain["l.weight"].dtype == plain["e.weight"].dtype == torch.float16
    assert torch.equal(plain["l.weight"], fp8.to(torch.float16))


def test_a_scale_without_a_weight_or_of_the_wrong_shape_is_one_clear_error(tmp_path):
    scaled = to_scaled_fp8(_weights())
    path = tmp_path / "bad.safetensors"
    save_file({k: v for k, v in scaled.items() if k != "b.weight"}, str(path))
    with pytest.raises(ModelError, match=r"'bad.safetensors' holds the fp8 scale 'b\.scale_we"):
        read_checkpoint(path, torch.float32)
    save_file({**scaled, "b.scale_weight": torch.ones(6)}, str(path))  # b has 5 rows
    with pytest.raises(ModelError, match=r"shape \(6,\) for a weight of shape \(5, 6\)"):
        read_checkpoint(path, torch.float32)


def _sd1(tmp_path):
    from tests.library.builders import save_config_folder, tiny_sd_pipeline
    from tests.library.ldm_layout import pipeline_to_ldm

    torch.set_num_threads(1)
    original = tiny_sd_pipeline(xl=False)
    state = pipeline_to_ldm(original)
    paths = {}
    for name, converted in (
        ("full", state),
        ("scaled", to_scaled_fp8(state, marker_prefix=U)),
        ("unscaled", to_scaled_fp8(state, scales=False)),
    ):
        paths[name] = tmp_path / f"sd1-{name}.safetensors"
        save_file({k: v.contiguous() for k, v in converted.items()}, str(paths[name]))
    return paths, save_config_folder(original, tmp_path / "config")


def _picture(path, config):
    from engine.library.single_file import load_single_file_pipeline

    pipe = load_single_file_pipeline(path, torch_dtype=torch.float32, config=config)
    generator = torch.Generator().manual_seed(5)
    kwargs = dict(num_inference_steps=2, height=32, width=32, output_type="np")
    return pipe("a photo of a cat", generator=generator, **kwargs).images, pipe


def test_an_sd1_scaled_fp8_single_file_makes_nearly_the_full_picture(tmp_path, no_network):
    from engine.library.probe import probe_path

    paths, config = _sd1(tmp_path)
    probes = [probe_path(paths[name]) for name in ("full", "scaled")]  # the scales change nothing
    assert probes[1].kind == "checkpoint" and probes[1].details == probes[0].details
    full, _ = _picture(paths["full"], config)
    scaled, pipe = _picture(paths["scaled"], config)
    unscaled, _ = _picture(paths["unscaled"], config)
    near, far = psnr(scaled, full), psnr(unscaled, full)
    print(f"sd1: scaled {near:.1f} dB, without scales {far:.1f} dB")
    assert near > 30 and near > far + 15
    unet = pipe.unet.state_dict()
    assert all(t.dtype == torch.float32 for t in unet.values())
    assert not any("scale_" in k for k in unet)


@pytest.mark.parametrize("per_row", [False, True])
def test_a_weight_bigger_than_one_chunk_is_dequantised_in_row_blocks_exactly(per_row):
    from engine.library.fp8 import CHUNK, Fp8Scales

    weight = torch.randn(CHUNK // 1000 + 7, 1000)  # more elements than one chunk, ragged end
    scale = weight.abs().amax(dim=1) / 448 if per_row else weight.abs().max() / 448
    fp8 = (weight / (scale[:, None] if per_row else scale)).to(torch.float8_e4m3fn)
    scales = Fp8Scales({"l.weight_scale" if per_row else "l.scale_weight": scale})
    got = scales.apply("l.weight", fp8, torch.bfloat16)
    want = fp8.float() * (scale[:, None] if per_row else scale)
    assert got.dtype == torch.bfloat16 and torch.equal(got, want.to(torch.bfloat16))
