"""Speed of the built-in models through the engine's own generation path (model already loaded).

    .venv/bin/python bench/builtin_speed.py [--threads 2] [--runs 3]

Targets (issue 6), on 2 CPU cores: emoji-ldm one 64x64 image with 20 DDIM steps (classifier-free
guidance on) under 3 s, a batch of 4 under 6 s; emoji-dcgan 64 images under 1 s. Each case runs
once to warm up (load, MiniLM, first-call allocations), then `--runs` times; the median counts.
The machine may be shared: the load average is printed beside the numbers.

emoji-dalle (issue 14) also runs its token sampler with and without the KV cache, for one and 16
pictures (guidance 3, top-k 64, the same seeds): the cache should make sampling well over 5x
faster, and both ways must write the same tokens (checked, not assumed).

emoji-ldm's rows run its shipped defaults, autoguidance (engine.families.autoguide) included:
one more UNet call per step beside CFG's two; the "autoguidance off" row is the same picture's
cost without it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CASES = [
    # name, model, batch, target seconds, extras
    ("emoji-ldm 1 image, 20 DDIM steps", "builtin:emoji-ldm", 1, 3.0, {}),
    ("emoji-ldm batch of 4, 20 DDIM steps", "builtin:emoji-ldm", 4, 6.0, {}),
    ("emoji-ldm 1 image, autoguidance off", "builtin:emoji-ldm", 1, None, {"autoguidance": 1}),
    ("emoji-dcgan 64 images", "builtin:emoji-dcgan", 64, 1.0, {}),
    ("emoji-beta-vae 64 images", "builtin:emoji-beta-vae", 64, None, {}),
    ("emoji-dalle 1 image", "builtin:emoji-dalle", 1, None, {}),
    ("emoji-dalle 16 images", "builtin:emoji-dalle", 16, None, {}),
]
TEXT_MODELS = ("builtin:emoji-ldm", "builtin:emoji-dalle")


def dalle_cache_cases(model_ref: str, runs: int) -> list[dict]:
    """Token sampling + decoding with the KV cache against a full pass per token."""
    import torch

    from engine.families.common import generator_for
    from engine.families.dalle import GuidedLogits, SamplingOptions, sample_tokens
    from engine.families.registry import load_native_model
    from engine.library.resolve import resolve_model
    from engine.text.minilm import shared_encoder

    model = load_native_model(resolve_model(model_ref).path).model.eval()
    text = shared_encoder().encode(["a red apple"])
    options = SamplingOptions(guidance_scale=3.0)
    side = model.grid_side
    rows = []
    for batch in (1, 16):
        seconds, tokens = {}, {}
        for cached in (True, False):
            times = []
            for run in range(runs):
                generators = [generator_for(run * 100 + i) for i in range(batch)]
                guide = GuidedLogits(model.transformer, text, None, batch, 3.0)
                started = time.perf_counter()
                with torch.inference_mode():
                    out = sample_tokens(
                        model.transformer, guide, generators, options, use_cache=cached
                    )
                    model.tokenizer.decode(out.view(-1, side, side))
                times.append(time.perf_counter() - started)
                tokens.setdefault(cached, []).append(out)
            seconds[cached] = statistics.median(times)
        same = all(torch.equal(a, b) for a, b in zip(tokens[True], tokens[False], strict=True))
        ratio = seconds[False] / seconds[True]
        print(
            f"emoji-dalle {batch} image(s), {side * side} tokens: KV cache {seconds[True]:.2f} s, "
            f"no cache {seconds[False]:.2f} s, {ratio:.1f}x faster, same tokens: {same}",
            flush=True,
        )
        rows.append(
            {
                "case": f"emoji-dalle KV cache vs none, batch {batch}",
                "cached_s": seconds[True],
                "uncached_s": seconds[False],
                "speedup": ratio,
                "same_tokens": same,
            }
        )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="", help="run only cases whose name contains this")
    parser.add_argument(
        "--dalle-model", default="builtin:emoji-dalle", help="model for the KV-cache cases"
    )
    args = parser.parse_args(argv)

    import torch

    from engine.api import GenerationRequest, RuntimeOptions
    from engine.context import JobContext
    from engine.generate import run_generation

    torch.set_num_threads(args.threads)
    ctx = JobContext(0, lambda event: None)
    results = []
    for name, model, batch, target, extras in CASES:
        if args.only not in name:
            continue
        request = GenerationRequest(
            model=model,
            prompt="a red apple" if model in TEXT_MODELS else "",
            steps=20,
            sampler="DDIM",
            guidance_scale=3.0,
            batch_size=batch,
            extras=extras,
            runtime=RuntimeOptions(cpu_threads=args.threads),
        )
        run_generation(request, ctx)  # warm-up: load the model and the text encoder
        times = []
        for run in range(args.runs):
            started = time.perf_counter()
            run_generation(request.replace(seed=run + 1), ctx)
            times.append(time.perf_counter() - started)
        median = statistics.median(times)
        verdict = "" if target is None else (" PASS" if median < target else " FAIL")
        limit = "" if target is None else f" (target < {target:.0f} s)"
        print(f"{name}: median {median:.2f} s of {args.runs}{limit}{verdict}", flush=True)
        results.append({"case": name, "median_s": median, "runs_s": times, "target_s": target})
    if args.only.lower() in "emoji-dalle kv cache":
        results += dalle_cache_cases(args.dalle_model, max(1, args.runs))
    load = os.getloadavg()
    print(f"threads {args.threads}, load average {load[0]:.1f} (machine may be shared)")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
