"""Opt-in download of a Hugging Face model repository into Easel's models folder.

The only code in Easel that touches the network, and only when the user asks for a download.
Plain HTTP (stdlib `urllib`) against the hub's public endpoints: the file list from
`/api/models/<repo>/revision/<rev>`, each file from `/<repo>/resolve/<rev>/<path>`. Files land in
a hidden staging folder as `.part` files; an interrupted or cancelled download keeps them, and the
next attempt asks only for the missing bytes (`Range: bytes=N-`). The finished folder is renamed
into place in one step. `huggingface_hub` is not used here because its offline switch
(`HF_HUB_OFFLINE`, which generation relies on) is read once at import and cannot be lifted for one
call.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from engine.errors import InputError, JobCancelled, ModelError

DEFAULT_ENDPOINT = "https://huggingface.co"
CHUNK_BYTES = 1024 * 1024
TIMEOUT_S = 30
#: Formats Easel never loads (other frameworks, pickles when safetensors exist) are skipped.
SKIP_SUFFIXES = (".onnx", ".onnx_data", ".msgpack", ".h5", ".ckpt", ".pt", ".pth", ".mlmodel")
SKIP_NAMES = ("flax_model", "tf_model", "rust_model")


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int | None = None


def _endpoint(endpoint: str | None) -> str:
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _check_repo_id(repo_id: str) -> str:
    repo_id = (repo_id or "").strip()
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts) or any(p in {".", ".."} for p in parts):
        raise InputError(
            f"'{repo_id}' is not a Hugging Face repo id; it looks like 'owner/model-name'."
        )
    return repo_id


def _open(url: str, *, headers: dict | None = None):
    request = urllib.request.Request(url, headers={"User-Agent": "Easel", **(headers or {})})
    token = os.environ.get("HF_TOKEN")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    return urllib.request.urlopen(request, timeout=TIMEOUT_S)  # noqa: S310 - https/http only


def _network_error(repo_id: str, exc: BaseException) -> ModelError:
    if isinstance(exc, urllib.error.HTTPError):
        if exc.code in (401, 403):
            return ModelError(
                f"'{repo_id}' needs a Hugging Face login or licence acceptance (HTTP {exc.code}). "
                "Accept its licence on the website and set HF_TOKEN, then try again."
            )
        if exc.code == 404:
            return ModelError(f"'{repo_id}' was not found on the Hugging Face hub. Check the name.")
        return ModelError(f"The download of '{repo_id}' failed: the server said HTTP {exc.code}.")
    return ModelError(
        f"No network: could not reach the Hugging Face hub to download '{repo_id}' ({exc}). "
        "Connect to the internet and try again, or copy the model in with "
        "`easel models import`."
    )


def list_files(repo_id: str, *, revision: str = "main", endpoint: str | None = None):
    """The repo's files worth downloading (sizes when the hub reports them)."""
    repo_id = _check_repo_id(repo_id)
    quoted = urllib.parse.quote(revision, safe="")
    url = f"{_endpoint(endpoint)}/api/models/{repo_id}/revision/{quoted}?blobs=true"
    try:
        with _open(url) as response:
            info = json.loads(response.read().decode("utf-8"))
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise _network_error(repo_id, exc) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"The hub's answer about '{repo_id}' could not be read.") from exc
    siblings = [
        RemoteFile(s["rfilename"], s.get("size"))
        for s in info.get("siblings", [])
        if isinstance(s, dict) and "rfilename" in s
    ]
    return select_files(siblings)


def select_files(files: list[RemoteFile]) -> list[RemoteFile]:
    """Drop formats Easel never loads, `.bin` weights beside safetensors, and unsafe paths."""
    folders_with_safetensors = {
        str(PurePosixPath(f.path).parent) for f in files if f.path.endswith(".safetensors")
    }
    chosen = []
    for f in files:
        pure = PurePosixPath(f.path)
        if pure.is_absolute() or ".." in pure.parts or f.path.startswith("."):
            continue  # never write outside the target folder, whatever the server lists
        if f.path.endswith(SKIP_SUFFIXES) or pure.name.startswith(SKIP_NAMES):
            continue
        if f.path.endswith(".bin") and str(pure.parent) in folders_with_safetensors:
            continue
        chosen.append(f)
    return chosen


