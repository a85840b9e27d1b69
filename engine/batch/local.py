"""A batch as one job on the in-process engine: the same worker thread and model cache as every
other job, so `easel batch` works on any install and the desktop app runs batches like any job.

Items run one after another; each finished image is saved and recorded before the next starts,
so cancelling (Ctrl-C, the dialog's Stop) loses at most the image in flight. A request that
fails for a reason of its own (a missing model, a bad setting) is recorded as failed and the
batch goes on. Progress reports images done of the run's total, images/s and time left.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any

from engine.api import GenerationRequest, RuntimeOptions
from engine.batch.manifest import Manifest
from engine.batch.request import BatchRequest
from engine.batch.spec import BatchItem, load_spec
from engine.batch.writer import BatchWriter, RateMeter, local_worker_name
from engine.context import JobContext
from engine.errors import EaselError, JobCancelled
from engine.events import Result

log = logging.getLogger(__name__)


def with_runtime(request: GenerationRequest, runtime: RuntimeOptions) -> GenerationRequest:
    """The request to run here: the spec's settings with this machine's runtime options."""
    return request.replace(runtime=runtime)


def make_one(request: GenerationRequest, ctx: JobContext) -> tuple[Any, dict, dict]:
    """Generate one image with the shared cache in `ctx`: (PIL image, metadata, info).

    Per-step progress of the image is not forwarded: a batch reports images, not steps.
    """
    from engine.generate import run_generation

    quiet = JobContext(
        ctx.job_id, lambda event: None, cancel_event=ctx.cancel_event, services=ctx.services
    )
    result = run_generation(request, quiet)
    ctx.services = quiet.services
    return result.images[0], result.metadata[0], result.info


def describe_failure(exc: BaseException) -> tuple[str, str]:
    """(message, kind) for a request that failed on its own account."""
    if isinstance(exc, EaselError):
        return str(exc), type(exc).__name__
    if isinstance(exc, MemoryError):
        return "Out of memory. Try a smaller size, or fewer workers per machine.", "OutOfMemory"
    log.error("batch item failed:\n%s", traceback.format_exc())
    return f"Unexpected error ({type(exc).__name__}): {exc}", "internal"


def run_batch(request: BatchRequest, ctx: JobContext) -> Result:
    """The BatchRequest handler (engine.jobs routes it here)."""
    items = load_spec(request.spec)
    with Manifest(request.out_dir) as manifest:
        return _run_pending(request, items, manifest, ctx)


def _run_pending(request: BatchRequest, items: list, manifest: Manifest, ctx) -> Result:
    pending = manifest.pending(items)
    writer = BatchWriter(manifest)
    meter = RateMeter(total=len(pending))
    gallery = _gallery() if request.add_to_gallery else None
    ctx.cache  # noqa: B018 - create the shared services now so every item reuses one cache
    worker = local_worker_name()
    ctx.progress(0, len(pending), **meter.info(), skipped=len(items) - len(pending))
    for item in pending:
        ctx.check_cancelled()
        info = _run_item(item, request.runtime, ctx, writer, worker, gallery, meter)
        ctx.progress(meter.finished, len(pending), **meter.info(), **info)
    summary = {
        "items": len(items),
        "skipped": len(items) - len(pending),
        "done": meter.done,
        "failed": meter.failed,
        "out_dir": str(manifest.out_dir),
        "manifest": str(manifest.path),
        "seconds": round(time.perf_counter() - meter.started, 3),
    }
    return Result(ctx.job_id, images=[], metadata=[], info=summary)


def _run_item(item: BatchItem, runtime, ctx, writer, worker, gallery, meter) -> dict:
    started_at, clock = time.time(), time.perf_counter()
    try:
        image, metadata, info = make_one(with_runtime(item.request, runtime), ctx)
    except JobCancelled:
        raise
    except Exception as exc:  # the item's own failure: record it, go on with the batch
        message, kind = describe_failure(exc)
        writer.write_failure(
            item, message, kind, started_at=started_at, seconds=time.perf_counter() - clock
        )
        meter.add(ok=False)
        return {"last_error": message}
    device = str(info.get("device", ""))
    row = writer.write_image(
        item,
        image,
        metadata,
        started_at=started_at,
        seconds=time.perf_counter() - clock,
        device=device,
        worker=worker,
    )
    meter.add(ok=True)
    ctx.preview(image, force=True)
    extra: dict = {"last_file": str(writer.manifest.out_dir / row["file"])}
    if gallery is not None:
        extra["gallery_entry_id"] = gallery.add(image, metadata).id
    return extra


def _gallery():
    from engine.history import HistoryStore

    return HistoryStore()
