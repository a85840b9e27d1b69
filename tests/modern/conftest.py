"""Tiny SD3 and FLUX.1 models, saved as diffusers folders and as single transformer files
(safetensors, fp8 safetensors, GGUF) beside a companion folder, built once per session."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from engine.api import GenerationRequest, RuntimeOptions
from engine.events import Result

RUNTIME = RuntimeOptions(device="cpu", precision="fp32", cpu_threads=1)


@pytest.fixture(scope="session")
def modern_models(tmp_path_factory):
    from tests.helpers.tiny_modern import (
        build_flux,
        build_sd3,
        save_gguf_transformer,
        save_transformer_file,
    )

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny-modern")
    models = {
        "sd3": build_sd3(root / "tiny-sd3"),
        "flux": build_flux(root / "tiny-flux-dev"),
        "schnell": build_flux(root / "tiny-flux-schnell", guidance=False),
    }
    files = root / "files"  # single files with their companion folder beside them
    files.mkdir()
    shutil.copytree(models["flux"], files / "flux-components")
    models["flux_file"] = save_transformer_file(models["flux"], files / "flux-t.safetensors")
    models["flux_fp8"] = save_transformer_file(models["flux"], files / "fp8.safetensors", fp8=True)
    models["flux_gguf"] = save_gguf_transformer(models["flux"], files / "flux-Q8_0.gguf")
    models["sd3_gguf"] = save_gguf_transformer(models["sd3"], files / "sd3-Q8_0.gguf")
    shutil.copytree(models["sd3"], files / "sd3-components")
    lonely = root / "lonely"  # a transformer file with no companion anywhere
    lonely.mkdir()
    models["lonely"] = save_transformer_file(models["flux"], lonely / "flux-only.safetensors")
    return models


@pytest.fixture(scope="module")
def services():
    from engine.services import Services

    return Services()


@pytest.fixture
def modern_engine(services):
    from engine.worker import Engine

    eng = Engine(services=services)
    yield eng
    assert eng.shutdown(timeout=60), "engine worker did not stop"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A 32x32 init image and a mask whose right half is white."""
    folder = tmp_path_factory.mktemp("modern-inputs")
    gradient = np.linspace(0, 255, 32, dtype=np.uint8)
    rgb = np.stack([np.tile(gradient, (32, 1)), np.tile(gradient[:, None], (1, 32))] * 2, -1)
    Image.fromarray(rgb[..., :3]).save(folder / "init.png")
    mask = np.zeros((32, 32), np.uint8)
    mask[:, 16:] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    return folder


def request(model, **changes) -> GenerationRequest:
    fields = dict(
        prompt="a photo of a cat",
        negative_prompt="blurry, low quality",
        model=str(model),
        steps=2,
        width=32,
        height=32,
        seed=7,
        sampler="Euler",
        guidance_scale=4.0,
        runtime=RUNTIME,
    )
    fields.update(changes)
    return GenerationRequest(**fields)


def fresh_memory(pipe) -> None:
    """Every weight of the pipeline copied to fresh (64-byte aligned) memory, before comparing
    two pipelines' pictures bit for bit. CPU matmul kernels round differently (by ~1e-7) for
    data at other alignments, and diffusers' loaders leave weights where a file's header put
    them, so the same weights loaded from two layouts differ that much; at the same alignment,
    equal pictures mean equal weights, settings and code path."""
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            fresh_module(component)


def fresh_module(model: torch.nn.Module) -> None:
    for module in model.modules():
        for tensor in module._parameters.values():
            if tensor is not None:
                tensor.data = tensor.data.clone()
        for name, tensor in list(module._buffers.items()):
            if tensor is not None:
                module._buffers[name] = tensor.clone()


def pixels(result, index: int = 0) -> np.ndarray:
    assert isinstance(result, Result), result
    return np.asarray(result.images[index]).astype(int)
