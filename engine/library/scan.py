"""Scan model sources into the library: find files and folders, identify them, notice changes.

Sources: Easel's models folder, folders the user added, the Hugging Face hub cache (read-only:
each repo's current diffusers snapshot is one model) and the built-in models in
`resources/models/`. A file whose (size, mtime) did not change since the last scan is not read
again, so a warm rescan of a large library costs a `stat` per file. A record whose file vanished
is matched to a new file with the same fingerprint (size + a hash of its header) and moved, so its
notes and history survive a rename; otherwise it is marked "missing". Broken files are recorded
with their reason and never stop the scan.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from engine.library.probe import ProbeResult, probe_path
from engine.library.records import ModelLibrary, ModelRecord

#: Bump when probe rules change so existing records are identified again.
#: 2: SD3/FLUX variants, GGUF and fp8 files; 3: text encoders, 16-ch VAEs; 4: scaled-fp8 files
#: run ("fp8-scaled", no longer "unsupported"): records probed by an older version are probed again
PROBE_VERSION = 4
MODEL_SUFFIXES = {".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf"}
#: Bytes read from the start of a file for its fingerprint (header + first tensors).
FINGERPRINT_BYTES = 1 << 20


@dataclass
class ScanReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    moved: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    unchanged: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{len(self.added)} new, {len(self.updated)} updated, {len(self.moved)} moved, "
            f"{len(self.missing)} missing, {len(self.broken)} broken, {self.unchanged} unchanged "
            f"({self.seconds:.2f} s)"
        )


@dataclass(frozen=True)
class Candidate:
    path: Path
    source: str  # "models", "folder:<path>", "hf-cache", "builtin"
    name: str


def default_sources(library: ModelLibrary) -> list[tuple[Path, str]]:
    from engine.paths import models_dir, resource

    sources = [(models_dir(), "models")]
    sources += [(folder, f"folder:{folder}") for folder in library.folders()]
    sources.append((resource("models"), "builtin"))
    return sources


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, found the way huggingface_hub finds it (no import needed)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(home) / "hub"


def walk_source(root: Path, source: str) -> Iterator[Candidate]:
    """Model files and model folders under `root` (a model folder is not descended into)."""
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here != root and _is_model_folder(here):
            dirnames.clear()
            yield Candidate(here, source, here.name)
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            path = here / filename
            if path.suffix.lower() in MODEL_SUFFIXES and not filename.startswith("."):
                yield Candidate(path, source, path.stem)


def walk_hf_cache(root: Path) -> Iterator[Candidate]:
    """Each `models--org--name` repo's snapshot that `refs/main` points at, if it is diffusers."""
    if not root.is_dir():
        return
    for repo in sorted(root.glob("models--*")):
        snapshot = _current_snapshot(repo)
        if snapshot is not None and (snapshot / "model_index.json").is_file():
            repo_id = repo.name[len("models--") :].replace("--", "/")
            yield Candidate(snapshot, "hf-cache", repo_id)


