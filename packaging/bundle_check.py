"""Check a built bundle really works: `make bundle-check` (after `make bundle`).

1. the windowed app starts offscreen with a fresh data folder, shows its window, quits; the time
   from launch to window shown is measured (budget 1.5 s cold);
2. the bundled console program generates a PNG with the built-in model, and the PNG carries
   Easel's and A1111's metadata;
3. a corrupt settings file and an unwritable data folder: the app still starts and says why.

All with the network blocked: on Linux each program runs in a fresh network namespace
(`unshare -rn`, no interfaces but loopback-down), elsewhere only HF_HUB_OFFLINE=1 is set.
Exit status 0 only if every check passed. Prints a summary that docs/benchmarks.md records.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
WINDOW_SHOWN = '"window_shown_s"'  # in the JSON line `Easel --startup-report` prints


def bundle_dir() -> Path:
    if sys.platform == "darwin":
        return DIST / "Easel.app" / "Contents" / "MacOS"
    return DIST / "Easel"


def program(name: str) -> Path:
    suffix = ".exe" if sys.platform.startswith("win") else ""
    return bundle_dir() / f"{name}{suffix}"


def cli_program() -> Path:
    """`easel-cli` (Windows console exe, or the script beside Easel on Linux); on macOS the app
    executable itself runs subcommands in a terminal."""
    cli = program("easel-cli")
    return cli if cli.exists() else program("Easel")


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def offline_prefix() -> list[str]:
    """Run with no network at all where the OS lets us make a namespace without one."""
    if sys.platform.startswith("linux") and shutil.which("unshare"):
        probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True)
        if probe.returncode == 0:
            return ["unshare", "-rn"]
    return []


def environment(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        EASEL_DATA_DIR=str(data_dir),
        HF_HUB_OFFLINE="1",
        QT_QPA_PLATFORM="offscreen",
        PYTHONUNBUFFERED="1",
    )
    return env


def launch_gui(data_dir: Path, timeout: float = 120.0) -> tuple[float, str]:
    """Start the app with --startup-report; return (seconds to window shown, its output)."""
    command = offline_prefix() + [str(program("Easel")), "--startup-report"]
    started = time.perf_counter()
    proc = subprocess.Popen(
        command,
        env=environment(data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    shown_after = None
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if WINDOW_SHOWN in line and shown_after is None:
            shown_after = time.perf_counter() - started
        if time.perf_counter() - started > timeout:
            proc.kill()
            break
    proc.wait(timeout=30)
    output = "".join(lines)
    if shown_after is None or proc.returncode != 0:
        raise SystemExit(f"FAIL: no window (exit {proc.returncode}):\n{output}")
    return shown_after, output


def check_generate(data_dir: Path, out_dir: Path) -> Path:
    out = out_dir / "apple.png"
    command = offline_prefix() + [
        str(program("easel-cli")),
        "generate",
        "a red apple",
        "-o",
        str(out),
        "--seed",
        "1",
    ]
    result = subprocess.run(
        command, env=environment(data_dir), capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0 or not out.is_file():
        raise SystemExit(f"FAIL: easel-cli generate exit {result.returncode}:\n{result.stderr}")
    from PIL import Image

    with Image.open(out) as image:
        chunks = dict(image.info)
    missing = [key for key in ("parameters", "easel") if key not in chunks]
    if missing:
        raise SystemExit(f"FAIL: {out} lacks metadata chunks {missing}")
    return out


def main() -> int:
    if not program("Easel").exists():
        print(f"No bundle at {bundle_dir()}: run `make bundle` first.")
        return 1
    size = folder_size(DIST / ("Easel.app" if sys.platform == "darwin" else "Easel"))
    print(f"bundle: {bundle_dir()}  size {size / 1e9:.2f} GB")
    print(f"network: {'blocked (unshare -rn)' if offline_prefix() else 'HF_HUB_OFFLINE=1 only'}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        cold, _ = launch_gui(tmp_path / "fresh-data")
        warm, _ = launch_gui(tmp_path / "fresh-data")
        print(f"window shown: {cold:.2f} s first launch, {warm:.2f} s second launch")
        out = check_generate(tmp_path / "fresh-data", tmp_path)
        print(f"easel-cli generate: wrote {out.name} with Easel and A1111 metadata")

        settings_dir = tmp_path / "corrupt-settings"
        settings_dir.mkdir()
        damaged = b"\x00\xff[General\n=broken"
        (settings_dir / "desktop.ini").write_bytes(damaged)
        _, output = launch_gui(settings_dir)
        said = "settings file was damaged" in output
        kept = [p for p in settings_dir.iterdir() if p.name.startswith("desktop.ini.damaged-")]
        intact = bool(kept) and kept[0].read_bytes() == damaged
        print(f"damaged settings file: app started, warned={said}, old file kept={intact}")
        if not (said and intact):
            return 1

        blocker = tmp_path / "not-a-folder"
        blocker.write_text("keep me")
        _, output = launch_gui(blocker / "Easel")
        said = "cannot write" in output
        intact = blocker.read_text() == "keep me"
        print(f"unwritable data folder: app started, warned={said}, user file intact={intact}")
        if not (said and intact):
            return 1
    print("bundle-check: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
