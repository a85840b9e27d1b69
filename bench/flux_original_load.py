"""Benchmark: a full-width FLUX.1 transformer file in BFL's original layout, loaded by Easel's
converter (engine.sd.flux_convert) vs diffusers' `from_single_file`: wall time, peak RSS
(VmHWM), and whether the two give the same tensors.

Builds a FluxTransformer2DModel from the bundled `resources/configs/flux-dev` at its real width
(3072, 24 heads, 4096-wide text states) with reduced depth (`--double`, `--single` blocks) and
random weights, saved as bf16 (with `--fp8` its matrices as float8_e4m3fn; with `--scaled-fp8`
in ComfyUI's scaled-fp8 layout: fp8 matrices, a float32 `scale_weight` each and the `scaled_fp8`
marker) in BFL's names, as flux1-dev.safetensors holds them (written by the test helper's
independent inverse converter). Each loader then runs in a fresh process, loading in bf16; each
prints a SHA-256 over every tensor's bytes, in name order. diffusers does not apply fp8 scales,
so a scaled file is loaded by Easel alone.

    python bench/flux_original_load.py [--double 1] [--single 1] [--fp8 | --scaled-fp8]

safetensors maps the file and reads a tensor's pages when they are first touched, so the peak
after loading alone understates what a run needs: `peak_rss_touched_mib` is the peak after
every weight has been read once.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build(path: Path, double: int, single: int, fp8: bool, scaled: bool = False) -> int:
    import torch
    from diffusers import FluxTransformer2DModel
    from safetensors.torch import save_file

    from engine.paths import resource as bundled
    from tests.helpers.tiny_flux_original import flux_to_original

    config = dict(FluxTransformer2DModel.load_config(bundled("configs", "flux-dev", "transformer")))
    config.update(num_layers=double, num_single_layers=single)
    torch.manual_seed(0)
    model = FluxTransformer2DModel.from_config(config).to(torch.bfloat16)
    state = flux_to_original(model.state_dict())
    if fp8:  # weight matrices as float8_e4m3fn, as the fp8 releases store them
        state = {k: v.to(torch.float8_e4m3fn) if v.ndim == 2 else v for k, v in state.items()}
    if scaled:  # ComfyUI's layout: fp8 = weight / (absmax / 448), the scale beside it
        from tests.helpers.scaled_fp8 import to_scaled_fp8

        state = to_scaled_fp8(state)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return sum(p.numel() for p in model.parameters())


def _hwm_mib() -> int:
    """This process's peak RSS (VmHWM: unlike ru_maxrss it is not inherited from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return 0


def load(which: str, path: Path, double: int, single: int) -> dict:
    import torch
    from diffusers import FluxTransformer2DModel

    from engine.paths import resource as bundled

    config_dir = bundled("configs", "flux-dev")
    base = _hwm_mib()
    start = time.perf_counter()
    if which == "easel":
        from engine.sd.flux_convert import load_original_transformer

        config = json.loads((config_dir / "transformer" / "config.json").read_text())
        model = load_original_transformer(path, config, torch.bfloat16)
    else:
        model = FluxTransformer2DModel.from_single_file(
            str(path),
            config=str(config_dir),
            subfolder="transformer",
            local_files_only=True,
            torch_dtype=torch.bfloat16,
            num_layers=double,
            num_single_layers=single,
        )
    wall = time.perf_counter() - start
    after_load = _hwm_mib()
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.contiguous().view(torch.uint8).numpy().tobytes())
    return {
        "loader": which,
        "wall_s": round(wall, 2),
        "rss_before_mib": base,
        "peak_rss_load_mib": after_load,
        "peak_rss_touched_mib": _hwm_mib(),  # every weight read once (the hash)
        "sha256": digest.hexdigest()[:16],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--double", type=int, default=1)
    parser.add_argument("--single", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fp8", action="store_true", help="store the matrices as fp8")
    parser.add_argument("--scaled-fp8", action="store_true", help="ComfyUI's scaled-fp8 layout")
    parser.add_argument("--load", choices=["easel", "diffusers"])
    parser.add_argument("--file")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.load:
        print(json.dumps(load(args.load, Path(args.file), args.double, args.single)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flux1-original.safetensors"
        params = build(path, args.double, args.single, args.fp8, args.scaled_fp8)
        print(f"{params / 1e6:.0f} M parameters, file {path.stat().st_size / 2**20:,.0f} MiB")
        loaders = ("easel", "easel") if args.scaled_fp8 else ("easel", "diffusers") * 2
        for which in loaders:
            command = [sys.executable, __file__, "--load", which, "--file", str(path)]
            command += ["--double", str(args.double), "--single", str(args.single)]
            command += ["--threads", str(args.threads)]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            print(out.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