def _current_snapshot(repo: Path) -> Path | None:
    ref = repo / "refs" / "main"
    if ref.is_file():
        snapshot = repo / "snapshots" / ref.read_text().strip()
        if snapshot.is_dir():
            return snapshot
    snapshots = sorted((repo / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime)
    return snapshots[-1] if snapshots else None


def _is_model_folder(path: Path) -> bool:
    return (path / "model_index.json").is_file() or (path / "config.json").is_file()


def fingerprint(path: Path, size: int) -> str:
    """Cheap identity for move detection: size plus a hash of the first MB (the header)."""
    digest = hashlib.sha256(str(size).encode())
    try:
        if path.is_dir():
            for name in ("model_index.json", "config.json", "unet/config.json"):
                if (path / name).is_file():
                    digest.update((path / name).read_bytes())
        else:
            with open(path, "rb") as handle:
                digest.update(handle.read(FINGERPRINT_BYTES))
    except OSError:
        return ""
    return digest.hexdigest()


def _stat(path: Path) -> tuple[int, int]:
    stat = path.stat()
    if path.is_dir():
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return size, stat.st_mtime_ns
    return stat.st_size, stat.st_mtime_ns


def scan_library(
    library: ModelLibrary | None = None,
    *,
    hash_files: bool = False,
    include_hf_cache: bool = True,
    sources: list[tuple[Path, str]] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> ScanReport:
    """Bring the records up to date with what is on disk. Never raises for a bad model file."""
    started = time.perf_counter()
    library = library or ModelLibrary()
    candidates = _gather(library, sources, include_hf_cache)
    report = ScanReport()
    known = {record.path: record for record in library.list_models()}
    hasher = None
    if hash_files:
        from engine.library.hashing import HashCache

        hasher = HashCache(library.db_path, session=library.session)
    with library.batch():
        for index, candidate in enumerate(candidates):
            if cancel and cancel():
                break
            if progress:
                progress(index, len(candidates), candidate.name)
            _scan_one(library, candidate, known, report, hasher)
        _mark_missing(library, report)
    report.seconds = time.perf_counter() - started
    return report


def _gather(library, sources, include_hf_cache) -> list[Candidate]:
    found: dict[str, Candidate] = {}
    for root, source in sources if sources is not None else default_sources(library):
        for candidate in walk_source(Path(root), source):
            found.setdefault(str(candidate.path.resolve()), candidate)
    if include_hf_cache:
        for candidate in walk_hf_cache(hf_cache_dir()):
            found.setdefault(str(candidate.path.resolve()), candidate)
    return list(found.values())


def _scan_one(library, candidate: Candidate, known: dict, report: ScanReport, hasher) -> None:
    key = str(candidate.path.resolve())
    try:
        size, mtime_ns = _stat(candidate.path)
    except OSError:
        return  # vanished between listing and reading: the missing check handles it
    record: ModelRecord | None = known.get(key)
    unchanged = (
        record is not None
        and record.size == size
        and record.mtime_ns == mtime_ns
        and record.probe_version == PROBE_VERSION
        and record.status != "missing"
    )
    if unchanged and not (hasher and not record.sha256 and record.status == "ok"):
        report.unchanged += 1
        return
    values = {"size": size, "mtime_ns": mtime_ns, "source": candidate.source}
    if not unchanged:
        values.update(_probe_values(candidate, size))
    if hasher and values.get("status", record.status if record else "") == "ok":
        values["sha256"] = _safe_hash(hasher, candidate.path)
    if record is not None:
        library.save(values, model_id=record.id)
        report.updated.append(key)
    else:
        _add_or_move(library, candidate, values, report)
    if values.get("status") in {"broken", "unsafe"}:
        report.broken.append(key)


def _probe_values(candidate: Candidate, size: int) -> dict:
    try:
        result: ProbeResult = probe_path(candidate.path)
    except Exception as exc:  # noqa: BLE001 - one odd file must never stop a scan
        result = ProbeResult(
            kind="broken", status="broken", reason=f"it could not be identified ({exc})"
        )
    return {
        "kind": result.kind,
        "base": result.base,
        "variant": result.variant,
        "layout": result.layout,
        "config": result.config,
        "status": result.status,
        "reason": result.reason,
        "fingerprint": fingerprint(candidate.path, size),
        "probe_version": PROBE_VERSION,
    }


def _safe_hash(hasher, path: Path) -> str:
    from engine.errors import ModelError
    from engine.library.hashing import identity_path

    try:
        return hasher.sha256(identity_path(path))  # a native folder: its weights, as metadata
    except ModelError:
        return ""


def _add_or_move(library: ModelLibrary, candidate: Candidate, values: dict, report) -> None:
    key = str(candidate.path.resolve())
    moved_from = _vanished_twin(library, values.get("fingerprint", ""))
    if moved_from is not None:
        library.save({**values, "path": key}, model_id=moved_from.id)
        report.moved.append((moved_from.path, key))
        return
    library.save({**values, "path": key, "name": candidate.name})
    report.added.append(key)


def _vanished_twin(library: ModelLibrary, print_: str) -> ModelRecord | None:
    """The one record with this fingerprint whose file is gone (a move), if exactly one."""
    if not print_:
        return None
    gone = [r for r in library.with_fingerprint(print_) if not Path(r.path).exists()]
    return gone[0] if len(gone) == 1 else None


def _mark_missing(library: ModelLibrary, report: ScanReport) -> None:
    for record in library.list_models():
        if record.status != "missing" and not Path(record.path).exists():
            library.save(
                {"status": "missing", "reason": f"not found at {record.path} any more"},
                model_id=record.id,
            )
            report.missing.append(record.path)


def run_scan(request, ctx):
    """The `ScanLibraryRequest` handler: a scan with progress per model and cancel."""
    from engine.events import Result

    def progress(index: int, total: int, name: str) -> None:
        ctx.progress(index, total, file=name, stage="scanning")

    report = scan_library(
        hash_files=request.hash_files,
        include_hf_cache=request.include_hf_cache,
        progress=progress,
        cancel=lambda: ctx.cancelled,
    )
    ctx.check_cancelled()  # a cancelled scan keeps what it found, but reports Cancelled
    info = {
        "summary": report.summary(),
        "added": report.added,
        "updated": report.updated,
        "moved": [list(pair) for pair in report.moved],
        "missing": report.missing,
        "broken": report.broken,
        "unchanged": report.unchanged,
        "seconds": report.seconds,
    }
    return Result(ctx.job_id, info=info)
