"""Easel vs diffusers vs stable-diffusion.cpp on the same SD 1.5 file and request (issue 15).

    nice -n 10 .venv/bin/python bench/sdcpp_compare.py --sd-binary PATH/TO/sd-cli \
        [--size 512] [--steps 2] [--threads 1] [--repeats 1] [--model FILE]

stable-diffusion.cpp is not a dependency of Easel; build its command-line program once from the
source that PyPI's `stable-diffusion-cpp-python` sdist vendors (docs/benchmarks.md has the exact
commands). The model is bench/peak_rss.py's: a full-size SD 1.5 pipeline with random weights
(published configs) written as an original-layout fp16 single file (2.1 GB), the form in which
checkpoints are shared; random weights change no timing and no memory.

Each side runs in a fresh process, in turn (alternating order between repeats), with the same
prompt, negative prompt, size, Euler steps, CFG 7 and seed, and the same thread count:
- "engine": Easel's Engine through the library code users hit (bf16 where the CPU has it);
- "plain": diffusers' `from_single_file` with its default dtype (fp32);
- "sdcpp": the `sd` program on the file as it is (ggml keeps the fp16 weights).
Recorded: wall time of the whole run (load + encode + steps + decode) and peak RSS (`ru_maxrss`
of the child), plus stable-diffusion.cpp's own phase timings from its log.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from engine_overhead import NEGATIVE, PROMPT  # noqa: E402

KINDS = ("engine", "plain", "sdcpp")

#: stable-diffusion.cpp's log lines that time its phases ("... completed, taking 12.34s")
PHASE_PATTERNS = {
    "load_s": r"loading tensors completed, taking ([\d.]+)s",
    "encode_s": r"get_learned_condition completed, taking ([\d.]+)s",
    "sampling_s": r"sampling completed, taking ([\d.]+)s",
    "decode_s": r"decode_first_stage completed, taking ([\d.]+)s",
    "total_s": r"generate_image completed in ([\d.]+)s",
}


def run_child(command: list[str], env: dict[str, str]) -> tuple[str, float, float]:
    """Run `command`; return its output, wall seconds and peak RSS in MiB (its own rusage:
    wait4 reports the child alone, not this process)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO
    )
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"{command[0]} failed ({proc.returncode}):\n{output[-3000:]}")
    return output, wall, usage.ru_maxrss / 1024


def sdcpp_command(binary: Path, model: Path, args, out_png: Path) -> list[str]:
    return [
        str(binary), "-m", str(model), "-p", PROMPT, "-n", NEGATIVE,
        "-W", str(args.size), "-H", str(args.size), "--steps", str(args.steps),
        "--cfg-scale", "7", "--sampling-method", "euler", "-s", "1234",
        "-t", str(args.threads), "-o", str(out_png), "-v",
    ]  # fmt: skip


def python_command(kind: str, model: Path, args) -> list[str]:
    return [
        sys.executable, str(REPO / "bench" / "peak_rss.py"), "--child", kind,
        "--model", str(model), "--size", str(args.size), "--steps", str(args.steps),
        "--threads", str(args.threads),
    ]  # fmt: skip


def sdcpp_phases(output: str) -> dict[str, float]:
    phases = {}
    for name, pattern in PHASE_PATTERNS.items():
        found = re.findall(pattern, output)
        if found:
            phases[name] = float(found[-1])
    return phases


def one_run(kind: str, model: Path, args, scratch: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "EASEL_FREE_TEXT_ENCODER": "0"}
    if kind == "sdcpp":
        command = sdcpp_command(args.sd_binary, model, args, scratch / "sdcpp.png")
        output, wall, peak = run_child(command, env)
        return {"wall_s": round(wall, 1), "peak_rss_mib": round(peak), **sdcpp_phases(output)}
    output, wall, peak = run_child(python_command(kind, model, args), env)
    info = json.loads(output.strip().splitlines()[-1])
    phases = {k: info[k] for k in ("load_s", "sample_s", "total_s") if info.get(k) is not None}
    return {"wall_s": round(wall, 1), "peak_rss_mib": round(peak), "dtype": info["dtype"], **phases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sd-binary", type=Path, required=True, help="stable-diffusion.cpp's sd")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--model", type=Path, default=None, help="reuse (or write) this file")
    parser.add_argument("--only", nargs="*", choices=KINDS, default=list(KINDS))
    args = parser.parse_args()
    if not args.sd_binary.is_file():
        raise SystemExit(f"no stable-diffusion.cpp program at {args.sd_binary}")
    results: dict = {"size": args.size, "steps": args.steps, "threads": args.threads}
    runs: dict[str, list[dict]] = {kind: [] for kind in args.only}
    with tempfile.TemporaryDirectory(prefix="easel-sdcpp-") as tmp:
        scratch = Path(tmp)
        model = args.model or scratch / "sd15-random.safetensors"
        if not model.is_file():  # its own process: its peak must not count as the children's
            subprocess.run(
                [sys.executable, str(REPO / "bench" / "peak_rss.py"), "--write", str(model)],
                check=True,
            )
        results["file_gb"] = round(model.stat().st_size / 1e9, 2)
        for index in range(args.repeats):
            order = args.only if index % 2 == 0 else args.only[::-1]
            for kind in order:
                runs[kind].append(one_run(kind, model, args, scratch))
                print(json.dumps({kind: runs[kind][-1]}), flush=True)
    for kind, items in runs.items():
        results[kind] = {
            "wall_s": min(item["wall_s"] for item in items),
            "peak_rss_mib": min(item["peak_rss_mib"] for item in items),
            **{k: v for k, v in items[0].items() if k not in {"wall_s", "peak_rss_mib"}},
        }
    results["load_avg"] = round(os.getloadavg()[0], 1)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
