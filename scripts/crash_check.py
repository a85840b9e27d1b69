"""Kill Easel with SIGKILL at random moments and check that nothing the user owns is lost.

    python scripts/crash_check.py --kills 50            # app, CLI and training, 50 kills in all
    python scripts/crash_check.py --kills 6 --modes app  # a quick look at one mode

- **app**: the real main window with the real engine (desktop.testing.crash_driver) generating
  with the built-in model into a fresh data folder, killed mid-generation or mid-gallery-write.
  After each kill: `PRAGMA integrity_check` is "ok"; the next start's recovery adopts any
  picture left without a row; then every PNG under its final name loads and is in the gallery,
  every row points at a whole picture, and the app had reported no more results than are kept.
- **cli**: `easel generate` killed mid-run: any PNG under its final name is whole.
- **train**: `easel train` killed mid-run: the checkpoint and any exported model load; the last
  kill is followed by `--resume`, which must finish from the saved step.
- **app-train**: the app killed mid-training (a TrainingRequest through its bridge, as the Train
  dialog submits it), resumed by the next kill's run: the same checks on its run folder.

Prints one line per kill and a summary; exits 1 if any check failed. tests/test_crash_safety.py
runs a few kills of each mode; docs/reliability.md records a 50-kill run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


@dataclass
class Outcome:
    mode: str
    after_s: float
    problems: list[str] = field(default_factory=list)
    detail: str = ""


def _env(data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "EASEL_DATA_DIR": str(data_dir),
        "QT_QPA_PLATFORM": "offscreen",
        "HF_HUB_OFFLINE": "1",
        "EASEL_CRASH_STEPS": "12",
    }


def _kill_after(command: list[str], env: dict, seconds: float, cwd: Path) -> str:
    """Start, wait, SIGKILL; return what it printed (stdout)."""
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=subprocess.DEVNULL)
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
        out.seek(0)
        return out.read()


def _loads(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
        return True
    except (OSError, ValueError, SyntaxError):
        return False


# -- app ------------------------------------------------------------------------------------------
def kill_app(data_dir: Path, seconds: float) -> Outcome:
    printed = _kill_after(
        [PYTHON, "-m", "desktop.testing.crash_driver"], _env(data_dir), seconds, REPO
    )
    reported = max(
        [int(line.split()[1]) for line in printed.splitlines() if line.startswith("saved ")] or [0]
    )
    outcome = Outcome("app", seconds)
    database = data_dir / "easel.sqlite3"
    if database.exists():
        with sqlite3.connect(database) as conn:
            verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if verdict != "ok":
            outcome.problems.append(f"integrity_check: {verdict}")
    outcome.problems += _gallery_problems(data_dir, reported, outcome)
    return outcome


def _gallery_problems(data_dir: Path, reported: int, outcome: Outcome) -> list[str]:
    os.environ["EASEL_DATA_DIR"] = str(data_dir)
    from engine.gallery_recovery import recover_gallery
    from engine.history import HistoryStore

    store = HistoryStore()
    recovery = recover_gallery(store)
    problems = []
    rows = store.entries()
    known = {str(e.image_path) for e in rows}
    pictures = [p for p in store.folder.glob("*.png") if not p.name.startswith(".")]
    problems += [f"not in the gallery: {p.name}" for p in pictures if str(p) not in known]
    problems += [
        f"row without a whole picture: {e.image_path.name}"
        for e in rows
        if not _loads(e.image_path)
    ]
    if len(rows) < reported:
        problems.append(f"the app reported {reported} results kept, the gallery has {len(rows)}")
    outcome.detail = f"{len(rows)} kept ({reported} reported), {recovery.adopted} adopted"
    return problems


# -- cli ------------------------------------------------------------------------------------------
def kill_cli(work: Path, seconds: float) -> Outcome:
    out = work / "out"
    out.mkdir(exist_ok=True)
    command = [
        PYTHON, "-c", "import sys; from engine.cli import main; sys.exit(main())", "generate",
        "a cat face", "--batch", "3", "--steps", "20", "--quiet", "-o", str(out / "cat.png"),
    ]  # fmt: skip
    _kill_after(command, _env(work / "data"), seconds, work)
    outcome = Outcome("cli", seconds)
    finals = [p for p in out.glob("*.png") if not p.name.startswith(".")]
    outcome.problems = [f"half-written PNG: {p.name}" for p in finals if not _loads(p)]
    outcome.detail = f"{len(finals)} PNGs whole"
    for path in finals:
        path.unlink()
    return outcome


# -- train ----------------------------------------------------------------------------------------
def training_command(pictures: Path, run: Path, *, resume: bool = False) -> list[str]:
    command = [
        PYTHON, "-c", "import sys; from engine.cli import main; sys.exit(main())", "train",
        "--family", "dcgan", "--data", str(pictures), "--out", str(run), "--steps", "400",
        "--resolution", "16", "--batch", "8", "--sample-every", "15", "--threads", "1",
    ]  # fmt: skip
    return [*command, "--resume"] if resume else command


def kill_train(work: Path, seconds: float, pictures: Path) -> Outcome:
    run = work / "run"
    _kill_after(
        training_command(pictures, run, resume=(run / "checkpoint").exists()),
        _env(work / "data"),
        seconds,
        work,
    )
    outcome = Outcome("train", seconds)
    outcome.problems, outcome.detail = _run_folder_problems(run)
    return outcome


def _run_folder_problems(run: Path) -> tuple[list[str], str]:
    from engine.training import checkpoint

    problems, step = [], None
    if checkpoint.has_checkpoint(run):
        try:
            _, counters = checkpoint.load_checkpoint(run)
            step = counters.get("step")
        except Exception as exc:  # the check is what matters here, whatever broke
            problems.append(f"checkpoint does not load: {exc}")
    if (run / "config.json").exists():
        from engine.families.registry import load_native_model

        try:
            load_native_model(run)
        except Exception as exc:
            problems.append(f"exported model does not load: {exc}")
    return problems, f"checkpoint at step {step}"


def kill_app_training(work: Path, seconds: float, pictures: Path) -> Outcome:
    """The app killed mid-training (the Train dialog's path: a TrainingRequest on its bridge)."""
    run = work / "app-run"
    env = {**_env(work / "app-train-data"), "EASEL_CRASH_TRAIN": f"{pictures}|{run}"}
    _kill_after([PYTHON, "-m", "desktop.testing.crash_driver"], env, seconds, REPO)
    outcome = Outcome("app-train", seconds)
    outcome.problems, outcome.detail = _run_folder_problems(run)
    return outcome


def resume_finishes(work: Path, pictures: Path) -> Outcome:
    run = work / "run"
    outcome = Outcome("train-resume", 0.0)
    if not (run / "checkpoint").exists():
        outcome.detail = "no checkpoint was saved before the kills; nothing to resume"
        return outcome
    from engine.training import checkpoint

    _, before = checkpoint.load_checkpoint(run)
    done = subprocess.run(
        training_command(pictures, run, resume=True), env=_env(work / "data"), cwd=work,
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if done.returncode != 0:
        outcome.problems.append(f"--resume failed ({done.returncode}): {done.stderr[-400:]}")
    _, after = checkpoint.load_checkpoint(run)
    outcome.detail = f"resumed at step {before.get('step')}, finished at {after.get('step')}"
    return outcome


def write_pictures(folder: Path, count: int = 16) -> Path:
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for index in range(count):
        image = Image.new("RGB", (24, 24), tuple(rng.randrange(256) for _ in range(3)))
        ImageDraw.Draw(image).ellipse(
            (4, 4, 20, 20), fill=tuple(rng.randrange(256) for _ in range(3))
        )
        image.save(folder / f"p{index:02d}.png")
    return folder


# -- the run --------------------------------------------------------------------------------------
WINDOWS = {"app": (3.0, 20.0), "cli": (4.0, 18.0), "train": (2.0, 12.0), "app-train": (6.0, 20.0)}


def run_checks(
    kills: int, modes: list[str], seed: int = 0, work: Path | None = None
) -> list[Outcome]:
    rng = random.Random(seed)
    work = Path(work or tempfile.mkdtemp(prefix="easel-crash-"))
    pictures = write_pictures(work / "pictures")
    outcomes = []
    for index in range(kills):
        mode = modes[index % len(modes)]
        seconds = round(rng.uniform(*WINDOWS[mode]), 2)
        if mode == "app":
            outcome = kill_app(work / "app-data", seconds)
        elif mode == "cli":
            outcome = kill_cli(work, seconds)
        elif mode == "app-train":
            outcome = kill_app_training(work, seconds, pictures)
        else:
            outcome = kill_train(work, seconds, pictures)
        outcomes.append(outcome)
        state = "ok" if not outcome.problems else "; ".join(outcome.problems)
        print(
            f"{index + 1:3d} {mode:5s} killed after {seconds:5.2f}s: {outcome.detail}: {state}",
            flush=True,
        )
    if "train" in modes:
        outcome = resume_finishes(work, pictures)
        outcomes.append(outcome)
        print(f"    resume: {outcome.detail}: {'; '.join(outcome.problems) or 'ok'}", flush=True)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--modes", default="app,cli,train,app-train")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the outcomes here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    outcomes = run_checks(args.kills, args.modes.split(","), args.seed)
    failed = [o for o in outcomes if o.problems]
    seconds = time.perf_counter() - started
    print(f"{len(outcomes)} checks, {len(failed)} with problems, {seconds:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps([o.__dict__ for o in outcomes], indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