def fetch_file(
    url: str,
    part: Path,
    *,
    repo_id: str,
    progress: Callable[[int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> None:
    """Download `url` into `part`, continuing from the bytes already there."""
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        response = _open(url, headers=headers)
    except urllib.error.HTTPError as exc:
        if exc.code == 416:  # the part file already holds everything
            return
        raise _network_error(repo_id, exc) from exc
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise _network_error(repo_id, exc) from exc
    with response:
        resumed = response.status == 206
        mode = "ab" if resumed else "wb"  # a server that ignores Range sends the whole file
        done = have if resumed else 0
        with open(part, mode) as handle:
            try:
                while chunk := response.read(CHUNK_BYTES):
                    handle.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done)
                    if cancel and cancel():
                        raise JobCancelled()
            except (OSError, TimeoutError, http.client.HTTPException) as exc:
                raise ModelError(
                    f"The download of '{repo_id}' was interrupted ({exc}). "
                    "Start it again to continue where it stopped."
                ) from exc
        expected = response.headers.get("Content-Length")
        if expected is not None and done - (have if resumed else 0) < int(expected):
            raise ModelError(
                f"The download of '{repo_id}' was interrupted. Start it again to continue."
            )


def download_repo(
    repo_id: str,
    *,
    revision: str = "main",
    name: str | None = None,
    endpoint: str | None = None,
    models_root: str | os.PathLike | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Path:
    """Download `repo_id` into `<models>/<name or repo name>`; resumable, cancellable.

    `progress(bytes_done, bytes_total, file)` is called per chunk. Returns the finished folder.
    """
    from engine.library.importer import safe_destination
    from engine.paths import models_dir

    repo_id = _check_repo_id(repo_id)
    root = Path(models_root) if models_root else models_dir()
    target = safe_destination(root, name or repo_id.split("/")[1])
    if target.exists():
        raise InputError(f"'{target.name}' already exists in the models folder; pick another name.")
    files = list_files(repo_id, revision=revision, endpoint=endpoint)
    if not files:
        raise ModelError(f"'{repo_id}' has no model files Easel can use.")
    staging = root / f".download-{target.name}"
    total = sum(f.size or 0 for f in files)
    finished = sum(_finished_bytes(staging, f) for f in files)
    base_url = f"{_endpoint(endpoint)}/{repo_id}/resolve/{urllib.parse.quote(revision, safe='')}"
    for remote in files:
        final = staging / remote.path
        if final.exists() and (remote.size is None or final.stat().st_size == remote.size):
            continue
        part = final.with_name(final.name + ".part")
        before = finished

        def report(done: int, _file=remote.path, _before=before) -> None:
            if progress:
                progress(_before + done, total, _file)

        url = f"{base_url}/{urllib.parse.quote(remote.path)}"
        fetch_file(url, part, repo_id=repo_id, progress=report, cancel=cancel)
        os.replace(part, final)
        finished += final.stat().st_size
    os.replace(staging, target)
    return target


def _finished_bytes(staging: Path, remote: RemoteFile) -> int:
    path = staging / remote.path
    return path.stat().st_size if path.exists() else 0


def discard_partial(name: str, *, models_root: str | os.PathLike | None = None) -> None:
    """Delete the staging folder of an unfinished download (only Easel's own files)."""
    from engine.paths import models_dir

    staging = (Path(models_root) if models_root else models_dir()) / f".download-{name}"
    shutil.rmtree(staging, ignore_errors=True)


def run_download(request, ctx):
    """The `DownloadRequest` handler: download, then add the folder to the library."""
    import time

    from engine.events import Result
    from engine.library.records import ModelLibrary
    from engine.library.scan import scan_library

    started = time.perf_counter()
    last = [0.0]

    def progress(done: int, total: int, file: str) -> None:
        now = time.perf_counter()
        if now - last[0] >= 0.1 or done >= total:  # at most ten updates a second
            last[0] = now
            ctx.progress(done, max(total, done), file=file, stage="downloading")

    folder = download_repo(
        request.repo_id,
        revision=request.revision,
        name=request.name or None,
        progress=progress,
        cancel=lambda: ctx.cancelled,
    )
    library = ModelLibrary()
    scan_library(library, sources=[(folder.parent, "models")], include_hf_cache=False)
    record = library.by_path(folder)
    info = {
        "path": str(folder),
        "record_id": record.id if record else None,
        "seconds": time.perf_counter() - started,
    }
    return Result(ctx.job_id, info=info)
