"""The upscale job: Lanczos without a model, tiled spandrel models with progress and cancel."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from engine.api import RuntimeOptions, UpscaleRequest
from engine.context import JobContext
from engine.errors import InputError, JobCancelled, ModelError
from engine.events import Progress, Result
from engine.upscale import _ramp_weights, run_upscale, tile_starts

from .builders import sd1_shapes, tiny_esrgan, write_stripped

# One thread: on a shared 2-core machine two torch threads can run 10x slower, not faster.
ONE_THREAD = RuntimeOptions(cpu_threads=1)


@pytest.fixture
def photo(tmp_path):
    # A smooth gradient with sharp stripes: edges make tiling seams show if blending is wrong.
    y, x = np.mgrid[0:72, 0:80]
    pixels = np.stack([x * 3, y * 3, ((x // 6 + y // 6) % 2) * 255], axis=-1).astype(np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def esrgan_file(tmp_path_factory):
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("up") / "tiny-x2.safetensors"
    save_file(tiny_esrgan(scale=2).state_dict(), path)
    return path


def test_lanczos_when_no_model_through_the_engine(engine, photo):
    final = engine.run(UpscaleRequest(image=str(photo), scale=2.5), timeout=60)
    assert isinstance(final, Result), final
    out = final.images[0]
    assert out.size == (200, 180)
    expected = Image.open(photo).resize((200, 180), Image.Resampling.LANCZOS)
    assert np.array_equal(np.asarray(out), np.asarray(expected))
    assert final.metadata[0]["method"] == "lanczos"


def test_tiles_cover_the_image_and_blend_weights_sum_to_one():
    assert tile_starts(80, 32, 8) == [0, 24, 48]
    assert tile_starts(30, 32, 8) == [0]
    assert tile_starts(100, 0, 8) == [0]
    left = _ramp_weights(32, 8, fade_start=False, fade_end=True)
    right = _ramp_weights(32, 8, fade_start=True, fade_end=False)
    assert torch.allclose(left[-8:] + right[:8], torch.ones(8))
    assert left[0] == 1 and right[-1] == 1


def test_model_upscale_is_tiled_with_progress_and_close_to_whole_image(engine, photo, esrgan_file):
    events = []
    engine.subscribe(events.append)
    request = UpscaleRequest(
        image=str(photo), model=str(esrgan_file), tile_size=32, tile_overlap=8, runtime=ONE_THREAD
    )
    final = engine.run(request, timeout=120)
    assert isinstance(final, Result), final
    tiled = final.images[0]
    assert tiled.size == (160, 144)
    steps = [e.step for e in events if isinstance(e, Progress) and e.job_id == final.job_id]
    assert steps == list(range(10))  # 3 x 3 tiles, plus the 0 at the start
    assert final.info["method"] == "model:ESRGAN" and final.info["model_scale"] == 2

    whole = engine.run(request.replace(tile_size=0), timeout=120).images[0]
    diff = np.abs(np.asarray(tiled, dtype=float) - np.asarray(whole, dtype=float))
    assert diff.mean() < 3.0  # tiles see less context at their borders; blending hides seams
    # The tiny model is random but deterministic: the same request gives the same pixels.
    again = engine.run(request, timeout=120).images[0]
    assert np.array_equal(np.asarray(again), np.asarray(tiled))


def test_model_upscale_keeps_alpha_and_resizes_to_requested_factor(tmp_path, esrgan_file):
    path = tmp_path / "rgba.png"
    Image.new("RGBA", (40, 24), (200, 30, 30, 128)).save(path)
    request = UpscaleRequest(
        image=str(path), model=str(esrgan_file), scale=3, tile_size=0, runtime=ONE_THREAD
    )
    result = run_upscale(request, JobContext(1, lambda e: None))
    out = result.images[0]
    assert out.mode == "RGBA" and out.size == (120, 72)
    assert abs(np.asarray(out)[..., 3].mean() - 128) < 2


def test_cancel_between_tiles(photo, esrgan_file):
    cancel = threading.Event()

    def emit(event):
        if isinstance(event, Progress) and event.step == 2:
            cancel.set()

    ctx = JobContext(1, emit, cancel_event=cancel)
    request = UpscaleRequest(
        image=str(photo), model=str(esrgan_file), tile_size=32, tile_overlap=8, runtime=ONE_THREAD
    )
    with pytest.raises(JobCancelled):
        run_upscale(request, ctx)


def test_bad_inputs_give_clear_messages(tmp_path, photo):
    ctx = JobContext(1, lambda e: None)
    with pytest.raises(InputError, match="between 1 and 8"):
        UpscaleRequest(image=str(photo), scale=20)
    with pytest.raises(InputError, match="does not exist"):
        run_upscale(UpscaleRequest(image=str(tmp_path / "none.png")), ctx)
    not_image = tmp_path / "text.png"
    not_image.write_text("hello")
    with pytest.raises(InputError, match="not a picture Easel can read"):
        run_upscale(UpscaleRequest(image=str(not_image)), ctx)
    checkpoint = write_stripped(tmp_path / "sd.safetensors", sd1_shapes())
    with pytest.raises(ModelError, match="not an upscaler"):
        run_upscale(UpscaleRequest(image=str(photo), model=str(checkpoint)), ctx)
    with pytest.raises(ModelError, match="Upscaler not found"):
        run_upscale(UpscaleRequest(image=str(photo), model="no-such-upscaler"), ctx)

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pth"
    torch.save({"params_ema": {"w": torch.zeros(1)}, "x": Payload()}, evil)
    with pytest.raises(ModelError, match="needs to run code"):
        run_upscale(UpscaleRequest(image=str(photo), model=str(evil)), ctx)
    assert not marker.exists()


def test_library_requests_round_trip_through_dicts():
    from engine.api import DownloadRequest, ScanLibraryRequest, request_from_dict

    for request in (
        UpscaleRequest(image="a.png", model="x.pth", scale=3, runtime=ONE_THREAD),
        DownloadRequest(repo_id="owner/name", name="mine"),
        ScanLibraryRequest(hash_files=True),
    ):
        assert request_from_dict(request.to_dict()) == request
