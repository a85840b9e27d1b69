"""Make a batch of images from a spec: easel batch SPEC -o OUTDIR [--ray auto|local|ADDRESS]

SPEC is a .jsonl file of requests (as PNG metadata and history hold them) or a .toml/.yaml grid
(prompts x seeds x models x samplers x guidance). OUTDIR gets one PNG per image with full
metadata and manifest.jsonl. Rerunning the same command skips what the manifest already holds.
Without --ray the batch runs on the in-process engine; with it, on a Ray cluster (pip install
"easel[cluster]"). Ctrl-C stops cleanly (exit 130); exit 1 when some requests failed.
"""

from __future__ import annotations

import argparse
import sys
import threading

from engine.api import DeviceChoice, Precision, RuntimeOptions
from engine.batch.writer import format_duration
from engine.errors import EaselError

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_CANCELLED = 130


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC", help=".jsonl requests or a .toml/.yaml grid")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    parser.add_argument(
        "--ray",
        default=None,
        metavar="ADDRESS",
        help="run on Ray: 'auto' joins the running cluster (or starts one on this machine), "
        "'local' starts one on this machine, or a cluster address such as 10.0.0.5:6379",
    )
    parser.add_argument(
        "--actors", type=int, default=0, help="Ray workers (0: one per GPU, or per N cores)"
    )
    parser.add_argument("--cpus-per-actor", type=int, default=2, help="CPU cores per Ray worker")
    parser.add_argument(
        "--ship-models",
        action="store_true",
        help="send each model file/folder to every Ray node once (no shared filesystem needed)",
    )
    parser.add_argument("--device", default="auto", choices=[d.value for d in DeviceChoice])
    parser.add_argument("--precision", default="auto", choices=[p.value for p in Precision])
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    try:
        runtime = RuntimeOptions(
            device=args.device, precision=args.precision, cpu_threads=args.threads
        )
        from engine.batch.request import BatchRequest

        request = BatchRequest(spec=args.spec, out_dir=args.output, runtime=runtime)
        if args.ray:
            return _run_on_ray(request, args)
        return _run_local(request, quiet=args.quiet)
    except EaselError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def _run_local(request, *, quiet: bool) -> int:
    from engine.batch.manifest import Manifest
    from engine.batch.spec import load_spec
    from engine.events import FINAL_EVENTS, Failed, Progress, Result
    from engine.worker import Engine

    items = load_spec(request.spec)  # fail fast on a bad spec, before the engine starts
    with Manifest(request.out_dir) as manifest:  # closed again: the job opens it for itself
        pending = manifest.pending(items)
    bar = BatchProgressBar(enabled=not quiet)
    bar.announce(len(items), len(pending))
    final: dict = {}
    done = threading.Event()

    def sink(event) -> None:
        if isinstance(event, Progress):
            bar.update(event.step, event.total, event.info)
        elif isinstance(event, FINAL_EVENTS):
            final["event"] = event
            done.set()

    engine = Engine(sink)
    try:
        job_id = engine.submit(request)
        try:
            while not done.wait(0.1):
                pass
        except KeyboardInterrupt:
            bar.finish()
            print(
                "stopping (the image in flight is dropped)... Ctrl-C again to quit", file=sys.stderr
            )
            engine.cancel(job_id)
            try:
                done.wait()
            except KeyboardInterrupt:
                return EXIT_CANCELLED
    finally:
        engine.shutdown(timeout=0 if not done.is_set() else 30)
    bar.finish()
    event = final["event"]
    if isinstance(event, Result):
        return _summary(event.info)
    if isinstance(event, Failed):
        print(f"error: {event.message}", file=sys.stderr)
        return 1
    print(f"stopped; rerun the same command to go on ({request.out_dir})", file=sys.stderr)
    return EXIT_CANCELLED


def _run_on_ray(request, args) -> int:
    from engine.batch.ray_runner import RayBatch, RayOptions

    options = RayOptions(
        address=args.ray,
        actors=args.actors,
        cpus_per_actor=args.cpus_per_actor,
        ship_models=args.ship_models,
    )
    bar = BatchProgressBar(enabled=not args.quiet)
    batch = RayBatch(request, options, on_progress=bar.update, on_announce=bar.announce)
    try:
        summary = batch.run()
    except KeyboardInterrupt:
        bar.finish()
        batch.stop()
        print(f"stopped; rerun the same command to go on ({request.out_dir})", file=sys.stderr)
        return EXIT_CANCELLED
    finally:
        batch.close()
    bar.finish()
    return _summary(summary)


def _summary(info: dict) -> int:
    print(
        f"{info['done']} made, {info['failed']} failed, {info['skipped']} already done; "
        f"manifest: {info['manifest']}",
        file=sys.stderr,
    )
    if info["failed"]:
        print("the manifest lists why each failed; a rerun tries them again", file=sys.stderr)
        return EXIT_SOME_FAILED
    return EXIT_OK


class BatchProgressBar:
    """`[####------] 5/12 images  0.80 images/s  9s left  1 failed` on stderr."""

    WIDTH = 30

    def __init__(self, *, enabled: bool = True):
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.drawn = False
        self.last_plain = 0.0

    def announce(self, total: int, pending: int) -> None:
        if self.enabled:
            skipped = total - pending
            note = f" ({skipped} already done, skipped)" if skipped else ""
            print(f"{pending} images to make{note}", file=sys.stderr, flush=True)

    def update(self, done: int, total: int, info: dict) -> None:
        if not self.enabled or not total:
            return
        line = format_progress(done, total, info, self.WIDTH)
        if self.tty:
            sys.stderr.write("\r\033[K" + line)
        else:  # a log file: one line per image is plenty
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
        self.drawn = True

    def finish(self) -> None:
        if self.enabled and self.drawn and self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()
        self.drawn = False


def format_progress(done: int, total: int, info: dict, width: int = 30) -> str:
    filled = int(width * done / max(total, 1))
    parts = [f"[{'#' * filled}{'-' * (width - filled)}] {done}/{total} images"]
    rate = info.get("images_per_second") or 0.0
    if rate:
        parts.append(f"{rate:.2f} images/s")
    left = info.get("seconds_left")
    if left is not None and done < total:
        parts.append(f"{format_duration(left)} left")
    if info.get("failed"):
        parts.append(f"{info['failed']} failed")
    return "  ".join(parts)
