"""Import a model into Easel's models folder: copy, link, or convert to a diffusers folder.

Only the models folder is ever written: the destination name must be a plain relative name
(no `..`, no absolute path, nothing that resolves outside the folder), an existing file is never
overwritten, and every write goes to a temporary name in the destination folder first and is
renamed into place only when complete, so an interrupted import leaves no half model behind.
The source file is only read.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path, PurePath

from engine.errors import InputError, ModelError
from engine.library.probe import ProbeResult, probe_path

IMPORT_MODES = ("copy", "link")


def safe_destination(models_root: Path, name: str) -> Path:
    """`models_root / name`, refusing names that could point anywhere else."""
    if not name or not name.strip():
        raise InputError("Give the imported model a name.")
    pure = PurePath(name)
    if pure.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise InputError(f"'{name}' is an absolute path; give a name inside the models folder.")
    if ".." in pure.parts or ".." in Path(name.replace("\\", "/")).parts:
        raise InputError(f"'{name}' contains '..'; give a name inside the models folder.")
    root = models_root.resolve()
    target = (root / name).resolve()
    if root not in target.parents:
        raise InputError(f"'{name}' would be outside the models folder.")
    return target


def import_model(
    source: str | os.PathLike,
    *,
    name: str | None = None,
    mode: str = "copy",
    convert: bool = False,
    models_root: str | os.PathLike | None = None,
    config: str | os.PathLike | None = None,
):
    """Bring `source` (a model file or folder) into the models folder and record it.

    `mode` "copy" copies, "link" makes a symbolic link (no extra disk space). `convert` turns a
    single-file checkpoint into a diffusers folder (faster to load later), read with the bundled
    configs (or the local diffusers-layout folder `config`). Returns the record.
    """
    from engine.library.records import ModelLibrary
    from engine.library.scan import scan_library
    from engine.paths import models_dir

    source = Path(source).expanduser()
    if not source.exists():
        raise InputError(f"Nothing to import at '{source}'.")
    if mode not in IMPORT_MODES:
        raise InputError(f"Unknown import mode '{mode}'. Choose one of: {', '.join(IMPORT_MODES)}.")
    probed = _check_importable(source, allow_unknown_family=convert and config is not None)
    root = Path(models_root) if models_root else models_dir()
    if convert:
        if probed.kind != "checkpoint" or probed.layout != "single_file":
            raise InputError("Only single-file checkpoints can be converted to a diffusers folder.")
        target = safe_destination(root, name or source.stem)
        _refuse_existing(target)
        _convert(source, target, config=config)
    else:
        target = safe_destination(root, name or source.name)
        _refuse_existing(target)
        if mode == "link":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source.resolve(), target_is_directory=source.is_dir())
        else:
            _copy_atomically(source, target)
    library = ModelLibrary()
    scan_library(library, sources=[(root, "models")], include_hf_cache=False)
    record = library.by_path(target)
    if record is None:
        raise ModelError(f"'{target.name}' was imported but could not be added to the library.")
    return record


def _check_importable(source: Path, *, allow_unknown_family: bool = False) -> ProbeResult:
    probed = probe_path(source)
    if allow_unknown_family and probed.kind == "checkpoint" and probed.status == "unsupported":
        return probed  # the caller supplies its own config folder
    if probed.status in {"broken", "unsafe"}:
        raise ModelError(f"'{source.name}' was not imported: {probed.reason}")
    if probed.kind == "unknown":
        raise ModelError(f"'{source.name}' was not imported: {probed.reason}.")
    return probed


def _refuse_existing(target: Path) -> None:
    if target.exists() or target.is_symlink():
        raise InputError(f"'{target.name}' already exists in the models folder; pick another name.")


def _copy_atomically(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            shutil.copytree(source, staging, dirs_exist_ok=True)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return
    fd, staging_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".part", dir=target.parent
    )
    os.close(fd)
    staging = Path(staging_name)
    try:
        shutil.copyfile(source, staging)
        os.replace(staging, target)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def _convert(source: Path, target: Path, *, config=None) -> None:
    """Load the checkpoint offline and save it as a diffusers folder (safetensors weights)."""
    from engine.library.single_file import load_single_file_pipeline

    pipe = load_single_file_pipeline(source, config=config)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        pipe.save_pretrained(staging, safe_serialization=True)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
