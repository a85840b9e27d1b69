"""Benchmark: scan and identify 200 checkpoints (targets: < 2 s warm, < 10 s cold with hashing).

Builds 200 stripped model files in a temp folder: real headers (every tensor name and shape of
the published SD 1.x, SD 2.x and SDXL checkpoints, in the original single-file key layout,
produced from the bundled configs on the meta device) followed by a little data, plus LoRAs and
VAEs. Then times, each against a fresh library database:

- identify: first scan, headers only (the files were just written, so the OS cache is warm);
- rescan: the same library scanned again (nothing changed: a stat per file);
- cold + hash: a fresh database and SHA-256 of every file.

    python bench/library_scan.py [--count 200]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

DATA_BYTES = 256 * 1024  # the "tiny data" after each header


def checkpoint_shapes(config_name: str) -> dict[str, tuple[int, ...]]:
    """Every tensor name/shape of a full checkpoint of this family, original key layout."""
    import torch
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from library.ldm_layout import clip_to_ldm, open_clip_to_ldm, unet_to_ldm, vae_to_ldm
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from engine.paths import resource

    folder = resource("configs", config_name)
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        state = {**unet_to_ldm(unet.state_dict(), unet.config)}
        state.update(vae_to_ldm(vae.state_dict(), vae.config))
        if (folder / "text_encoder_2").is_dir():
            te = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
            te2 = CLIPTextModelWithProjection(
                CLIPTextConfig.from_pretrained(folder / "text_encoder_2")
            )
            state.update(clip_to_ldm(te.state_dict(), "conditioner.embedders.0.transformer."))
            state.update(open_clip_to_ldm(te2.state_dict(), "conditioner.embedders.1.model."))
        else:
            te = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
            if config_name.startswith("sd2"):
                state.update(open_clip_to_ldm(te.state_dict(), "cond_stage_model.model."))
            else:
                state.update(clip_to_ldm(te.state_dict(), "cond_stage_model.transformer."))
    del torch
    return {k: tuple(v.shape) for k, v in state.items()}


def lora_shapes(width: int, rank: int = 16) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for block in range(16):
        for proj in ("to_q", "to_k", "to_v", "to_out_0"):
            inner = width if proj == "to_k" or proj == "to_v" else 640
            name = f"lora_unet_block_{block}_attn2_{proj}"
            shapes[f"{name}.lora_down.weight"] = (rank, inner)
            shapes[f"{name}.lora_up.weight"] = (640, rank)
            shapes[f"{name}.alpha"] = ()
    return shapes


def write_stripped(path: Path, shapes: dict, rng: random.Random) -> None:
    header = {
        name: {"dtype": "F16", "shape": list(shape), "data_offsets": [0, 0]}
        for name, shape in shapes.items()
    }
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    data = rng.randbytes(DATA_BYTES)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def build_library(folder: Path, count: int) -> dict[str, int]:
    rng = random.Random(0)
    families = {
        "sd1": checkpoint_shapes("sd1"),
        "sd1-inpaint": checkpoint_shapes("sd1-inpaint"),
        "sd2": checkpoint_shapes("sd2-768-v"),
        "sdxl": checkpoint_shapes("sdxl-base"),
        "lora": lora_shapes(768),
        "vae": {
            k[len("first_stage_model.") :]: v
            for k, v in checkpoint_shapes("sd1").items()
            if k.startswith("first_stage_model.")
        },
    }
    mix = ["sd1"] * 6 + ["sd1-inpaint", "sd2", "sd2"] + ["sdxl"] * 4 + ["lora"] * 4 + ["vae"] * 3
    counts: dict[str, int] = {}
    for index in range(count):
        family = mix[index % len(mix)]
        counts[family] = counts.get(family, 0) + 1
        write_stripped(folder / f"model-{index:03d}.safetensors", families[family], rng)
    return counts


def timed_scan(folder: Path, db: Path, *, hash_files: bool) -> tuple[float, object]:
    from engine.library.records import ModelLibrary
    from engine.library.scan import scan_library

    library = ModelLibrary(db)
    started, cpu_started = time.perf_counter(), time.process_time()
    report = scan_library(
        library, hash_files=hash_files, sources=[(folder, "models")], include_hf_cache=False
    )
    report.cpu_seconds = time.process_time() - cpu_started
    return time.perf_counter() - started, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        folder = tmp_path / "models"
        folder.mkdir()
        os.environ["EASEL_DATA_DIR"] = str(tmp_path / "data")
        counts = build_library(folder, args.count)
        sizes = [p.stat().st_size for p in folder.iterdir()]
        print(
            f"built {args.count} files ({sum(sizes) / 1e6:.0f} MB, headers up to "
            f"{(max(sizes) - DATA_BYTES) / 1e3:.0f} KB): {counts}"
        )
        identify_s, report = timed_scan(folder, tmp_path / "a.sqlite3", hash_files=False)
        kinds: dict[str, int] = {}
        from engine.library.records import ModelLibrary

        for record in ModelLibrary(tmp_path / "a.sqlite3").list_models():
            variant = f":{record.variant}" if record.variant else ""
            label = f"{record.kind}:{record.base or '-'}{variant}"
            kinds[label] = kinds.get(label, 0) + 1
        print(f"identified: {kinds}")
        rescan_s, again = timed_scan(folder, tmp_path / "a.sqlite3", hash_files=False)
        cold_s, cold = timed_scan(folder, tmp_path / "b.sqlite3", hash_files=True)
        print(
            f"scan + identify, fresh database (files in OS cache): {identify_s:.2f} s wall, "
            f"{report.cpu_seconds:.2f} s CPU ({len(report.added)} added)"
        )
        print(f"rescan, nothing changed (warm): {rescan_s:.3f} s ({again.unchanged} unchanged)")
        print(f"cold scan with SHA-256 hashing: {cold_s:.2f} s wall, {cold.cpu_seconds:.2f} s CPU")
        load = os.getloadavg()[0]
        print(f"machine load average during the run: {load:.1f} on {os.cpu_count()} cores")
        print(
            f"targets: warm < 2 s -> {'PASS' if max(identify_s, rescan_s) < 2 else 'FAIL'} "
            f"(CPU {'PASS' if report.cpu_seconds < 2 else 'FAIL'}); "
            f"cold with hashing < 10 s -> {'PASS' if cold_s < 10 else 'FAIL'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
