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
    return modules[args.command].run(args)
