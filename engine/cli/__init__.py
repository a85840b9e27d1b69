"""Headless command line: `easel generate|batch|train|eval|models ...`. No Qt is imported here.

Each subcommand is a module with `add_arguments(parser)` and `run(args) -> int` (exit code).
Exit codes scripts can rely on: 0 done, 1 failed, 2 bad input, 3 model problem,
4 unusable output, 130 cancelled (Ctrl-C).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from engine.errors import EaselError

#: subcommand -> module in engine.cli
SUBCOMMANDS = {
    "generate": "engine.cli.generate",
    "train": "engine.cli.train",
    "eval": "engine.cli.evaluate",
    "models": "engine.cli.models",
    "batch": "engine.cli.batch",
}

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CANCELLED = 130


def main(argv: list[str] | None = None) -> int:
    # Generation never touches the network: this must be set before huggingface_hub imports.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="easel", description="Easel offline image studio")
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, module_name in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        modules[name] = module
        sub_parser = sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(sub_parser)
    args = parser.parse_args(argv)
    try:
        return modules[args.command].run(args)
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    except EaselError as exc:  # a subcommand's own check that escaped: still the user's message
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # a bug: one line for the user, the traceback in a log file
        return report_bug(exc)


def report_bug(exc: BaseException) -> int:
    """ "Unexpected error" is only ever a bug in Easel: say so, keep the traceback for a report."""
    import traceback

    from engine.paths import user_data_dir

    where = "standard error"
    text = "".join(traceback.format_exception(exc))
    try:
        log = user_data_dir() / "logs" / "cli-errors.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
        where = str(log)
    except OSError:
        sys.stderr.write(text)
    print(
        f"error: Unexpected error ({type(exc).__name__}: {exc}). This is a bug in Easel; "
        f"the details are in {where}.",
        file=sys.stderr,
    )
    return EXIT_FAILED
