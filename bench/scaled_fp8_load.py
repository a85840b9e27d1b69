"""Benchmark: a T5 text encoder file in ComfyUI's scaled-fp8 layout vs its bf16 original, loaded
by Easel's text encoder loader (engine.sd.modern_text_encoders): wall time and peak RSS (VmHWM),
each load in a fresh process, in bf16. `peak_rss_touched_mib` is the peak after every weight was
read once (a bf16 file's tensors stay in the file's mapping, read on first touch).

The encoder is T5-XXL's architecture (gated GELU, 64-wide heads) at reduced size (`--width`,
`--layers`, feed-forward 2.75 x width as T5 v1.1), random weights; the scaled file stores each
linear weight as float8_e4m3fn with a float32 `scale_weight` (absmax / 448) and the
`scaled_fp8` marker, as ComfyUI's t5xxl_fp8_e4m3fn_scaled.safetensors does (the token
embedding stays bf16, as there).

    python bench/scaled_fp8_load.py [--width 1024] [--layers 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build(folder: Path, width: int, layers: int) -> dict[str, Path]:
    import torch
    from safetensors.torch import save_file
    from transformers import T5Config, T5EncoderModel

    from tests.helpers.scaled_fp8 import to_scaled_fp8

    config = T5Config(
        vocab_size=32128,
        d_model=width,
        d_kv=64,
        d_ff=int(width * 2.75),
        num_layers=layers,
        num_heads=width // 64,
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
        architectures=["T5EncoderModel"],
    )
    (folder / "text_encoder").mkdir(parents=True)
    config.save_pretrained(folder / "text_encoder")
    torch.manual_seed(0)
    state = T5EncoderModel(config).to(torch.bfloat16).state_dict()
    state.pop("encoder.embed_tokens.weight", None)  # tied to `shared`, stored once
    files = {"bf16": folder / "t5_bf16.safetensors", "scaled": folder / "t5_fp8_scaled.safetensors"}
    save_file({k: v.contiguous() for k, v in state.items()}, str(files["bf16"]))
    scaled = to_scaled_fp8(state)
    save_file({k: v.contiguous() for k, v in scaled.items()}, str(files["scaled"]))
    return files


def _hwm_mib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return 0


def _bytes(tensor):
    import torch

    return tensor.contiguous().reshape(-1).view(torch.uint8)


def load(path: Path, config_dir: Path) -> dict:
    import torch

    from engine.sd.modern_text_encoders import load_text_encoder

    base = _hwm_mib()
    start = time.perf_counter()
    model = load_text_encoder(path, config_dir, "text_encoder", torch.bfloat16)
    wall = time.perf_counter() - start
    after_load = _hwm_mib()
    # every 4 KiB page read once (one byte of each), with no copy of the tensors
    total = sum(int(_bytes(t)[::4096].sum()) for t in model.state_dict().values())
    return {
        "file": path.name,
        "file_mib": round(path.stat().st_size / 2**20),
        "wall_s": round(wall, 2),
        "rss_before_mib": base,
        "peak_rss_load_mib": after_load,
        "peak_rss_touched_mib": _hwm_mib(),
        "page_byte_sum": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--load")
    parser.add_argument("--config")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.load:
        print(json.dumps(load(Path(args.load), Path(args.config))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        files = build(Path(tmp), args.width, args.layers)
        for name in ("bf16", "scaled", "bf16", "scaled"):
            command = [sys.executable, __file__, "--load", str(files[name]), "--config", tmp]
            command += ["--threads", str(args.threads)]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            print(out.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
