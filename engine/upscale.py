"""The `UpscaleRequest` handler: enlarge an image with an upscaler model or a Lanczos resize.

Model upscaling runs in overlapping tiles so a 4000-pixel photo fits in memory: each tile is
upscaled on its own, then tiles are blended with linear ramps across the overlap (weights that
sum to one), which hides the seams a plain paste leaves. Progress is reported per tile and the
job can be cancelled between tiles.
"""

from __future__ import annotations

import time
from pathlib import Path

from engine.api import UpscaleRequest
from engine.context import JobContext
from engine.errors import InputError, ModelError
from engine.events import Result

MAX_OUTPUT_SIDE = 16384
LANCZOS_DEFAULT_SCALE = 2.0


def run_upscale(request: UpscaleRequest, ctx: JobContext) -> Result:
    started = time.perf_counter()
    image = open_image(request.image)
    info: dict = {"input_size": list(image.size)}
    if not request.model:
        factor = request.scale or LANCZOS_DEFAULT_SCALE
        _check_output_size(image.size, factor)
        ctx.progress(0, 1, stage="resizing")
        result = lanczos(image, factor)
        ctx.progress(1, 1, stage="resizing")
        info.update(method="lanczos", scale=factor)
    else:
        result, details = upscale_with_model(request, image, ctx)
        info.update(details)
    info.update(output_size=list(result.size), seconds=time.perf_counter() - started)
    metadata = {**request.to_dict(), **{k: info[k] for k in ("method", "scale")}}
    return Result(ctx.job_id, images=[result], metadata=[metadata], info=info)


def open_image(path: str):
    from engine.images import open_user_image

    return open_user_image(path, "picture to upscale", mode=None)


def lanczos(image, factor: float):
    from PIL import Image

    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _check_output_size(size: tuple[int, int], factor: float) -> None:
    if max(size) * factor > MAX_OUTPUT_SIDE:
        raise InputError(
            f"The result would be {round(size[0] * factor)}x{round(size[1] * factor)} pixels, "
            f"more than {MAX_OUTPUT_SIDE} on a side. Use a smaller factor or a smaller image."
        )


def _resolve_model_path(reference: str) -> Path:
    path = Path(reference).expanduser()
    if path.is_file():
        return path
    from engine.library.records import find_record_path

    found = find_record_path(reference)
    if found and Path(found).is_file():
        return Path(found)
    raise ModelError(f"Upscaler not found: '{reference}'. Check the path or add it to the library.")


def _load_descriptor(path: Path, device, dtype):
    from engine.library.probe import probe_path
    from engine.library.upscalers import load_upscaler

    probed = probe_path(path)
    if probed.kind != "upscaler":
        what = probed.reason if probed.status in {"broken", "unsafe"} else probed.describe()
        raise ModelError(f"'{path.name}' is not an upscaler model ({what}).")
    descriptor = load_upscaler(path)
    if dtype.is_floating_point and dtype.itemsize == 2:
        # Not every architecture is stable in half precision; spandrel knows which are.
        import torch

        supported = (
            descriptor.supports_bfloat16 if dtype == torch.bfloat16 else descriptor.supports_half
        )
        if not supported:
            dtype = torch.float32
    return descriptor.to(device=device, dtype=dtype)


