"""`easel generate` flags for control: ControlNet units, image prompts, regions, the hires fix.

    --control canny:edges.png:0.8   preprocessor, control image, weight (repeatable)
    --control-model FILE            the ControlNet (one for every unit, or one per --control)
    --ip-adapter ref.png:0.6        a reference picture and its weight (repeatable)
    --ip-adapter-model FILE         the IP-Adapter weights
    --hires 2x                      generate at 1/2 the size, upscale, refine at --hires-strength
    --region mask.png:"a red hat":1 a prompt for the white area of a mask, weight (repeatable)

Without --control-model / --ip-adapter-model the only suitable model in the library is used;
none or several is said clearly. A model that reads the control image itself (FLUX.1 Canny /
Depth) takes `--control PRE:IMG` with no ControlNet.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from engine.api_control import PREPROCESSORS, ControlUnit, HiresFix, ImagePrompt, Region
from engine.errors import InputError


def add_control_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("control (SD 1.x and SDXL; FLUX.1 Canny/Depth: --control)")
    group.add_argument(
        "--control",
        action="append",
        default=[],
        metavar="PRE:IMG[:WEIGHT]",
        help=f"a ControlNet unit; PRE is one of {', '.join(PREPROCESSORS)} (repeatable)",
    )
    group.add_argument("--control-model", action="append", default=[], metavar="MODEL")
    group.add_argument("--control-range", default="0:1", metavar="START:END", help="of the steps")
    group.add_argument("--guess-mode", action="store_true", help="ControlNet guess mode")
    group.add_argument(
        "--ip-adapter", action="append", default=[], metavar="IMG[:WEIGHT]", help="repeatable"
    )
    group.add_argument("--ip-adapter-model", default="", metavar="MODEL")
    group.add_argument("--hires", default=None, metavar="SCALE", help="hires fix, e.g. 2x or 1.5")
    group.add_argument("--hires-strength", type=float, default=0.5)
    group.add_argument("--hires-steps", type=int, default=0, help="0: as many as the first pass")
    group.add_argument(
        "--hires-upscaler", default="latent", help="latent, lanczos, or an upscaler model"
    )
    group.add_argument(
        "--region",
        action="append",
        default=[],
        metavar="MASK:PROMPT[:WEIGHT]",
        help="a regional prompt for the white area of a grey-level mask PNG (repeatable)",
    )


def control_fields(
    args: argparse.Namespace, model_base: str, *, reads_control: bool = False
) -> dict:
    """The request fields the control flags give (empty when none is used); `reads_control`:
    the model reads the control image itself, so units name no ControlNet."""
    fields: dict = {}
    if args.control:
        fields["control"] = _units(args, model_base, reads_control)
    if args.ip_adapter:
        fields["image_prompts"] = tuple(
            ImagePrompt(image=image, weight=weight, model=_ip_adapter_model(args, model_base))
            for image, weight in (_image_and_weight(text, 0.6) for text in args.ip_adapter)
        )
    if getattr(args, "region", None):
        fields["regions"] = tuple(parse_region(text) for text in args.region)
    if args.hires:
        fields["hires"] = HiresFix(
            scale=parse_scale(args.hires),
            strength=args.hires_strength,
            steps=args.hires_steps,
            upscaler=args.hires_upscaler,
        )
    return fields


def parse_scale(text: str) -> float:
    value = text.strip().lower().removesuffix("x")
    try:
        return float(value)
    except ValueError:
        raise InputError(f"--hires takes a scale such as 2x or 1.5 (got '{text}').") from None


def parse_region(text: str) -> Region:
    """`MASK:PROMPT[:WEIGHT]`: the first colon after the path ends it (a Windows drive's colon
    is skipped); a last part that is a number is the weight, so prompts may hold colons."""
    drive = 2 if re.match(r"^[A-Za-z]:[\\/]", text) else 0
    cut = text.find(":", drive)
    mask, prompt = (text[:cut], text[cut + 1 :]) if cut >= 0 else (text, "")
    if not mask or not prompt.strip():
        raise InputError(
            f"--region takes MASK:PROMPT[:WEIGHT], e.g. sky.png:a red sky:1 (got '{text}')."
        )
    weight = 1.0
    head, sep, tail = prompt.rpartition(":")
    if sep and head.strip():
        try:
            weight, prompt = float(tail), head
        except ValueError:
            pass
    path = str(Path(mask).expanduser().resolve())
    return Region(mask=path, prompt=prompt.strip(), weight=weight)


def _units(
    args: argparse.Namespace, model_base: str, reads_control: bool
) -> tuple[ControlUnit, ...]:
    models = list(args.control_model)
    if len(models) not in (0, 1, len(args.control)):
        raise InputError(
            f"Give one --control-model for every unit, or one for all ({len(args.control)} "
            f"--control, {len(models)} --control-model)."
        )
    start, end = _range(args.control_range)
    units = []
    for index, text in enumerate(args.control):
        preprocessor, sep, rest = text.partition(":")
        if not sep or preprocessor not in PREPROCESSORS:
            raise InputError(
                f"--control takes PRE:IMG[:WEIGHT] with PRE one of {', '.join(PREPROCESSORS)} "
                f"(got '{text}')."
            )
        image, weight = _image_and_weight(rest, 1.0)
        model = models[index] if len(models) > 1 else (models[0] if models else "")
        if not (model or reads_control):
            model = _only("controlnet", model_base, "--control-model")
        units.append(
            ControlUnit(
                image=image,
                model=model,
                preprocessor=preprocessor,
                weight=weight,
                start=start,
                end=end,
                guess_mode=args.guess_mode,
            )
        )
    return tuple(units)


def _ip_adapter_model(args: argparse.Namespace, model_base: str) -> str:
    return args.ip_adapter_model or _only("ip_adapter", model_base, "--ip-adapter-model")


def _only(kind: str, base: str, flag: str) -> str:
    from engine.sd.control_library import only_suitable

    return str(only_suitable(kind, base, flag))


def _image_and_weight(text: str, default: float) -> tuple[str, float]:
    """`IMG[:WEIGHT]`; the last colon splits, so C:\\ paths work."""
    path, sep, weight = text.rpartition(":")
    try:
        value = float(weight) if sep and path else None
    except ValueError:
        value = None
    image = path if value is not None else text
    if not image:
        raise InputError(f"'{text}' names no image.")
    return str(Path(image).expanduser().resolve()), default if value is None else value


def _range(text: str) -> tuple[float, float]:
    start, _, end = text.partition(":")
    try:
        return float(start), float(end or 1.0)
    except ValueError:
        raise InputError(f"--control-range takes START:END such as 0:0.8 (got '{text}').") from None
