"""Benchmark: single-file load vs diffusers-folder load, and switching to a cached model.

Targets: loading a single-file checkpoint costs at most 1.2x loading the same model from a
diffusers folder; switching back to a cached model takes under 0.2 s.

Builds a Stable Diffusion 1.5-architecture pipeline with random weights from the bundled
`resources/configs/sd1` (UNet 860 M, VAE 84 M, CLIP-L text encoder 123 M parameters), saves it
once as a diffusers folder and once as an original-layout single file (fp16 safetensors, as
checkpoints are shared), then loads each several times, alternating. The single-file load goes
through the production path: probe -> bundled config -> `from_single_file(local_files_only)`.
`--mid` uses a smaller UNet (about a quarter of the parameters) for a quicker run.

    python bench/single_file_load.py [--mid] [--runs 3] [--threads N]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def build_pipeline(mid: bool):
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline
    from diffusers import UNet2DConditionModel as UNet
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from engine.paths import resource

    folder = resource("configs", "sd1")
    torch.manual_seed(0)
    unet_config = dict(UNet.load_config(folder / "unet"))
    if mid:
        unet_config["block_out_channels"] = [160, 320, 640, 640]
    pipe = StableDiffusionPipeline(
        unet=UNet.from_config(unet_config),
        vae=AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae")),
        text_encoder=CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder")),
        tokenizer=CLIPTokenizer.from_pretrained(resource("tokenizers", "clip")),
        scheduler=PNDMScheduler.from_config(PNDMScheduler.load_config(folder / "scheduler")),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return pipe.to(torch.float16)


def count_params(pipe) -> int:
    return sum(p.numel() for c in (pipe.unet, pipe.vae, pipe.text_encoder) for p in c.parameters())


def save_both(pipe, tmp: Path, mid: bool) -> tuple[Path, Path, Path | None]:
    from library.builders import save_config_folder
    from library.ldm_layout import pipeline_to_ldm
    from safetensors.torch import save_file

    folder = tmp / "diffusers"
    pipe.save_pretrained(folder, safe_serialization=True)
    single = tmp / "model.safetensors"
    save_file(pipeline_to_ldm(pipe), single)
    # A mid-size UNet does not match the bundled SD 1.5 config, so it gets its own config
    # folder (configs only); the full-size model uses the bundled one picked by the probe.
    config = save_config_folder(pipe, tmp / "config") if mid else None
    return folder, single, config


def load_diffusers(folder: Path):
    import torch
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(
        folder, torch_dtype=torch.float16, local_files_only=True
    )


def load_single(path: Path, config: Path | None):
    import torch

    from engine.library.single_file import load_single_file_pipeline

    return load_single_file_pipeline(path, torch_dtype=torch.float16, config=config)


def check_same_weights(a, b) -> None:
    """The two loads must be the same model, fully materialised (nothing left on `meta`)."""
    import torch

    for name in ("unet", "vae", "text_encoder"):
        left, right = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert left.keys() == right.keys(), name
        for key, tensor in left.items():
            assert tensor.device.type != "meta", f"{name}.{key} was never loaded"
            assert torch.equal(tensor, right[key]), f"{name}.{key} differs"


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def switch_times(pipes: dict, rounds: int = 10) -> list[float]:
    from engine.library.cache import ModelCache

    cache = ModelCache(ram_budget_bytes=64 * 1024**3)
    for key, pipe in pipes.items():
        with cache.use(key, lambda p=pipe: p):
            pass
    times = []
    keys = list(pipes)
    for index in range(rounds):
        key = keys[index % len(keys)]
        started = time.perf_counter()
        with cache.use(key, lambda: (_ for _ in ()).throw(RuntimeError("reloaded"))):
            pass
        times.append(time.perf_counter() - started)
    assert cache.loads == len(pipes)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mid", action="store_true", help="smaller UNet, quicker")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = all)")
    args = parser.parse_args()
    import torch

    from engine.library.single_file import quiet_progress_bars

    if args.threads:
        torch.set_num_threads(args.threads)
    quiet_progress_bars()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        build_s, pipe = timed(lambda: build_pipeline(args.mid))
        params = count_params(pipe)
        folder, single, config = save_both(pipe, tmp, args.mid)
        del pipe
        gc.collect()
        size = single.stat().st_size / 1e9
        print(
            f"model: {params / 1e6:.0f} M parameters, fp16 single file {size:.2f} GB "
            f"(built in {build_s:.0f} s)"
        )
        single_times, folder_times = [], []
        for _ in range(args.runs):
            seconds, loaded = timed(lambda: load_single(single, config))
            single_times.append(seconds)
            del loaded
            gc.collect()
            seconds, loaded = timed(lambda: load_diffusers(folder))
            folder_times.append(seconds)
            del loaded
            gc.collect()
        s_med, f_med = statistics.median(single_times), statistics.median(folder_times)
        print(
            f"single file:     {', '.join(f'{t:.2f}' for t in single_times)} s (median {s_med:.2f})"
        )
        print(
            f"diffusers folder: {', '.join(f'{t:.2f}' for t in folder_times)} s "
            f"(median {f_med:.2f})"
        )
        ratio = s_med / f_med
        print(
            f"ratio single/folder: {ratio:.2f}x (target <= 1.2x: "
            f"{'PASS' if ratio <= 1.2 else 'FAIL'})"
        )
        pipes = {"single": load_single(single, config), "folder": load_diffusers(folder)}
        check_same_weights(pipes["single"], pipes["folder"])
        print("both loads hold identical weights (every tensor compared)")
        switches = switch_times(pipes)
        worst = max(switches)
        print(
            f"switch to a cached model: median {statistics.median(switches) * 1000:.1f} ms, "
            f"worst {worst * 1000:.1f} ms (target < 200 ms: {'PASS' if worst < 0.2 else 'FAIL'})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
