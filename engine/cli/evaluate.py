"""Compare two sets of images with FID and KID: easel eval SET_A SET_B

Each set is a folder of images (searched recursively; mixed sizes and modes are fine), an
`easel batch` output folder (the images its manifest lists), or image files joined with commas.
Prints `FID <value>` and `KID <value>` on stdout; progress and warnings go to stderr so scripts
can read stdout alone.
"""

from __future__ import annotations

import argparse
import sys

from engine.api import KID_SUBSET_SIZE, KID_SUBSETS, DeviceChoice, EvaluateRequest, RuntimeOptions
from engine.errors import EaselError
from engine.events import Cancelled, Failed, Progress, Result

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CANCELLED = 130


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sets = "folder of images, easel batch OUTDIR, or a,b,c image files"
    parser.add_argument("set_a", metavar="SET_A", help=sets)
    parser.add_argument("set_b", metavar="SET_B", help=sets)
    parser.add_argument("--batch-size", type=int, default=32, help="images per network batch")
    parser.add_argument(
        "--kid-subsets", type=int, default=KID_SUBSETS, help="KID: random subsets to average"
    )
    parser.add_argument(
        "--kid-subset-size", type=int, default=KID_SUBSET_SIZE, help="KID: images per subset"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for KID's random subsets")
    parser.add_argument(
        "--device", default="auto", choices=[d.value for d in DeviceChoice], help="where to run"
    )
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def _split(value: str) -> tuple[str, ...]:
    return tuple(part for part in value.split(",") if part.strip())


def build_request(args: argparse.Namespace) -> EvaluateRequest:
    return EvaluateRequest(
        set_a=_split(args.set_a),
        set_b=_split(args.set_b),
        batch_size=args.batch_size,
        kid_subsets=args.kid_subsets,
        kid_subset_size=args.kid_subset_size,
        seed=args.seed,
        runtime=RuntimeOptions(device=args.device, cpu_threads=args.threads),
    )


def run(args: argparse.Namespace) -> int:
    try:
        request = build_request(args)
    except EaselError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    from engine.worker import Engine

    engine = Engine(None if args.quiet else _print_progress)
    try:
        final = engine.run(request)
    except KeyboardInterrupt:
        engine.cancel()
        print("cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    finally:
        engine.shutdown()
    return _report(final)


def _report(final) -> int:
    if isinstance(final, Result):
        info = final.info
        for warning in info.get("warnings", []):
            print(f"warning: {warning}", file=sys.stderr)
        print(f"FID {info['fid']:.6f}")
        print(f"KID {info['kid']:.8f}")
        return EXIT_OK
    if isinstance(final, Cancelled):
        print("cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    if isinstance(final, Failed):
        print(f"error: {final.message}", file=sys.stderr)
        return _exit_code(final.kind)
    print(f"error: the engine ended the job without a result ({final!r})", file=sys.stderr)
    return EXIT_FAILED


def _exit_code(kind: str) -> int:
    from engine import errors

    error_type = getattr(errors, kind, None)
    if isinstance(error_type, type) and issubclass(error_type, EaselError):
        return error_type.exit_code
    return EXIT_FAILED


def _print_progress(event) -> None:
    if isinstance(event, Progress) and event.total:
        stage = event.info.get("stage", "")
        rate = event.info.get("images_per_second")
        speed = f", {rate:.1f} images/s" if rate else ""
        print(f"[{event.step}/{event.total}] {stage}{speed}", file=sys.stderr, flush=True)
