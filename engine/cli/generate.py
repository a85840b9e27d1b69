"""Generate images from a prompt, headless (`easel generate "a red apple" -o apple.png`).

Drives the same Engine the desktop app uses: one request, a progress bar on stderr, PNGs with
metadata on success. Ctrl-C cancels the job cleanly (exit 130). Exit codes: 0 done, 1 failed,
2 bad input, 3 model problem, 4 unusable output, 130 cancelled.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

from engine.api import (
    MAX_SIDE,
    SAMPLERS,
    GenerationRequest,
    LoraRef,
    Mode,
    RuntimeOptions,
    round_to_multiple,
)
from engine.cli.control_args import add_control_arguments, control_fields
from engine.errors import EaselError, InputError, ModelError, OutputError

EXIT_CODES = {
    "InputError": InputError.exit_code,
    "ModelError": ModelError.exit_code,
    "OutputError": OutputError.exit_code,
}
EXIT_CANCELLED = 130


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "prompt",
        nargs="?",
        default="",
        help="what to draw (A1111 weighting like (word:1.3) works); optional for models that "
        "take no text, such as a trained GAN or VAE",
    )
    parser.add_argument("-o", "--output", default="out.png", help="PNG file to write")
    parser.add_argument("--model", default="", help="model folder/file or id (default: built-in)")
    parser.add_argument("--negative", default="", help="what to avoid")
    parser.add_argument("--steps", type=int, default=None, help="default: the model's own")
    parser.add_argument("--cfg", type=float, default=None, help="guidance scale (model default)")
    parser.add_argument("--seed", type=int, default=None, help="default: random")
    parser.add_argument(
        "--sampler", default=None, help="default: the model's own; " + "; ".join(SAMPLERS)
    )
    parser.add_argument("--width", type=int, default=None, help="default: the model's size")
    parser.add_argument("--height", type=int, default=None, help="default: the model's size")
    parser.add_argument("--batch", type=int, default=1, help="images; out-1.png, out-2.png...")
    parser.add_argument("--init", default=None, help="start from this image (img2img)")
    parser.add_argument("--strength", type=float, default=0.75, help="how much to change --init")
    parser.add_argument("--mask", default=None, help="white = repaint (inpaint; needs --init)")
    parser.add_argument(
        "--lora", action="append", default=[], metavar="FILE:WEIGHT", help="repeatable"
    )
    parser.add_argument("--clip-skip", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    parser.add_argument(
        "--offload",
        default="auto",
        choices=["auto", "none", "model", "sequential"],
        help="GPU memory: auto offloads only a model that does not fit",
    )
    parser.add_argument("--skip-t5", action="store_true", help="SD3: leave out the T5 encoder")
    parser.add_argument(
        "--concept-strength",
        type=float,
        metavar="0..1",
        help="built-ins: how far a prompt is pulled to the concepts the model knows (0: as typed)",
    )
    parser.add_argument(
        "--autoguidance",
        type=float,
        metavar="1..5",
        help="built-ins: push each step away from a weaker copy of the model (1: off)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_control_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        request = build_request(args)
        outputs = output_paths(args.output, request.batch_size)
    except EaselError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return _run_request(request, outputs, quiet=args.quiet)


def build_request(args: argparse.Namespace) -> GenerationRequest:
    mode = Mode.INPAINT if args.mask else Mode.IMG2IMG if args.init else Mode.TXT2IMG
    if args.mask and not args.init:
        raise InputError("--mask needs --init: the image to repaint.")
    given = {
        "width": args.width,
        "height": args.height,
        "sampler": args.sampler,
        "steps": args.steps,
        "guidance_scale": args.cfg,
    }
    settings = {**model_defaults(args.model, mode, args.init), **_given(given)}
    steering = _control_fields(args, settings, given)
    seed = args.seed if args.seed is not None else int.from_bytes(_random_bytes(4), "little")
    runtime = RuntimeOptions(
        device=args.device,
        precision=args.precision,
        cpu_threads=args.threads,
        offload=getattr(args, "offload", "auto"),
        skip_t5=getattr(args, "skip_t5", False),
    )
    # what the user did not set is left to the model (few-step models, FLUX schnell, ...): the
    # SD engine reads those from the model's tensors and config; the values above stand otherwise
    left = [name for name in ("steps", "guidance_scale", "sampler") if given[name] is None]
    return GenerationRequest(
        prompt=args.prompt,
        negative_prompt=args.negative,
        model=args.model,
        mode=mode,
        seed=seed,
        batch_size=args.batch,
        strength=args.strength,
        init_image=_absolute(args.init),
        mask_image=_absolute(args.mask),
        loras=tuple(parse_lora(text) for text in args.lora),
        clip_skip=args.clip_skip,
        extras=_extras(left, args),
        runtime=runtime,
        **settings,
        **steering,
    )


def _extras(left: list[str], args: argparse.Namespace) -> dict:
    extras: dict = {"model_defaults": left} if left else {}
    if getattr(args, "concept_strength", None) is not None:
        extras["concept_strength"] = args.concept_strength  # range-checked by the engine
    if getattr(args, "autoguidance", None) is not None:
        extras["autoguidance"] = args.autoguidance  # range-checked by the engine
    return extras


def _control_fields(args: argparse.Namespace, settings: dict, given: dict) -> dict:
    """ControlNet / IP-Adapter / hires fields; with --hires and no size given, the final size
    is the model's own times the scale (the first pass runs at the model's size)."""
    if not (
        getattr(args, "control", None)
        or getattr(args, "ip_adapter", None)
        or getattr(args, "hires", None)
        or getattr(args, "region", None)
    ):
        return {}
    from engine.generate import capabilities_of
    from engine.library.resolve import resolve_model

    model = resolve_model(args.model)
    reads_control = bool(capabilities_of(model).reads_control)
    fields = control_fields(args, model.base, reads_control=reads_control)
    hires = fields.get("hires")
    if hires is not None:
        for side in ("width", "height"):
            if given[side] is None:
                settings[side] = round_to_multiple(round(settings[side] * hires.scale), 8)
    return fields


def _given(values: dict) -> dict:
    return {name: value for name, value in values.items() if value is not None}


def model_defaults(reference: str, mode: Mode, init: str | None) -> dict:
    """The chosen model's own size, sampler, steps and CFG for what the user left unset; an
    edit of an SD model keeps the init picture's size (rounded to multiples of 8)."""
    from engine.generate import capabilities_of, request_defaults
    from engine.library.resolve import resolve_model

    model = resolve_model(reference)
    defaults = request_defaults(model)
    if mode is not Mode.TXT2IMG and init and model.family == "sd":
        from engine.images import open_user_image

        picture = open_user_image(_absolute(init), "init image", mode=None)
        step = capabilities_of(model).size_step  # SD3/FLUX: 16
        defaults.update(edit_size(picture.size, defaults["width"], step))
    return defaults


