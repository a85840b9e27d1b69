"""Live painting latency: from the end of a stroke to the live picture on screen, with the real
engine in the real window, and the GUI timer gaps while live mode runs.

    .venv/bin/python bench/live_latency.py [--threads 0] [--strokes 12] [--sd15]

1. Built-in model (emoji-ldm): the window opens on the real engine, the Live switch is turned
   on (the first update loads the model: not counted), then `--strokes` sketch strokes are made
   on a 64x64 and on a 512x512 canvas, each after the previous live picture arrived; the time
   from the stroke's end (the document's undo step, what the canvas makes on mouse release) to
   the pane showing the new picture is the latency (includes the 150 ms quiet time that tells
   a finished stroke from the next one). Then a burst of ten quick strokes (40 ms apart): how
   many live jobs ran and the latency after the last stroke. A 16 ms GUI timer runs the whole
   time (as bench/ui_responsiveness.py measures it).
2. `--sd15`: a full-size SD 1.5 pipeline with random weights from the published config
   (bench/engine_overhead.py) and an LCM-LoRA-shaped LoRA (rank 64, random, its metadata names
   LCM, so the engine picks LCM's 4 steps, guidance 1, LCM sampler), 256x256 canvas: strokes
   as above (image-to-image at strength 0.75: 3 of the 4 LCM steps run) and a text-to-image
   update on an empty canvas (all 4 steps). Random weights: the timing is real, the pictures
   are noise.

Target (issue 15): built-in model, a live update within 0.5 s of the last stroke on this CPU.
Writes bench/out/live_latency.json. The machine is shared: median and best are reported with
the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ui_responsiveness import _gap_stats, _spin, _TimerGaps  # noqa: E402

LCM_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"]


def _stroke(document, index: int, side: int) -> None:
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QColor

    x = (index * 37) % max(1, side - side // 4)
    document.begin_stroke("sketch")
    document.paint_segment(
        QPointF(x, side * 0.2), QPointF(x + side / 4, side * 0.8), side / 10, False,
        QColor(240, 200, 30),
    )  # fmt: skip
    document.end_stroke("Sketch")


def _picture(window, side: int) -> None:
    from PySide6.QtGui import QColor, QImage

    image = QImage(side, side, QImage.Format.Format_ARGB32)
    image.fill(QColor(60, 110, 170))
    window.document.set_image(image, "Open")


class _Arrivals:
    """Live pictures as the pane receives them: (job id, perf_counter time)."""

    def __init__(self, live):
        self.items: list[tuple[int, float]] = []
        self.engine_s: list[float] = []  # the job's own time (engine info), to split latency
        live.updated.connect(lambda job, _s: self._arrived(live, job))

    def _arrived(self, live, job: int) -> None:
        self.items.append((job, time.perf_counter()))
        info = live.latest.info
        seconds = info.get("total_s", info.get("generate_s"))
        if isinstance(seconds, (int, float)):
            self.engine_s.append(float(seconds))

    def after(self, started: float) -> float | None:
        times = [t for _, t in self.items if t > started]
        return times[0] - started if times else None


def _latencies(app, window, arrivals, strokes: int, side: int, timeout: float) -> list[float]:
    live = window.live
    found = []
    for index in range(strokes):
        _spin(app, lambda: not live.queue.pending and live.queue.running is None, timeout)
        app.processEvents()
        started = time.perf_counter()
        _stroke(window.document, index, side)
        _spin(app, lambda s=started: arrivals.after(s) is not None, timeout)
        found.append(arrivals.after(started))
    return found


def _burst(app, window, arrivals, side: int, timeout: float) -> dict:
    live = window.live
    _spin(app, lambda: not live.queue.pending and live.queue.running is None, timeout)
    before = live.queue.count
    for index in range(10):
        _stroke(window.document, index, side)
        _spin_for(app, 0.04)
    last = time.perf_counter()
    _spin(app, lambda: not live.queue.pending and live.queue.running is None, timeout)
    return {
        "strokes": 10,
        "live_jobs": live.queue.count - before,
        "latency_after_last_stroke_s": round(arrivals.after(last) or -1, 3),
    }


def _spin_for(app, seconds: float) -> None:
    until = time.perf_counter() + seconds
    _spin(app, lambda: time.perf_counter() >= until, seconds + 5)


def _summary(values: list[float]) -> dict:
    return {
        "runs": len(values),
        "median_s": round(statistics.median(values), 3),
        "best_s": round(min(values), 3),
        "worst_s": round(max(values), 3),
    }


def _open_window(threads: int):
    from PySide6.QtWidgets import QApplication

    import desktop  # noqa: F401 - PySide6 reference-count workaround
    from desktop.app import create_window
    from desktop.bridge import EngineBridge
    from engine.api import RuntimeOptions

    app = QApplication.instance() or QApplication([sys.argv[0]])
    window = create_window(EngineBridge())
    window.resize(1360, 860)
    window.show()
    window.start_background_work()
    _spin(app, lambda: window.bridge.ready, 300)
    window.preferences.set_runtime(RuntimeOptions(cpu_threads=threads))
    return app, window


def measure_builtin(threads: int, strokes: int) -> dict:
    app, window = _open_window(threads)
    arrivals = _Arrivals(window.live)
    results: dict = {"model": "builtin:emoji-ldm", "cpu_threads": threads}
    try:
        window.settings.set("model", "builtin:emoji-ldm")
        window.settings.set("prompt", "a red apple")
        with _TimerGaps() as loading:
            _picture(window, 64)
            started = time.perf_counter()
            window.live_action.setChecked(True)
            _spin(app, lambda: arrivals.after(started) is not None, 300)
        results["first_update_with_model_load_s"] = round(arrivals.after(started), 2)
        results["gui_timer_gaps_first_update_model_load"] = _gap_stats(loading.gaps)
        results["plan"] = window.live.plan.summary
        arrivals.engine_s.clear()
        with _TimerGaps() as gaps:
            for side in (64, 512):
                _picture(window, side)
                found = _latencies(app, window, arrivals, strokes, side, 120)
                results[f"stroke_to_picture_{side}px_canvas"] = _summary(found)
            results["burst_of_ten_strokes"] = _burst(app, window, arrivals, 512, 120)
            window.live_action.setChecked(False)
        results["gui_timer_gaps_live_painting"] = _gap_stats(gaps.gaps)
        results["engine_job_s"] = _summary(arrivals.engine_s)
    finally:
        window.close()
    return results


def build_sd15_lcm(folder: Path) -> tuple[Path, Path]:
    """SD 1.5 with random weights and a random LCM-LoRA-shaped LoRA (its metadata says LCM)."""
    import torch
    from diffusers import StableDiffusionPipeline
    from engine_overhead import build_sd15_random
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    model = folder / "sd15-random"
    if not (model / "model_index.json").is_file():
        build_sd15_random(model)
    lora = folder / "lcm-lora-random.safetensors"
    if not lora.is_file():
        pipe = StableDiffusionPipeline.from_pretrained(str(model), local_files_only=True)
        torch.manual_seed(3)
        pipe.unet.add_adapter(LoraConfig(r=64, lora_alpha=64, target_modules=LCM_LORA_TARGETS))
        for name, param in pipe.unet.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.01)
        StableDiffusionPipeline.save_lora_weights(
            save_directory=str(folder),
            unet_lora_layers=get_peft_model_state_dict(pipe.unet),
            weight_name="lora-plain.safetensors",
        )
        tensors = load_file(str(folder / "lora-plain.safetensors"))
        save_file(tensors, str(lora), metadata={"modelspec.title": "LCM-LoRA SD 1.5 (random)"})
        (folder / "lora-plain.safetensors").unlink()
    return model, lora


def measure_sd15(threads: int, strokes: int, folder: Path) -> dict:
    model, lora = build_sd15_lcm(folder)
    app, window = _open_window(threads)
    arrivals = _Arrivals(window.live)
    results: dict = {
        "model": "SD 1.5 architecture, random weights, + random LCM-LoRA (rank 64)",
        "cpu_threads": threads,
    }
    try:
        settings = window.settings
        settings.set("model", str(model))
        settings.set("loras", [[str(lora), 1.0]])
        settings.set("prompt", "a lighthouse on a cliff at dusk")
        settings.set("width", 256)
        settings.set("height", 256)
        _spin(app, lambda: window.bridge.warm, 600)
        started = time.perf_counter()
        window.live_action.setChecked(True)  # empty canvas: text to image, loads the model
        _spin(app, lambda: arrivals.after(started) is not None, 1200)
        results["first_update_with_model_load_s"] = round(arrivals.after(started), 2)
        info = window.live.latest.metadata[0]
        shown = ("mode", "steps", "sampler", "guidance_scale", "width", "height")
        results["ran"] = {k: info.get(k) for k in shown}
        results["few_step"] = window.live.latest.info.get("few_step")
        arrivals.engine_s.clear()
        with _TimerGaps() as gaps:
            txt = []
            for index in range(max(1, strokes // 2)):
                started = time.perf_counter()
                settings.set("prompt", f"a lighthouse on a cliff at dusk, {index}")
                _spin(app, lambda s=started: arrivals.after(s) is not None, 600)
                txt.append(arrivals.after(started))
            results["prompt_edit_to_picture_txt2img"] = _summary(txt)
            results["engine_job_s_txt2img"] = _summary(arrivals.engine_s)
            arrivals.engine_s.clear()
            _picture(window, 256)
            _spin(
                app,
                lambda: not window.live.queue.pending and window.live.queue.running is None,
                600,
            )
            found = _latencies(app, window, arrivals, strokes, 256, 600)
            results["stroke_to_picture_img2img_256px"] = _summary(found)
            info = window.live.latest.metadata[0]
            results["img2img_ran"] = {k: info.get(k) for k in ("mode", "steps", "strength")}
            results["img2img_timings"] = {
                k: window.live.latest.info.get(k) for k in ("load_s", "sample_s", "total_s")
            }
            results["engine_job_s_img2img"] = _summary(arrivals.engine_s)
            window.live_action.setChecked(False)
        results["gui_timer_gaps_live_painting"] = _gap_stats(gaps.gaps)
    finally:
        window.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: as the app)")
    parser.add_argument("--strokes", type=int, default=12)
    parser.add_argument("--sd15", action="store_true", help="also SD 1.5 + LCM-LoRA at 256 px")
    parser.add_argument("--skip-builtin", action="store_true")
    parser.add_argument("--models-dir", default="", help="where the SD 1.5 folder is kept")
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["EASEL_DATA_DIR"] = tempfile.mkdtemp(prefix="easel-live-bench-")
    results: dict = {"load_average_at_start": os.getloadavg()}
    if not args.skip_builtin:
        results["builtin"] = measure_builtin(args.threads, args.strokes)
        print(json.dumps(results, indent=2), flush=True)
    if args.sd15:
        folder = Path(args.models_dir or tempfile.mkdtemp(prefix="easel-sd15-"))
        folder.mkdir(parents=True, exist_ok=True)
        results["sd15_lcm_lora"] = measure_sd15(args.threads, args.strokes, folder)
    results["load_average_at_end"] = os.getloadavg()
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "live_latency.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
