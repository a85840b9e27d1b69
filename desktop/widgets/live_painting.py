"""Live painting: while the Live switch is on, the picture follows the brush.

Every finished edit of the canvas (a brush or sketch stroke, clear, invert, a new picture: one
step on the document's undo stack) and every settings change (the prompt after a pause in the
typing) schedules a live update: image-to-image of the canvas with the sketch layer painted in
(inpaint where the user chose it and painted a mask, text-to-image on an empty canvas), with
the few-step plan of `desktop.state.live.live_plan`. `LiveQueue` keeps one live job in the
engine at most and cancels a stale one; jobs are submitted with `live=True`, so the bridge
sends their events as `live_event` and keeps nothing. The result shows in the `LivePane` over
the canvas; Keep copies it to the canvas and into the gallery with its metadata, as a normal
result is kept.
"""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path

from PySide6.QtCore import QObject, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QAction, QColor, QIcon, QImage, QPainter, QPixmap
from PySide6.QtWidgets import QToolBar

from desktop.bridge import EngineBridge, LiveOutcome
from desktop.state.live import LivePlan, LiveQueue, live_plan
from desktop.widgets.live_pane import LivePane
from engine.api import MAX_SEED, GenerationRequest, Mode
from engine.capabilities import check_request
from engine.errors import EaselError, InputError

#: quiet time after a canvas edit before the update starts (a stroke's end is a clear signal)
EDIT_DELAY_MS = 150
#: after a keystroke in the prompt: people type in bursts, a word at a time
TYPING_DELAY_MS = 250
TYPED = ("prompt", "negative_prompt")
#: settings that do not change the live picture (live runs one image, with its own seed)
IGNORED = ("batch_size",)