def upscale_with_model(request: UpscaleRequest, image, ctx: JobContext):
    """`image` (PIL) through `request.model`, tiled, cached; (result, details). The hires fix
    calls this too, with a `ctx` that reports tiles as a stage of its own progress."""
    from engine.devices import prepare

    path = _resolve_model_path(request.model)
    device, dtype = prepare(request.runtime)
    key = f"upscaler:{path.resolve()}:{path.stat().st_mtime_ns}:{device}:{dtype}"
    with ctx.cache.use(key, lambda: _load_descriptor(path, device, dtype)) as descriptor:
        model_scale = int(descriptor.scale)
        _check_output_size(image.size, max(model_scale, request.scale or 0))
        if descriptor.input_channels not in (1, 3):
            raise ModelError(
                f"'{path.name}' takes {descriptor.input_channels}-channel images; "
                "Easel upscales RGB or grayscale images only."
            )
        result = upscale_tiled(
            descriptor,
            image,
            tile_size=request.tile_size,
            overlap=request.tile_overlap,
            ctx=ctx,
        )
    factor = model_scale
    if request.scale and request.scale != model_scale:
        target = (round(image.width * request.scale), round(image.height * request.scale))
        from PIL import Image

        result = result.resize(target, Image.Resampling.LANCZOS)
        factor = request.scale
    details = {
        "method": f"model:{descriptor.architecture.name}",
        "scale": factor,
        "model_scale": model_scale,
        "model": str(path),
    }
    return result, details


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one axis: `tile` apart minus `overlap`, the last flush with the end."""
    if tile <= 0 or length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    starts.append(length - tile)
    return starts


def _ramp_weights(length: int, ramp: int, *, fade_start: bool, fade_end: bool):
    """1 inside, rising/falling linearly across `ramp` pixels on faded sides; the rising and
    falling ramps of two neighbours overlapping by `ramp` pixels sum to exactly 1."""
    import torch

    weights = torch.ones(length)
    ramp = min(ramp, length)
    if ramp > 0:
        rise = torch.arange(1, ramp + 1, dtype=torch.float32) / (ramp + 1)
        if fade_start:
            weights[:ramp] = rise
        if fade_end:
            weights[length - ramp :] = torch.minimum(weights[length - ramp :], rise.flip(0))
    return weights


def upscale_tiled(descriptor, image, *, tile_size: int, overlap: int, ctx: JobContext):
    """Run `descriptor` over `image` tile by tile and blend the tiles (PIL in, PIL out)."""
    import numpy as np
    import torch
    from PIL import Image

    alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
    mode = "L" if descriptor.input_channels == 1 else "RGB"
    pixels = np.asarray(image.convert(mode), dtype=np.float32) / 255.0
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    source = torch.from_numpy(pixels).permute(2, 0, 1)[None]  # 1CHW in [0, 1]
    height, width = source.shape[-2:]
    scale = int(descriptor.scale)
    ys = tile_starts(height, tile_size, overlap)
    xs = tile_starts(width, tile_size, overlap)
    output = torch.zeros(1, descriptor.output_channels, height * scale, width * scale)
    weight = torch.zeros(1, 1, height * scale, width * scale)
    total, done = len(ys) * len(xs), 0
    ctx.progress(0, total, stage="upscaling")
    for y in ys:
        for x in xs:
            ctx.check_cancelled()
            th = min(tile_size or height, height - y)
            tw = min(tile_size or width, width - x)
            tile = source[:, :, y : y + th, x : x + tw]
            result = _run_tile(descriptor, tile)
            wy = _ramp_weights(
                th * scale, overlap * scale, fade_start=y > 0, fade_end=y + th < height
            )
            wx = _ramp_weights(
                tw * scale, overlap * scale, fade_start=x > 0, fade_end=x + tw < width
            )
            mask = (wy[:, None] * wx[None, :])[None, None]
            region = (
                slice(None),
                slice(None),
                slice(y * scale, (y + th) * scale),
                slice(x * scale, (x + tw) * scale),
            )
            output[region] += result * mask
            weight[region] += mask
            done += 1
            ctx.progress(done, total, stage="upscaling")
    output = (output / weight.clamp_min(1e-8)).clamp(0, 1)
    array = (output[0].permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    result = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    result = result.convert("RGB") if image.mode not in ("L",) else result
    if alpha is not None:
        result.putalpha(alpha.resize(result.size, Image.Resampling.LANCZOS))
    return result


def _run_tile(descriptor, tile):
    import torch

    device, dtype = descriptor.device, descriptor.dtype
    with torch.inference_mode():
        out = descriptor(tile.to(device=device, dtype=dtype))
    return out.float().cpu()
