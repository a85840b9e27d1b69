"""Requests that continue from a finished result: vary it, upscale it, redo it with hires fix.

The Midjourney flow on any gallery item. Pure request building (no torch, no Qt): the desktop
calls these on the GUI thread with the item's stored request and its image file, and the engine
runs what comes back like any other request.

- vary: the item's own request as image-to-image from its result at strength 0.35 (subtle) or
  0.7 (strong) with a new seed; `extras["variation_of"]` says of which item, so the gallery and
  the PNG metadata tell a variation from a fresh picture.
- upscale: an `UpscaleRequest` of the result with an upscaler model (or Lanczos when none).
- hires: the item's request again with `hires` set and its size multiplied: the same seed makes
  the same first pass, which is then enlarged and refined in the same job.
"""

from __future__ import annotations

import random
from pathlib import Path

from engine.api import MAX_SEED, MAX_SIDE, GenerationRequest, Mode, RuntimeOptions, UpscaleRequest
from engine.api_control import HIRES_UPSCALERS_LATENT, HiresFix
from engine.errors import InputError

#: variation kind -> img2img strength (how far the new picture may move from the result)
VARY_STRENGTHS: dict[str, float] = {"subtle": 0.35, "strong": 0.7}
UPSCALE_FACTORS: tuple[int, ...] = (2, 4)
HIRES_DEFAULT_SCALE = 2.0
HIRES_DEFAULT_STRENGTH = 0.5


def _multiple_of_8(value: float) -> int:
    return max(8, int(value) // 8 * 8)


def _origin(entry_id: int | None, kind: str, source: GenerationRequest) -> dict:
    """What `extras["variation_of"]` records: the item, how it was continued, its seed."""
    origin = {"kind": kind, "seed": source.seed, "prompt": source.prompt}
    if entry_id is not None:
        origin["entry_id"] = int(entry_id)
    return origin


def vary_request(
    source: GenerationRequest,
    image_path: str | Path,
    image_size: tuple[int, int],
    *,
    kind: str = "subtle",
    entry_id: int | None = None,
    seed: int | None = None,
    runtime: RuntimeOptions | None = None,
) -> GenerationRequest:
    """`source` as image-to-image from its result (`image_path`, `image_size` in pixels).

    The size is the result's (rounded down to a multiple of 8), not the request's: a hires or
    an upscaled result varies at the size it has. A mask and the hires fix are dropped (the
    whole picture varies, at its own size); control units, image prompts and regions stay, so
    a variation keeps the composition the user steered."""
    if kind not in VARY_STRENGTHS:
        raise InputError(f"Unknown variation '{kind}'. Choose one of: {', '.join(VARY_STRENGTHS)}.")
    width, height = image_size
    extras = dict(source.extras)
    extras["variation_of"] = _origin(entry_id, f"vary-{kind}", source)
    return source.replace(
        mode=Mode.IMG2IMG,
        init_image=str(image_path),
        mask_image=None,
        strength=VARY_STRENGTHS[kind],
        seed=random.randint(0, MAX_SEED) if seed is None else int(seed),
        width=_multiple_of_8(min(width, MAX_SIDE)),
        height=_multiple_of_8(min(height, MAX_SIDE)),
        hires=None,
        extras=extras,
        runtime=runtime or source.runtime,
    )


def upscale_request(
    image_path: str | Path,
    factor: float,
    *,
    model: str = "",
    runtime: RuntimeOptions | None = None,
) -> UpscaleRequest:
    """Enlarge a result `factor` times with an upscaler model file (Lanczos when `model` is
    empty); a x4 model asked for x2 is resized down after it runs (the engine's `scale`)."""
    return UpscaleRequest(
        image=str(image_path), model=model, scale=float(factor), runtime=runtime or RuntimeOptions()
    )


def pick_upscaler(upscalers: list[tuple[str, int]], factor: int) -> str:
    """The upscaler model for `factor`: one made for that factor, else the smallest larger one
    (scaled down after), else the largest there is; "" when the library has none (Lanczos).
    `upscalers`: (model reference, its native factor; 0 when unknown)."""
    if not upscalers:
        return ""
    exact = [ref for ref, native in upscalers if native == factor]
    if exact:
        return exact[0]
    larger = sorted((native, ref) for ref, native in upscalers if native > factor)
    if larger:
        return larger[0][1]
    return max(upscalers, key=lambda item: item[1])[0]


def hires_request(
    source: GenerationRequest,
    image_size: tuple[int, int],
    *,
    scale: float = HIRES_DEFAULT_SCALE,
    strength: float = HIRES_DEFAULT_STRENGTH,
    upscaler: str = HIRES_UPSCALERS_LATENT,
    steps: int = 0,
    entry_id: int | None = None,
    runtime: RuntimeOptions | None = None,
) -> GenerationRequest:
    """`source` again, made `scale` times larger with the hires fix: text-to-image with the
    same seed at the result's size for the first pass, then upscale and refine at `strength`.
    The request's width and height are the final size (what HiresFix runs to)."""
    width, height = image_size
    target_w, target_h = _multiple_of_8(width * scale), _multiple_of_8(height * scale)
    if max(target_w, target_h) > MAX_SIDE:
        raise InputError(
            f"Hires fix x{scale:g} of a {width}x{height} picture would be {target_w}x{target_h};"
            f" Easel makes at most {MAX_SIDE} pixels a side. Choose a smaller scale."
        )
    extras = dict(source.extras)
    extras["variation_of"] = _origin(entry_id, "hires", source)
    return source.replace(
        mode=Mode.TXT2IMG,
        init_image=None,
        mask_image=None,
        width=target_w,
        height=target_h,
        hires=HiresFix(scale=scale, strength=strength, upscaler=upscaler, steps=steps),
        extras=extras,
        runtime=runtime or source.runtime,
    )


def variation_label(extras: dict) -> str:
    """A short line for tooltips: "Vary (subtle) of #12"; "" for a fresh picture."""
    origin = extras.get("variation_of") if isinstance(extras, dict) else None
    if not isinstance(origin, dict):
        return ""
    names = {"vary-subtle": "Vary (subtle)", "vary-strong": "Vary (strong)", "hires": "Hires fix"}
    text = names.get(str(origin.get("kind")), "Variation")
    if isinstance(origin.get("entry_id"), int):
        text += f" of #{origin['entry_id']}"
    return text
