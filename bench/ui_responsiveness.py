"""Desktop responsiveness: launch-to-window time, idle memory, GUI timer gaps during a generation.

    .venv/bin/python bench/ui_responsiveness.py [--model PATH] [--size 512] [--steps 20]

1. Launch: starts `python -m desktop.cli --startup-report` in a fresh process several times and
   measures from spawn to the window being shown (the first run is the cold one); the child
   reports its resident memory at that moment (idle window, engine not loaded).
2. Responsiveness: opens the real window on the real engine, waits for the engine to load,
   submits one generation through the GUI's own path, and records the gaps between ticks of a
   16 ms QTimer on the GUI thread while the job runs (whole job, and sampling steps only).
   Without --model it builds a tiny randomly initialised SD 1.x pipeline (tests/helpers).

   The model is chosen first and the stack imported and its tokenizers built as in the app (the
   timer gaps while that happens are reported as `choosing_the_model`).

Targets (issue 4): largest gap < 50 ms (p99 reported too), window shown < 1 s, idle RSS < 400 MB.
Writes bench/out/ui_responsiveness.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _launch(stage: str) -> tuple[float, dict]:
    """Spawn the app, return (seconds until it reported, its report)."""
    with tempfile.TemporaryDirectory() as data_dir:
        env = dict(os.environ, EASEL_DATA_DIR=data_dir, QT_QPA_PLATFORM="offscreen")
        # as installed: bytecode is cached (the first, cold run writes it)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "desktop.cli", f"--startup-report={stage}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = proc.stdout.readline()
        seconds = time.perf_counter() - started
        proc.wait(timeout=120)
        return seconds, json.loads(line)


def measure_launch(runs: int) -> dict:
    times, rss = [], []
    for _ in range(runs):
        seconds, report = _launch("window")
        assert not report["torch_loaded"], "torch must not load before the window shows"
        times.append(seconds)
        rss.append(report["rss_mb"])
    engine_seconds, engine_report = _launch("engine")
    return {
        "runs": runs,
        "cold_s": round(times[0], 3),
        "warm_median_s": round(statistics.median(times[1:] or times), 3),
        "max_s": round(max(times), 3),
        "idle_rss_mb_median": round(statistics.median(rss), 1),
        "idle_rss_mb_max": round(max(rss), 1),
        # after the window shows the loader imports torch: memory once that is done, no model
        "engine_ready_s": round(engine_seconds, 2),
        "engine_ready_rss_mb": round(engine_report["rss_mb"], 1),
    }


def _gap_stats(gaps_ms: list[float]) -> dict:
    if not gaps_ms:
        return {}
    ordered = sorted(gaps_ms)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {
        "ticks": len(ordered),
        "max_ms": round(ordered[-1], 1),
        "p99_ms": round(p99, 1),
        "median_ms": round(statistics.median(ordered), 1),
    }


def measure_generation(model: str | None, size: int, steps: int, threads: int) -> dict:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    data_dir = tempfile.mkdtemp(prefix="easel-bench-")
    os.environ["EASEL_DATA_DIR"] = data_dir
    from PySide6.QtCore import QElapsedTimer, QTimer
    from PySide6.QtWidgets import QApplication

    import desktop  # noqa: F401 - PySide6 reference-count workaround
    from desktop.app import create_window
    from desktop.bridge import EngineBridge

    if model is None:
        # built in a child process: this one must import diffusers the way the app does
        model = str(Path(data_dir) / "tiny-sd1")
        build = f"from tests.helpers.tiny_sd import build_sd1; build_sd1({model!r})"
        subprocess.run([sys.executable, "-c", build], cwd=ROOT, check=True, capture_output=True)
    app = QApplication.instance() or QApplication([sys.argv[0]])
    window = create_window(EngineBridge())
    window.show()
    window.start_background_work()
    _spin(app, lambda: window.bridge.ready, 300)
    from engine.api import RuntimeOptions

    baseline = _timer_gaps(app, 8.0)  # same window, engine loaded and idle: the machine's jitter
    window.preferences.set_runtime(RuntimeOptions(cpu_threads=threads))
    # choosing an SD model imports its stack and builds its tokenizers in the background (as
    # while the user writes the prompt): the GUI timer is measured during that too
    with _TimerGaps() as preparing:
        for name, value in (("model", model), ("steps", steps), ("width", size), ("height", size)):
            window.settings.set(name, value)
        _spin(app, lambda: window.bridge.warm and window.bridge.prepared_model == model, 300)

    window.settings.set("prompt", "a lighthouse on a cliff at dusk")

    clock = QElapsedTimer()
    clock.start()
    ticks: list[tuple[float, str]] = []
    phase = {"name": "job"}
    # sampling starts with the first denoising step (step 0 reports may come while loading)
    window.bridge.progress.connect(
        lambda job, step, total, info: step >= 1 and phase.update(name=f"step {step}")
    )
    timer = QTimer()
    timer.setInterval(16)
    timer.timeout.connect(lambda: ticks.append((clock.nsecsElapsed() / 1e6, phase["name"])))
    timer.start()
    started = time.perf_counter()
    window.generation.generate()
    _spin(app, lambda: not window.job.busy, 900)
    seconds = time.perf_counter() - started
    timer.stop()
    outcome = window.job.last_outcome
    window.close()
    gaps = [(b[0] - a[0], b[1]) for a, b in zip(ticks, ticks[1:], strict=False)]
    slow = [f"{gap:.0f} ms during {name}" for gap, name in gaps if gap > 50]
    return {
        "model": "tiny random SD 1.x" if "tiny-sd1" in model else model,
        "size": size,
        "steps": steps,
        "cpu_threads": threads,
        "outcome": outcome,
        "job_seconds": round(seconds, 2),
        "idle_baseline": baseline,
        "choosing_the_model": _gap_stats(preparing.gaps),
        "whole_job": _gap_stats([g for g, _ in gaps]),
        "sampling_only": _gap_stats([g for g, name in gaps if name != "job"]),
        "gaps_over_50ms": slow[:20],
    }


class _TimerGaps:
    """Gaps between the ticks of a 16 ms GUI-thread timer while the `with` body runs."""

    def __enter__(self):
        from PySide6.QtCore import QElapsedTimer, QTimer

        self.clock = QElapsedTimer()
        self.clock.start()
        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(16)
        self.timer.timeout.connect(lambda: self.ticks.append(self.clock.nsecsElapsed() / 1e6))
        self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.timer.stop()
        self.gaps = [b - a for a, b in zip(self.ticks, self.ticks[1:], strict=False)]


def _timer_gaps(app, seconds: float) -> dict:
    """Gaps of a 16 ms timer while nothing runs: what the OS scheduler alone costs right now."""
    with _TimerGaps() as idle:
        _spin(app, lambda: idle.clock.elapsed() > seconds * 1000, seconds + 30)
    return _gap_stats(idle.gaps)


def _spin(app, condition, timeout_s: float) -> None:
    """Run the Qt event loop (as app.exec() would) until `condition()` holds."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    deadline = time.monotonic() + timeout_s
    check = QTimer()
    check.setInterval(10)
    check.timeout.connect(lambda: (condition() or time.monotonic() > deadline) and loop.quit())
    check.start()
    if not condition():
        loop.exec()
    check.stop()
    if not condition():
        raise TimeoutError("timed out")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model path (default: a tiny random SD 1.x pipeline)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = all)")
    parser.add_argument("--launch-runs", type=int, default=5)
    args = parser.parse_args()
    results = {"launch": measure_launch(args.launch_runs)}
    print(json.dumps(results, indent=2), flush=True)
    results["generation"] = measure_generation(args.model, args.size, args.steps, args.threads)
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ui_responsiveness.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
