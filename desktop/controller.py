"""Generation flow: snapshot the state into a request, submit it, and apply what comes back.

Owns no widgets. The main window wires user actions to these methods and the bridge's GUI-thread
signals to the `on_*` handlers, which update the job state, the canvas preview, the gallery and
the non-blocking message area.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from desktop.bridge import EngineBridge
from desktop.images import load_image_file
from desktop.state.document import CanvasDocument
from desktop.state.gallery import GalleryState
from desktop.state.generation import GenerationSettings
from desktop.state.job import JobState
from desktop.state.preferences import Preferences
from engine.api import Mode
from engine.capabilities import Capabilities, check_request
from engine.errors import EaselError, InputError
from engine.history import HistoryEntry
from engine.paths import user_data_dir


def upscale_request_type():
    """The engine's UpscaleRequest when the library provides one, else None (action hidden)."""
    import engine.api

    return getattr(engine.api, "UpscaleRequest", None)


def working_dir() -> Path:
    path = user_data_dir() / "work"
    path.mkdir(parents=True, exist_ok=True)
    return path


class GenerationController(QObject):
    #: (text, kind) for the message area; kind is "info" or "error"
    message = Signal(str, str)
    #: the prompt as typed (a wildcard template stays a template) of a submitted generation
    prompt_submitted = Signal(str)

    def __init__(
        self,
        bridge: EngineBridge,
        settings: GenerationSettings,
        document: CanvasDocument,
        job: JobState,
        gallery: GalleryState,
        preferences: Preferences,
        parent: QObject | None = None,
        capabilities: Callable[[str], Capabilities] | None = None,
    ):
        super().__init__(parent)
        self.bridge = bridge
        self.settings = settings
        self.document = document
        self.job = job
        self.gallery = gallery
        self.preferences = preferences
        #: model reference -> what it can do; None checks nothing here (the engine still does)
        self.capabilities = capabilities
        #: adds what the Control panel sets (control units, image prompts, regions, hires) to
        #: a snapshot; None: nothing to add (desktop/control_wiring.py sets it)
        self.extend_request: Callable | None = None
        self._work_files: dict[int, list[Path]] = {}
        self._show_result: set[int] = set()  # jobs whose result goes onto the canvas
        self._result_images: dict[int, QImage] = {}
        self._edit_sizes: dict[int, tuple[int, int]] = {}  # canvas size an edit started from
        bridge.queued.connect(self.job.queued)
        bridge.started.connect(self.job.started)
        bridge.progress.connect(self.job.progress)
        bridge.preview.connect(self.on_preview)
        bridge.result_image.connect(self._remember_image)
        bridge.result.connect(self.on_result)
        bridge.failed.connect(self.on_failed)
        bridge.cancelled.connect(self.on_cancelled)
        bridge.engine_ready.connect(lambda: job.set_engine_state("ready", "Engine ready"))
        bridge.engine_failed.connect(self.on_engine_failed)

    # -- submitting -----------------------------------------------------------------------------
    def generate(self) -> int | None:
        """Submit what the user set up. Bad settings become one message, nothing is submitted."""
        try:
            request, files = self._build_request()
        except EaselError as exc:
            self.message.emit(str(exc), "error")
            return None
        job_id = self._submit(request, files, show=True)
        if job_id is not None:
            self.prompt_submitted.emit(self.settings.get("prompt"))
            if request.mode is not Mode.TXT2IMG:
                self._edit_sizes[job_id] = self.document.size()
        return job_id

    def _submit(self, request, files: list[Path], *, show: bool) -> int | None:
        try:
            job_id = self.bridge.submit(request)
        except (EaselError, RuntimeError) as exc:
            self.message.emit(str(exc), "error")
            return None
        self._work_files[job_id] = files
        self.job.queued(job_id)  # busy at once, before the engine's Queued event arrives
        if show:
            self._show_result.add(job_id)
        return job_id

    def _build_request(self):
        request, files = self._snapshot()
        if self.extend_request is not None:
            try:
                request = self.extend_request(request)
            except EaselError:
                _remove(files)
                raise
        if self.capabilities is None:
            return request, files
        # the same check the engine makes, before any file is written or job queued; the
        # fallbacks it applies (a native model's own size, the sampler it runs) are the ones
        # the panel already shows, so they need no message here
        try:
            checked = check_request(request, self.capabilities(request.model))
        except EaselError:
            _remove(files)
            raise
        return checked.request, files

    def _snapshot(self):
        mode = self.settings.mode
        runtime = self.preferences.runtime()
        if mode is Mode.TXT2IMG:
            return self.settings.to_request(runtime=runtime), []
        if not self.document.has_image():
            raise InputError(
                f"{mode.value} needs an image on the canvas: drop or paste one, or switch the "
                "mode to Text to image."
            )
        if mode is Mode.INPAINT and not self.document.has_mask():
            raise InputError("Inpaint needs a mask: paint the area to change on the canvas.")
        stem = uuid.uuid4().hex[:10]
        init_path = working_dir() / f"{stem}-init.png"
        files = [init_path]
        _save(self.document.image, init_path)
        mask_path = None
        if mode is Mode.INPAINT:
            mask_path = working_dir() / f"{stem}-mask.png"
            _save(self.document.mask, mask_path)
            files.append(mask_path)
        width, height = self.document.size()
        size = (max(8, width // 8 * 8), max(8, height // 8 * 8))
        request = self.settings.to_request(
            init_image=str(init_path),
            mask_image=str(mask_path) if mask_path else None,
            size=size,
            runtime=runtime,
        )
        return request, files

    def cancel(self) -> None:
        if self.job.busy:
            self.bridge.cancel(None)
            self.job.stage = "Cancelling…"
            self.job.changed.emit()

    # -- gallery actions that start jobs ---------------------------------------------------------
    def vary(self, entry: HistoryEntry, kind: str = "subtle") -> int | None:
        """Vary (subtle / strong) a result: its request as img2img from it, a new seed."""
        from engine.variations import vary_request

        request = entry.generation_request()
        if request is None:
            self.message.emit("This image has no settings to vary.", "error")
            return None
        try:
            request = vary_request(
                request,
                entry.image_path,
                (entry.width, entry.height),
                kind=kind,
                entry_id=entry.id,
                runtime=self.preferences.runtime(),
            )
        except EaselError as exc:
            self.message.emit(str(exc), "error")
            return None
        return self._submit(request, [], show=True)

    def hires(self, entry: HistoryEntry, **options) -> int | None:
        """Make a result again, larger, with the hires fix (`options`: scale, strength,
        upscaler, steps; engine.variations.hires_request)."""
        from engine.variations import hires_request

        request = entry.generation_request()
        if request is None:
            self.message.emit("This image has no settings to make again with hires fix.", "error")
            return None
        try:
            request = hires_request(
                request,
                (entry.width, entry.height),
                entry_id=entry.id,
                runtime=self.preferences.runtime(),
                **options,
            )
        except EaselError as exc:
            self.message.emit(str(exc), "error")
            return None
        return self._submit(request, [], show=True)

    def upscale(self, entry: HistoryEntry, model: str = "", scale: float = 0.0) -> int | None:
        """Enlarge a result: with an upscaler model from the library, else Lanczos; `scale`
        0 is the model's own factor (x2 for Lanczos)."""
        return self.upscale_file(entry.image_path, model, scale)

    def upscale_canvas(self, model: str = "", scale: float = 2.0) -> int | None:
        """Enlarge the picture on the canvas (as it is now, edits included)."""
        if not self.document.has_image():
            self.message.emit("Open or generate an image before upscaling.", "error")
            return None
        path = working_dir() / f"{uuid.uuid4().hex[:10]}-upscale.png"
        try:
            _save(self.document.image, path)
        except EaselError as exc:
            self.message.emit(str(exc), "error")
            return None
        return self.upscale_file(path, model, scale, work_files=[path])

    def upscale_file(
        self, path: Path, model: str, scale: float, work_files: list[Path] | None = None
    ) -> int | None:
        request_type = upscale_request_type()
        if request_type is None:
            self.message.emit("Upscaling is not available in this version.", "error")
            return None
        try:
            request = request_type(
                image=str(path),
                model=model,
                scale=scale if (scale or model) else 2.0,
                runtime=self.preferences.runtime(),
            )
        except EaselError as exc:
            self.message.emit(str(exc), "error")
            return None
        return self._submit(request, work_files or [], show=True)

    # -- engine events (GUI thread) -----------------------------------------------------------
    def on_preview(self, job_id: int, image: QImage) -> None:
        if job_id == self.job.job_id and job_id in self._show_result:
            self.document.set_preview(image)

    def _remember_image(self, job_id: int, image: QImage) -> None:
        self._result_images[job_id] = image

    def on_result(self, job_id: int, entries: list, info: dict) -> None:
        image = self._result_images.pop(job_id, None)
        self._finish(job_id, "result")
        self.gallery.results_arrived(entries)
        if not entries:
            return
        first = entries[0]
        seed = first.metadata.get("seed_used", first.metadata.get("seed"))
        if isinstance(seed, int):
            self.settings.last_seed = seed
        if job_id in self._show_result:
            self._show_result.discard(job_id)
            self._put_on_canvas(first.image_path, "Result", image)
        count = len(entries)
        text = f"Done: {count} image{'s' if count > 1 else ''} added to the gallery."
        notices = [str(note) for note in (info or {}).get("notices", [])]
        started = self._edit_sizes.pop(job_id, None)
        made = (first.width, first.height)
        if notices:  # the engine says what it changed (a fallback, a picture scaled)
            text = " ".join([text, *notices])
        elif started is not None and started != made:
            # say it: an edit that comes back at another size is a surprise otherwise
            text += (
                f" The model made {made[0]} × {made[1]} from the {started[0]} × {started[1]} "
                "canvas."
            )
        self.message.emit(text, "info")

    def on_failed(self, job_id: int, message: str, kind: str) -> None:
        self._finish(job_id, "failed")
        self.message.emit(message or "The job failed.", "error")

    def on_cancelled(self, job_id: int) -> None:
        self._finish(job_id, "cancelled")
        self.message.emit("Cancelled.", "info")

    def on_engine_failed(self, text: str) -> None:
        self.job.set_engine_state("broken", text)
        self.message.emit(text, "error")

    def _finish(self, job_id: int, outcome: str) -> None:
        if outcome != "result":
            self._edit_sizes.pop(job_id, None)
        self.job.finished(job_id, outcome)
        self.document.set_preview(None)
        self._result_images.pop(job_id, None)
        if outcome != "result":
            self._show_result.discard(job_id)
        for path in self._work_files.pop(job_id, []):
            path.unlink(missing_ok=True)

    def _put_on_canvas(self, path: Path, text: str, image: QImage | None = None) -> None:
        if image is None:
            try:
                image = load_image_file(path)
            except EaselError as exc:
                self.message.emit(str(exc), "error")
                return
        keep_mask = self.settings.mode is Mode.INPAINT and self.document.size() == (
            image.width(),
            image.height(),
        )
        self.document.set_image(image, text, keep_mask=keep_mask)


def _save(image: QImage, path: Path) -> None:
    # quality 90 = light PNG compression: a working file only needs to be fast to write and read
    if not image.save(str(path), "PNG", 90):
        raise InputError(f"Could not write the working image to {path}. Is the disk full?")


def _remove(files: list[Path]) -> None:
    for path in files:
        path.unlink(missing_ok=True)