def edit_size(size: tuple[int, int], native_side: int, multiple: int = 8) -> dict:
    """An edit keeps the picture's shape at about the model's native area, in multiples of 8
    (a 4000x3000 photo on SD 1.5 runs at 512x384, not 4000x3000 or a squashed 512x512)."""
    width, height = size
    scale = min(1.0, native_side / max(width, height))
    return {
        "width": min(round_to_multiple(round(width * scale), multiple), MAX_SIDE),
        "height": min(round_to_multiple(round(height * scale), multiple), MAX_SIDE),
    }


def _random_bytes(count: int) -> bytes:
    import os

    return os.urandom(count)


def _absolute(path: str | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else None


def parse_lora(text: str) -> LoraRef:
    """`FILE:WEIGHT` (weight optional, default 1). The last colon splits, so C:\\ paths work."""
    path, sep, weight = text.rpartition(":")
    if sep and path and _is_number(weight):
        return LoraRef(path=_absolute(path) or path, weight=float(weight))
    return LoraRef(path=_absolute(text) or text, weight=1.0)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def output_paths(output: str, count: int) -> list[Path]:
    """out.png for one image; out-1.png, out-2.png... for a batch."""
    path = Path(output).expanduser()
    if path.suffix.lower() != ".png":
        raise InputError(f"Output '{output}' must be a .png file (metadata lives in PNG chunks).")
    if path.parent and not path.parent.exists():
        raise InputError(f"The folder '{path.parent}' does not exist; create it first.")
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(1, count + 1)]


def _run_request(request: GenerationRequest, outputs: list[Path], *, quiet: bool) -> int:
    from engine.events import FINAL_EVENTS, Cancelled, Failed, Progress
    from engine.worker import Engine

    final: dict = {}
    done = threading.Event()
    bar = ProgressBar(enabled=not quiet)

    def sink(event) -> None:
        if isinstance(event, Progress):
            bar.update(event.step, event.total, event.info.get("stage"))
        elif isinstance(event, FINAL_EVENTS):
            final["event"] = event
            done.set()

    engine = Engine(sink)
    if not quiet:
        print(f"seed {request.seed}", file=sys.stderr)
    try:
        job_id = engine.submit(request)
        try:
            while not done.wait(0.1):
                pass
        except KeyboardInterrupt:
            bar.finish()
            print("cancelling... (Ctrl-C again to quit at once)", file=sys.stderr)
            engine.cancel(job_id)
            try:
                done.wait()
            except KeyboardInterrupt:
                return EXIT_CANCELLED  # the worker is a daemon thread: it dies with us
    finally:
        engine.shutdown(timeout=0 if not done.is_set() else 30)
    bar.finish()
    event = final["event"]
    if isinstance(event, Cancelled):
        print("cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    if isinstance(event, Failed):
        print(f"error: {event.message}", file=sys.stderr)
        return EXIT_CODES.get(event.kind, 1)
    return _save(event, outputs)


def _save(result, outputs: list[Path]) -> int:
    from engine.metadata import save_png_with_metadata

    for notice in result.info.get("notices", []):
        print(f"note: {notice}", file=sys.stderr)
    try:
        for image, metadata, path in zip(result.images, result.metadata, outputs, strict=True):
            save_png_with_metadata(image, path, metadata)
            print(path, file=sys.stdout)
    except OSError as exc:
        print(f"error: could not write the image ({exc}).", file=sys.stderr)
        return OutputError.exit_code
    return 0


class ProgressBar:
    """A one-line progress bar on stderr, redrawn in place (plain lines when not a terminal)."""

    WIDTH = 30

    def __init__(self, *, enabled: bool = True):
        self.enabled = enabled
        self.started = time.perf_counter()
        self.drawn = False
        self.tty = sys.stderr.isatty()

    def update(self, step: int, total: int, stage: str | None = None) -> None:
        if not self.enabled:
            return
        if stage:
            line = f"{stage}..."
            self.started = time.perf_counter()  # time the steps, not the loading
        else:
            filled = int(self.WIDTH * step / max(total, 1))
            elapsed = time.perf_counter() - self.started
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            line = f"[{bar}] {step}/{total} steps  {elapsed:5.1f}s"
        if self.tty:
            sys.stderr.write("\r\033[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
        self.drawn = True

    def finish(self) -> None:
        if self.enabled and self.drawn and self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()
        self.drawn = False
