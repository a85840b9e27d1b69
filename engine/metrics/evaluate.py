"""The `EvaluateRequest` job: FID and KID between two image sets.

Stages: find the images of both sets (cheap checks first, so a typo fails in milliseconds, not
after a minute of feature extraction), load the Inception network through the model cache,
extract features set by set with progress and cancel, then compute the two numbers.
"""

from __future__ import annotations

import time

from engine.api import EvaluateRequest
from engine.context import JobContext
from engine.events import Result
from engine.metrics import distances
from engine.metrics.images import list_images

CACHE_KEY = "metrics:fid-inception"


def run_evaluate(request: EvaluateRequest, ctx: JobContext) -> Result:
    started = time.perf_counter()
    paths_a = list_images(request.set_a, what="Set A")
    paths_b = list_images(request.set_b, what="Set B")
    warnings = distances.check_set_sizes(len(paths_a), len(paths_b))
    ctx.check_cancelled()

    from engine.devices import prepare
    from engine.metrics.fid import extract_features, load_inception

    device, _ = prepare(request.runtime)  # the dtype is ignored: FID features are always fp32
    total = len(paths_a) + len(paths_b)
    ctx.progress(0, total, stage="Loading the Inception network")
    extract_started = time.perf_counter()
    with ctx.cache.use(f"{CACHE_KEY}:{device}", lambda: load_inception(device)) as net:
        features = []
        for name, paths, offset in (("A", paths_a, 0), ("B", paths_b, len(paths_a))):

            def report(done: int, rate: float, offset=offset, name=name) -> None:
                ctx.progress(offset + done, total, stage=f"Set {name}", images_per_second=rate)

            features.append(
                extract_features(
                    net,
                    paths,
                    batch_size=request.batch_size,
                    device=device,
                    check_cancelled=ctx.check_cancelled,
                    on_batch=report,
                )
            )
    extract_seconds = time.perf_counter() - extract_started
    ctx.check_cancelled()
    ctx.progress(total, total, stage="Computing FID and KID")
    fid = distances.frechet_distance(*features)
    ctx.check_cancelled()
    kid, kid_std = distances.kernel_inception_distance(
        *features,
        subsets=request.kid_subsets,
        subset_size=request.kid_subset_size,
        seed=request.seed,
    )
    info = {
        "fid": fid,
        "kid": kid,
        "kid_std": kid_std,
        "count_a": len(paths_a),
        "count_b": len(paths_b),
        "kid_subset_size": min(request.kid_subset_size, len(paths_a), len(paths_b)),
        "warnings": warnings,
        "images_per_second": total / max(extract_seconds, 1e-9),
        "seconds": time.perf_counter() - started,
        "device": str(device),
    }
    return Result(ctx.job_id, info=info)
