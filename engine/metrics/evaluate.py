"""The `EvaluateRequest` job: FID and KID between two image sets.

Stages: find the images of both sets (cheap checks first, so a typo fails in milliseconds, not
after a minute of feature extraction), take each set's features from the on-disk feature cache
or extract them with the Inception network (loaded through the model cache, with progress and
cancel), then compute the two numbers.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from engine.api import EvaluateRequest
from engine.context import JobContext
from engine.events import Result
from engine.metrics import distances, feature_cache
from engine.metrics.images import list_images

CACHE_KEY = "metrics:fid-inception"


def run_evaluate(request: EvaluateRequest, ctx: JobContext) -> Result:
    started = time.perf_counter()
    sets = {
        "A": list_images(request.set_a, what="Set A"),
        "B": list_images(request.set_b, what="Set B"),
    }
    warnings = distances.check_set_sizes(len(sets["A"]), len(sets["B"]))
    ctx.check_cancelled()
    features, cached, extract_seconds = _features_for_sets(request, ctx, sets)
    total = len(sets["A"]) + len(sets["B"])
    ctx.progress(total, total, stage="Computing FID and KID")
    fid = distances.frechet_distance(features["A"], features["B"])
    ctx.check_cancelled()
    kid, kid_std = distances.kernel_inception_distance(
        features["A"],
        features["B"],
        subsets=request.kid_subsets,
        subset_size=request.kid_subset_size,
        seed=request.seed,
    )
    extracted = sum(len(sets[name]) for name in sets if name not in cached)
    info = {
        "fid": fid,
        "kid": kid,
        "kid_std": kid_std,
        "count_a": len(sets["A"]),
        "count_b": len(sets["B"]),
        "kid_subset_size": min(request.kid_subset_size, len(sets["A"]), len(sets["B"])),
        "warnings": warnings,
        "cached_sets": cached,
        "images_per_second": extracted / extract_seconds if extract_seconds else None,
        "seconds": time.perf_counter() - started,
    }
    return Result(ctx.job_id, info=info)


def _features_for_sets(
    request: EvaluateRequest, ctx: JobContext, sets: dict[str, list[Path]]
) -> tuple[dict[str, np.ndarray], list[str], float]:
    """Features per set (cached or extracted), which sets came from the cache, seconds spent."""
    from engine.metrics.fid import inception_path

    network_file = inception_path()
    keys = {name: feature_cache.set_key(paths, network_file) for name, paths in sets.items()}
    features = {}
    for name, paths in sets.items():
        found = feature_cache.load(keys[name], len(paths))
        if found is not None:
            features[name] = found
    cached = sorted(features)
    missing = [name for name in sets if name not in features]
    if not missing:
        return features, cached, 0.0

    from engine.devices import prepare
    from engine.metrics.fid import extract_features, load_inception

    device, _ = prepare(request.runtime)  # the dtype is ignored: FID features are always fp32
    total = sum(len(paths) for paths in sets.values())
    done_before = sum(len(sets[name]) for name in cached)
    ctx.progress(done_before, total, stage="Loading the Inception network")
    started = time.perf_counter()
    with ctx.cache.use(f"{CACHE_KEY}:{device}", lambda: load_inception(device)) as net:
        for name in missing:
            same_set = [other for other in features if keys[other] == keys[name]]
            if same_set:  # a set compared with itself is read once
                features[name] = features[same_set[0]]
                continue

            def report(done: int, rate: float, offset=done_before, name=name) -> None:
                ctx.progress(offset + done, total, stage=f"Set {name}", images_per_second=rate)

            features[name] = extract_features(
                net,
                sets[name],
                batch_size=request.batch_size,
                device=device,
                check_cancelled=ctx.check_cancelled,
                on_batch=report,
            )
            feature_cache.store(keys[name], features[name])
            done_before += len(sets[name])
    return features, cached, time.perf_counter() - started
