"""Tiny SD 1.x / SDXL pipelines with ControlNets (folder and single file), built once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from engine.api import GenerationRequest, RuntimeOptions
from engine.api_control import ImagePrompt
from engine.events import Result

RUNTIME = RuntimeOptions(device="cpu", precision="fp32", cpu_threads=1)


@pytest.fixture(scope="session")
def control_models(tmp_path_factory):
    from tests.helpers.tiny_control import build_controlnet
    from tests.helpers.tiny_sd import build_sd1, build_sdxl

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny-control")
    sd1 = build_sd1(root / "tiny-sd1")
    sdxl = build_sdxl(root / "tiny-sdxl")
    return {
        "sd1": sd1,
        "sdxl": sdxl,
        "inpaint": build_sd1(root / "tiny-sd1-inpaint", inpaint=True),
        "cn_sd1": build_controlnet(sd1, root / "cn-sd1", seed=3),
        "cn_sd1_b": build_controlnet(sd1, root / "cn-sd1", seed=4),
        "cn_sdxl": build_controlnet(sdxl, root / "cn-sdxl", seed=5),
    }


def drawing(size: int = 64) -> Image.Image:
    """A dark rectangle outline and a filled disc on white: known edges."""
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((8, 8, size // 2, size // 2), outline="black", width=2)
    draw.ellipse((size // 2 + 4, size // 2 + 4, size - 6, size - 6), fill=(40, 40, 40))
    return image


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("control-inputs")
    drawing(64).save(folder / "drawing.png")
    drawing(96).resize((96, 80)).save(folder / "drawing-96x80.png")
    gradient = np.linspace(0, 255, 64, dtype=np.uint8)
    rgb = np.stack([np.tile(gradient, (64, 1))] * 3, axis=-1)
    Image.fromarray(rgb).save(folder / "init.png")
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 32:] = 255
    Image.fromarray(mask).save(folder / "mask-right.png")
    Image.new("L", (64, 64), 0).save(folder / "mask-empty.png")
    return folder


@pytest.fixture(scope="module")
def services():
    from engine.services import Services

    return Services()


@pytest.fixture
def engine(services):
    from engine.worker import Engine

    eng = Engine(services=services)
    yield eng
    assert eng.shutdown(timeout=60), "engine worker did not stop"


def run(engine, req) -> Result:
    """Run `req` on `engine` and insist on a Result (the failure's message otherwise)."""
    final = engine.run(req, timeout=300)
    assert isinstance(final, Result), getattr(final, "message", final)
    return final


def pixels(result: Result, index: int = 0) -> np.ndarray:
    return np.asarray(result.images[index]).astype(np.int16)


def image_prompt(references, adapter, name="warm.png", weight=0.8) -> ImagePrompt:
    return ImagePrompt(image=str(references / name), weight=weight, model=str(adapter))


def make_request(model, **changes) -> GenerationRequest:
    fields = dict(
        prompt="a red apple",
        negative_prompt="blurry",
        model=str(model),
        steps=3,
        width=64,
        height=64,
        seed=42,
        sampler="Euler",
        runtime=RUNTIME,
    )
    fields.update(changes)
    return GenerationRequest(**fields)


@pytest.fixture(scope="session")
def ip_models(control_models, tmp_path_factory):
    """Tiny IP-Adapters for the tiny SD 1.x and SDXL UNets, in h94/IP-Adapter's layout: the
    weights file beside an `image_encoder` folder (a tiny CLIPVisionModelWithProjection)."""
    from tests.helpers.tiny_control import build_controlnet, build_image_encoder, build_ip_adapter

    root = tmp_path_factory.mktemp("tiny-ip-adapter")
    models = {}
    for base in ("sd1", "sdxl"):
        folder = root / f"ip-{base}"
        models[f"ip_{base}"] = build_ip_adapter(
            control_models[base], folder / f"ip-adapter-tiny-{base}.safetensors"
        )
        build_image_encoder(folder / "image_encoder")
        # IP-Adapter Plus beside it: a resampler over the encoder's hidden states (width 32)
        models[f"ip_{base}_plus"] = build_ip_adapter(
            control_models[base],
            folder / f"ip-adapter-plus-tiny-{base}.safetensors",
            image_embed_dim=32,
            seed=13,
            plus=True,
        )
    # a second adapter for SD 1.x with other random weights, in a folder without an encoder
    models["ip_sd1_alone"] = build_ip_adapter(
        control_models["sd1"], root / "alone" / "ip-adapter-alone.safetensors", seed=12
    )
    models["encoder"] = root / "ip-sd1" / "image_encoder"
    for base in ("sd1", "sdxl"):
        # gentle ControlNets: the main fixture's steer so hard that nothing else shows
        models[f"cn_{base}_gentle"] = build_controlnet(
            control_models[base], root / f"cn-{base}", seed=9, std=0.03
        )["folder"]
    return models


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Two reference pictures that differ everywhere, and a damaged one."""
    folder = tmp_path_factory.mktemp("ip-references")
    rng = np.random.default_rng(5)
    warm = np.zeros((48, 48, 3), np.uint8)
    warm[..., 0] = np.linspace(80, 255, 48, dtype=np.uint8)[None, :]
    warm[..., 1] = 60
    Image.fromarray(warm).save(folder / "warm.png")
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(folder / "noise.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(rng.integers(0, 255, 64)))
    return folder
