"""The real app, driven for crash tests: the main window with the real engine, pressing Generate
again as soon as each result is in the gallery (or, with EASEL_CRASH_TRAIN, running a training
job through the app's bridge), until the process is killed.

`python -m desktop.testing.crash_driver` (offscreen); `scripts/crash_check.py` kills it with
SIGKILL at random moments and checks the gallery. Each finished job prints `saved N` so the
checker knows how many results the app had reported as kept.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    import desktop  # noqa: F401 - the PySide6 reference-count workaround first
    from desktop.app import create_window

    app = QApplication.instance() or QApplication([sys.argv[0]])
    window = create_window()
    window.show()
    settings = window.settings
    settings.set("model", "builtin:emoji-ldm")
    settings.set("prompt", "a red apple")
    settings.set("steps", int(os.environ.get("EASEL_CRASH_STEPS", "12")))
    settings.set("batch_size", 2)
    saved = [0]

    def again(*_args) -> None:
        QTimer.singleShot(0, window.generation.generate)

    def counted(entries) -> None:
        saved[0] += len(entries)
        print(f"saved {saved[0]}", flush=True)

    window.bridge.failed.connect(lambda *a: print(f"failed {a[1:]}", flush=True))
    training = os.environ.get("EASEL_CRASH_TRAIN")  # "pictures-folder|run-folder"
    if training:
        window.bridge.engine_ready.connect(lambda: _train(window, *training.split("|")))
    else:
        window.gallery.added.connect(counted)
        window.bridge.result.connect(again)
        window.bridge.engine_ready.connect(again)
    QTimer.singleShot(0, window.start_background_work)
    return app.exec()


def _train(window, pictures: str, run: str) -> None:
    """A training run submitted through the app's bridge, as the Train dialog does."""
    from pathlib import Path

    from engine.api import RuntimeOptions, TrainingRequest

    resume = (Path(run) / "checkpoint").exists()
    request = TrainingRequest(
        family="dcgan", data_dir=pictures, out_dir=run, steps=400, resolution=16,
        batch_size=8, sample_every=15, resume=resume, runtime=RuntimeOptions(cpu_threads=1),
    )  # fmt: skip
    window.bridge.submit(request)
    print("training", flush=True)


if __name__ == "__main__":
    sys.exit(main())