class LivePainting(QObject):
    #: (text, kind) for the window's message area
    message = Signal(str, str)
    #: a live picture arrived (job id, seconds since the change it answers)
    updated = Signal(int, float)

    def __init__(self, window, pane: LivePane):
        super().__init__(window)
        self.bridge: EngineBridge = window.bridge
        self.settings = window.settings
        self.document = window.document
        self.library = window.library
        self.preferences = window.preferences
        self.gallery = window.gallery
        self.pane = pane
        self.queue = LiveQueue(
            self._submit, self.bridge.cancel, delay_ms=EDIT_DELAY_MS, parent=self
        )
        self.latest: LiveOutcome | None = None
        self.plan: LivePlan | None = None
        self.last_latency_s: float | None = None
        self._seed = 0
        self._changed_at = time.perf_counter()
        self._asked_at: dict[int, float] = {}  # job id -> time of the change it answers
        self._work_files: dict[int, list[Path]] = {}
        self._modes: dict[int, Mode] = {}
        self._keeping = False
        self._kept_mode = Mode.IMG2IMG  # the mode of the live picture shown
        self.document.undo_stack.indexChanged.connect(self._canvas_edited)
        self.settings.changed.connect(self._setting_changed)
        self.bridge.live_event.connect(self._on_event)
        pane.keep_requested.connect(self.keep)
        pane.build_requested.connect(self.build_preview_decoder)
        #: the running "build fast preview" job (a live job: nothing of it is kept)
        self.building: int | None = None

    @property
    def enabled(self) -> bool:
        return self.queue.enabled

    def set_enabled(self, enabled: bool) -> None:
        if enabled == self.enabled:
            return
        if enabled:
            self._seed = random.randint(0, MAX_SEED)  # one seed per session: no jumps
            self.latest = None
            self.pane.clear()
            self.pane.show()
            self._changed_at = time.perf_counter()
        else:
            self.pane.hide()
        self.queue.set_enabled(enabled)

    # -- what schedules an update -------------------------------------------------------------
    def _canvas_edited(self, _index: int = 0) -> None:
        if not self._keeping:
            self._changed(EDIT_DELAY_MS)

    def _setting_changed(self, name: str) -> None:
        if name not in IGNORED:
            self._changed(TYPING_DELAY_MS if name in TYPED else EDIT_DELAY_MS)

    def _changed(self, delay_ms: int) -> None:
        if self.enabled:
            self._changed_at = time.perf_counter()
            self.queue.changed(delay_ms)

    # -- submitting -------------------------------------------------------------------------------
    def _submit(self) -> int | None:
        files: list[Path] = []
        try:
            request, files = self.build_request()
            job_id = self.bridge.submit(request, live=True)
        except (EaselError, RuntimeError) as exc:
            _remove(files)
            self.pane.set_status(str(exc), error=True)
            return None
        self._work_files[job_id] = files
        self._asked_at[job_id] = self._changed_at
        self._modes[job_id] = request.mode
        self.pane.set_status("Waiting for the engine…")
        return job_id

    def build_request(self) -> tuple[GenerationRequest, list[Path]]:
        """The live update for the canvas and settings as they are now (and its work files)."""
        model = self.settings.get("model")
        caps = self.library.capabilities(model)
        info = self.library.find(model)
        doc = self.document
        self.plan = plan = live_plan(
            caps,
            base=info.base if info else "",
            variant=info.variant if info else "",
            mode=self.settings.mode,
            has_image=doc.has_image(),
            has_mask=doc.has_mask(),
            canvas_size=doc.size(),
            size=(int(self.settings.get("width")), int(self.settings.get("height"))),
            steps=int(self.settings.get("steps")),
            guidance_scale=float(self.settings.get("guidance_scale")),
            sampler=self.settings.get("sampler"),
        )
        files = self._work_images(plan)
        init = str(files[0]) if files else None
        mask = str(files[1]) if len(files) > 1 else None
        # the tiny preview decoder makes the live picture: ten times cheaper than the VAE
        runtime = self.preferences.runtime().replace(fast_decode=True)
        if plan.cpu_threads and not runtime.cpu_threads:  # "all cores": the plan's choice
            runtime = runtime.replace(cpu_threads=plan.cpu_threads)
        try:
            request = self.settings.to_request(
                init_image=init,
                mask_image=mask,
                size=(plan.width, plan.height),
                runtime=runtime,
                mode=plan.mode,
            )
            extras = dict(request.extras)
            if plan.model_defaults:
                extras["model_defaults"] = list(plan.model_defaults)
            request = request.replace(
                steps=plan.steps,
                guidance_scale=plan.guidance_scale,
                sampler=plan.sampler,
                batch_size=1,
                seed=self._live_seed(),
                extras=extras,
            )
            return check_request(request, caps).request, files
        except EaselError:
            _remove(files)
            raise

    def _live_seed(self) -> int:
        if self.settings.get("seed_mode") == "fixed":
            return int(self.settings.get("seed"))
        return self._seed

    def _work_images(self, plan: LivePlan) -> list[Path]:
        """The canvas picture with the sketch painted in (and the mask for inpaint), as files
        at the live size: the engine would scale them to it anyway, and a 1024 px PNG takes
        the GUI thread over 100 ms to write, a 256 px one a few ms."""
        if plan.mode is Mode.TXT2IMG or not self.document.has_image():
            return []
        from desktop.controller import working_dir

        stem = uuid.uuid4().hex[:10]
        files = [working_dir() / f"{stem}-live-init.png"]
        _save(_scaled(self._canvas_picture(), plan), files[0])
        if plan.mode is Mode.INPAINT:
            files.append(working_dir() / f"{stem}-live-mask.png")
            _save(_scaled(self.document.mask, plan), files[1])
        return files

    def _canvas_picture(self) -> QImage:
        picture = QImage(self.document.image)
        if self.document.has_sketch():
            painter = QPainter(picture)
            painter.drawImage(0, 0, self.document.sketch)
            painter.end()
        return picture

    # -- the fast preview decoder ---------------------------------------------------------------
    def build_preview_decoder(self) -> int | None:
        """Distil the model's fast preview decoder on the worker (once per model). Live updates
        asked meanwhile wait in the engine's queue behind it; the first after it uses it."""
        if self.building is not None:
            return self.building
        from engine.api import PreviewDecoderRequest

        model = self.settings.get("model")
        try:
            request = PreviewDecoderRequest(model=model, runtime=self.preferences.runtime())
            self.building = self.bridge.submit(request, live=True)
        except (EaselError, RuntimeError) as exc:
            self.pane.set_status(str(exc), error=True)
            return None
        self.pane.offer_build(False)
        self.pane.set_status("Building the fast preview decoder…")
        return self.building

    def _on_build_event(self, kind: str, payload) -> None:
        if kind == "progress":
            step, total = payload
            self.pane.set_status(f"Building the fast preview decoder… step {step}/{total}")
            return
        if kind not in ("result", "failed", "cancelled"):
            return
        self.building = None
        if kind == "result":
            psnr = payload.info.get("psnr_db")
            quality = f" ({psnr:.1f} dB against the full decode)" if psnr is not None else ""
            self.pane.set_status(f"Fast preview decoder ready{quality}.")
            self.message.emit(f"Fast preview decoder built{quality}.", "info")
            self._changed(0)  # show the difference at once
        else:
            failed = payload if kind == "failed" else "Building the preview decoder was cancelled."
            self.pane.set_status(failed or "Building the preview decoder failed.", error=True)
            self.pane.offer_build(True)

    # -- engine events --------------------------------------------------------------------------
    def _on_event(self, job_id: int, kind: str, payload) -> None:
        if job_id == self.building:
            self._on_build_event(kind, payload)
            return
        current = job_id == self.queue.running and not self.queue.pending
        if kind == "started" and current:
            self.pane.set_status("Painting…")
        elif kind == "progress" and current:
            step, total = payload
            if total:
                self.pane.set_status(f"Painting… step {step}/{total}")
        elif kind == "preview" and current:
            self.pane.show_image(payload, final=False)
        elif kind == "result":
            self._arrived(job_id, payload, current)
        elif kind == "failed" and current:
            self.pane.set_status(payload or "The live update failed.", error=True)
        if kind in ("result", "failed", "cancelled"):
            self._asked_at.pop(job_id, None)
            self._modes.pop(job_id, None)
            _remove(self._work_files.pop(job_id, []))
            self.queue.finished(job_id)

    def _arrived(self, job_id: int, outcome: LiveOutcome, current: bool) -> None:
        if outcome.image is None or not self.enabled:
            return
        # a result that beat its cancel still shows: it is the newest picture there is
        self.latest = outcome
        self._kept_mode = self._modes.get(job_id, Mode.IMG2IMG)
        self.pane.show_image(outcome.image, final=True)
        seconds = time.perf_counter() - self._asked_at.get(job_id, self._changed_at)
        self.last_latency_s = seconds
        notices = [str(n) for n in outcome.info.get("notices", [])]
        missing = outcome.info.get("preview_decoder") == "missing" and self.building is None
        if missing:  # the button below says what the engine's command-line hint says
            notices = [n for n in notices if "distil-preview" not in n]
            notices.append("Decoded by the full VAE: this model has no fast preview decoder yet.")
        self.pane.offer_build(missing)
        plan = self.plan.summary if self.plan else ""
        status = f"{seconds:.2f} s after the change · {plan}" if current else "Updating…"
        self.pane.set_status("\n".join([status, *notices]).strip())
        self.updated.emit(job_id, seconds)

    # -- keep -----------------------------------------------------------------------------------
    def keep(self) -> list:
        """Copy the live picture to the canvas (one undo step; the sketch it was painted from
        is cleared, its strokes are in the picture now) and into the gallery with its
        metadata. Returns the gallery entries."""
        outcome = self.latest
        if outcome is None or outcome.image is None:
            self.message.emit("There is no live picture to keep yet.", "error")
            return []
        try:
            entries = self.bridge.keep(outcome.images, outcome.metadata)
        except (EaselError, OSError) as exc:
            self.message.emit(f"Could not keep the live picture: {exc}", "error")
            return []
        self.gallery.results_arrived(entries)
        self._put_on_canvas(outcome.image)
        self.latest = None  # kept once: a second click would only add a duplicate
        self.pane.keep.setEnabled(False)
        self.message.emit("Kept: the live picture is on the canvas and in the gallery.", "info")
        return entries

    def _put_on_canvas(self, image: QImage) -> None:
        doc = self.document
        if doc.has_image() and (image.width(), image.height()) != doc.size():
            # a live picture is made small for speed: scale it to the canvas, so the layers
            # and the user's zoom stay as they are
            image = image.scaled(
                QSize(*doc.size()),
                Qt.AspectRatioMode.IgnoreAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        self._keeping = True
        try:
            doc.undo_stack.beginMacro("Keep live picture")
            doc.set_image(image, "Keep live picture", keep_mask=self._kept_mode is Mode.INPAINT)
            doc.clear_sketch()
            doc.undo_stack.endMacro()
        finally:
            self._keeping = False


def install(window) -> LivePainting:
    """The Live switch at the end of the canvas toolbar, the pane over the canvas, and the
    live painting that connects them (`window.live`, `window.live_action`)."""
    pane = LivePane(window.canvas)
    live = LivePainting(window, pane)
    action = QAction(switch_icon(), "Live", window)
    action.setCheckable(True)
    action.setShortcut("Ctrl+L")
    action.setToolTip(
        "Live painting (Ctrl+L): every stroke and prompt edit makes a quick new picture over "
        "the canvas; Keep puts it on the canvas and in the gallery"
    )
    action.toggled.connect(live.set_enabled)
    window.addAction(action)
    bar = window.findChild(QToolBar, "canvas-toolbar")
    if bar is not None:
        bar.addSeparator()
        bar.addAction(action)
    live.message.connect(window.show_message)
    window.live_action = action
    return live


def switch_icon() -> QIcon:
    """A toggle switch: grey with the knob left when off, blue with the knob right when on
    (a plain checkable tool button does not look like something that stays on)."""
    from desktop.icons import ACCENT, INK, SIZE

    icon = QIcon()
    for state, track, knob_x in (
        (QIcon.State.Off, QColor(110, 114, 122), 11.0),
        (QIcon.State.On, ACCENT, 21.0),
    ):
        pixmap = QPixmap(SIZE, SIZE)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(track)
        painter.drawRoundedRect(QRectF(3, 9, 26, 14), 7, 7)
        painter.setBrush(INK)
        painter.drawEllipse(QPointF(knob_x, 16), 5.5, 5.5)
        painter.end()
        icon.addPixmap(pixmap, QIcon.Mode.Normal, state)
    return icon


def _scaled(image: QImage, plan: LivePlan) -> QImage:
    size = QSize(plan.width, plan.height)
    if image.size() == size:
        return image
    ignore, smooth = (
        Qt.AspectRatioMode.IgnoreAspectRatio,
        Qt.TransformationMode.SmoothTransformation,
    )
    return image.scaled(size, ignore, smooth)


def _save(image: QImage, path: Path) -> None:
    # quality 90 = light PNG compression: a working file only needs to be fast to write
    if not image.save(str(path), "PNG", 90):
        raise InputError(f"Could not write the live working image to {path}. Is the disk full?")


def _remove(files: list[Path]) -> None:
    for path in files:
        path.unlink(missing_ok=True)
