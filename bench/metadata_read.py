"""Benchmark: reading settings from a dropped image (target: < 50 ms for any real file, < 1 s
for the worst hostile one), since the desktop reads them on the GUI thread when a file is
dropped.

Times `engine.metadata.read_image_settings` (median of --runs) on the sd-parsers sample set
(tests/metadata/samples: A1111 PNG/JPEG/stealth, ComfyUI, InvokeAI, Fooocus, NovelAI), on an
Easel PNG, and on hostile files: a 900 MP PNG, a 4 MiB ComfyUI-style workflow, a million nested
brackets, a 256 MB zTXt bomb.

    python bench/metadata_read.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from engine.errors import EaselError  # noqa: E402
from engine.metadata import read_image_settings, save_png_with_metadata  # noqa: E402
from tests.metadata import pngs  # noqa: E402

SAMPLES = ROOT / "tests" / "metadata" / "samples"
A1111 = "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x512"


def _hostile(folder: Path) -> dict[str, Path]:
    files = {}

    def write(name: str, data: bytes) -> None:
        files[name] = folder / name
        files[name].write_bytes(data)

    write("900mp.png", pngs.png(pngs.text("parameters", A1111), width=30000, height=30000))
    nodes = [{"id": i, "type": "CLIPTextEncode", "widgets_values": ["word " * 60]}
             for i in range(11_000)]  # fmt: skip
    workflow = json.dumps({"nodes": nodes, "links": []})
    write(f"{len(workflow) / 2**20:.1f}mib-workflow.png", pngs.png(pngs.text("workflow", workflow)))
    # no text at all and an alpha channel: the stealth check decodes it (the largest it will)
    noise = Image.effect_noise((2048, 2048), 64).convert("RGBA")
    noise.save(folder / "4mp-rgba-no-text.png", compress_level=1)
    files["4mp-rgba-no-text.png"] = folder / "4mp-rgba-no-text.png"
    write("nested.png", pngs.png(pngs.text("easel", "[" * 1_000_000)))
    packer = zlib.compressobj(9)
    bomb = b"".join(packer.compress(b"a" * 2**20) for _ in range(256)) + packer.flush()
    write("ztxt-bomb.png", pngs.png(pngs.ztxt("parameters", bomb)))
    return files


def _time(path: Path, runs: int) -> tuple[float, str]:
    times, outcome = [], ""
    for _ in range(runs):
        started = time.perf_counter()
        try:
            found = read_image_settings(path)
            outcome = found.source if found else "no settings"
        except EaselError as exc:
            outcome = f"refused: {str(exc)[:60]}"
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000, outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        easel = save_png_with_metadata(
            Image.new("RGB", (512, 512)), folder / "easel.png", {"prompt": "x", "seed": 2**63}
        )
        files = {p.name: p for p in sorted(SAMPLES.glob("*.*")) if p.suffix != ".txt"}
        files = {k: v for k, v in files.items() if v.suffix in (".png", ".jpg")}
        files["easel-512px.png"] = easel
        files.update(_hostile(folder))
        print(f"{'file':42} {'median ms':>10}  result")
        for name, path in files.items():
            ms, outcome = _time(path, args.runs)
            print(f"{name:42} {ms:10.2f}  {outcome}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
