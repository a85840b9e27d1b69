"""Manage the model library: scan, list, add folders, import and probe model files.

easel models scan [--hash]          find and identify models in all sources
easel models list [--kind K] [--json]
easel models add-folder PATH        scan another folder too (it is only read)
easel models import FILE [--name N] [--link] [--convert]
easel models probe FILE             say what a file or folder is, without importing it
easel models download OWNER/NAME    fetch a Hugging Face repo (the only network use; opt-in)
easel models distil-preview MODEL   build the fast preview decoder live painting uses (once)
"""

from __future__ import annotations

import argparse
import json
import sys

from engine.errors import EaselError

EXIT_OK = 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    sub = parser.add_subparsers(dest="action", required=True)
    scan = sub.add_parser("scan", help="find and identify models in every source")
    scan.add_argument("--hash", action="store_true", help="also compute SHA-256 hashes")
    listing = sub.add_parser("list", help="list the models the library knows")
    listing.add_argument("--kind", help="only this kind (checkpoint, lora, vae, upscaler, ...)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    folder = sub.add_parser("add-folder", help="add a folder of models to scan")
    folder.add_argument("path")
    importing = sub.add_parser("import", help="copy (or link) a model into Easel's models folder")
    importing.add_argument("file")
    importing.add_argument("--name", help="name inside the models folder (default: file name)")
    importing.add_argument("--link", action="store_true", help="link instead of copying")
    importing.add_argument(
        "--convert", action="store_true", help="convert a single-file checkpoint to diffusers"
    )
    download = sub.add_parser("download", help="download a Hugging Face repo (needs network)")
    download.add_argument("repo_id", help="e.g. owner/model-name")
    download.add_argument("--revision", default="main")
    download.add_argument("--name", help="folder name in the models folder")
    probe = sub.add_parser("probe", help="identify a model file or folder")
    probe.add_argument(
        "file", help="a path, or a model's name or hash as `easel models list` shows"
    )
    probe.add_argument("--json", action="store_true", help="machine-readable output")
    distil = sub.add_parser(
        "distil-preview", help="build a model's fast preview decoder (live painting, previews)"
    )
    distil.add_argument("model", help="a path, or a model's name or hash")
    distil.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    distil.add_argument("--threads", type=int, default=0, help="CPU threads (0: automatic)")


def run(args: argparse.Namespace) -> int:
    try:
        return ACTIONS[args.action](args)
    except EaselError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def _scan(args) -> int:
    from engine.library.scan import scan_library

    def progress(index: int, total: int, name: str) -> None:
        print(f"\r[{index + 1}/{total}] {name[:60]:<60}", end="", file=sys.stderr, flush=True)

    report = scan_library(hash_files=args.hash, progress=progress)
    print(file=sys.stderr)
    print(f"Scan done: {report.summary()}")
    for path in report.broken:
        print(f"  broken: {path}")
    for path in report.missing:
        print(f"  missing: {path}")
    for old, new in report.moved:
        print(f"  moved: {old} -> {new}")
    return EXIT_OK


def _list(args) -> int:
    from engine.library.records import ModelLibrary

    records = ModelLibrary().list_models(kind=args.kind)
    if args.json:
        print(json.dumps([r.to_dict() for r in records], indent=2))
        return EXIT_OK
    if not records:
        print("No models yet. Run `easel models scan`, or add a folder with `add-folder`.")
        return EXIT_OK
    print(f"{'id':>4}  {'name':<32} {'kind':<10} {'base':<13} {'variant':<14} {'status':<11} path")
    for r in records:
        status = r.status if r.status == "ok" else f"{r.status}"
        print(
            f"{r.id:>4}  {r.name[:32]:<32} {r.kind:<10} {r.base or '-':<13} "
            f"{r.variant or '-':<14} {status:<11} {r.path}"
        )
        if r.status != "ok" and r.reason:
            print(f"{'':>6}{r.reason}")
    return EXIT_OK


def _add_folder(args) -> int:
    from engine.library.records import ModelLibrary
    from engine.library.scan import scan_library

    library = ModelLibrary()
    folder = library.add_folder(args.path)
    report = scan_library(library)
    print(f"Added {folder}. {report.summary()}")
    return EXIT_OK


def _import(args) -> int:
    from engine.library.importer import import_model

    record = import_model(
        args.file, name=args.name, mode="link" if args.link else "copy", convert=args.convert
    )
    print(
        f"Imported '{record.name}' (id {record.id}): {record.kind} {record.base} -> {record.path}"
    )
    return EXIT_OK


def _probe(args) -> int:
    from engine.library.probe import probe_path
    from engine.library.resolve import model_path

    result = probe_path(model_path(args.file))
    if args.json:
        print(json.dumps(result.__dict__, indent=2, default=str))
    else:
        print(f"{args.file}: {result.describe()}")
        if result.config:
            print(f"  loads with the bundled '{result.config}' settings")
        for key, value in result.details.items():
            print(f"  {key}: {value}")
    return EXIT_OK if result.ok else 3


def _download(args) -> int:
    from engine.library.download import download_repo
    from engine.library.scan import scan_library

    def progress(done: int, total: int, file: str) -> None:
        share = f"{100 * done / total:5.1f}%" if total else f"{done / 1e6:8.1f} MB"
        print(f"\r{share} {file[:60]:<60}", end="", file=sys.stderr, flush=True)

    try:
        folder = download_repo(
            args.repo_id, revision=args.revision, name=args.name, progress=progress
        )
    except KeyboardInterrupt:
        print("\nCancelled; run the same command again to resume.", file=sys.stderr)
        return 130
    print(file=sys.stderr)
    scan_library(sources=[(folder.parent, "models")], include_hf_cache=False)
    print(f"Downloaded {args.repo_id} to {folder}")
    return EXIT_OK


def _distil_preview(args) -> int:
    from engine.api import PreviewDecoderRequest, RuntimeOptions
    from engine.context import JobContext
    from engine.events import Progress
    from engine.sd.preview_job import run_preview_decoder

    request = PreviewDecoderRequest(
        model=args.model, steps=args.steps, runtime=RuntimeOptions(cpu_threads=args.threads)
    )

    def show(event) -> None:
        if isinstance(event, Progress) and (event.step % 25 == 0 or event.step == event.total):
            print(f"step {event.step}/{event.total}", file=sys.stderr, flush=True)

    result = run_preview_decoder(request, JobContext(0, show))
    psnr, path = result.info["psnr_db"], result.info["path"]
    print(f"preview decoder: {psnr:.2f} dB against the full decode, saved to {path}")
    return EXIT_OK


ACTIONS = {
    "distil-preview": _distil_preview,
    "download": _download,
    "scan": _scan,
    "list": _list,
    "add-folder": _add_folder,
    "import": _import,
    "probe": _probe,
}
