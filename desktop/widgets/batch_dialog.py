"""The Batch dialog: many prompts x a seed range x several models, made in one run.

It takes the main window's settings (steps, sampler, guidance, size, style, negative prompt) as
they are when it opens, lets the user list prompts, a seed range and models, and writes them as
a JSONL spec (`spec.jsonl`) in the output folder, the same file `easel batch` reads, so "Save
spec…" hands the run to a bigger machine or a Ray cluster unchanged. Running submits one
`BatchRequest` to the app's engine (its worker thread, its model cache, never the GUI thread);
each image lands in the output folder, its manifest and the gallery as it is made. Running again
into the same folder goes on where a stopped run left off.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop.images import pil_to_qimage
from desktop.state.generation import styled_prompts
from desktop.widgets.job_inbox import JobInbox, job_buttons
from engine.api import MAX_SEED, GenerationRequest, LoraRef, Mode, RuntimeOptions
from engine.errors import EaselError, InputError
from engine.events import Cancelled, Failed, Preview, Progress, Result, Started

SPEC_NAME = "spec.jsonl"
PREVIEW_SIDE = 128
MAX_IMAGES = 100_000  # a dialog batch larger than this is a typo in the count


class BatchDialog(JobInbox, QDialog):
    """Prompts x seeds x models from the current settings, run locally with progress."""

    batch_finished = Signal(str, dict)  # "result" / "failed" / "cancelled", job info

    def __init__(
        self,
        engine_like: Any,
        settings: Any,
        gallery: Any = None,
        library: Any = None,
        runtime: RuntimeOptions | None = None,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.setWindowTitle("Batch generation")
        self.engine = engine_like
        self.settings = settings
        self.gallery = gallery
        self.library = library
        self.runtime = runtime or RuntimeOptions()
        self.job_id: int | None = None
        self.last_summary: dict = {}
        self._build()
        self._init_inbox()
        self._listen(True)
        self._fill_from_settings()
        self._update_count()

    # -- layout ---------------------------------------------------------------------------------
    def _build(self) -> None:
        self.prompts_edit = QPlainTextEdit()
        self.prompts_edit.setPlaceholderText("One prompt per line")
        self.prompts_edit.setMinimumHeight(110)
        self.seed_spin = _spin(0, MAX_SEED, 1)
        self.count_spin = _spin(1, 10_000, 8)
        seeds = QWidget()
        seeds_row = QHBoxLayout(seeds)
        seeds_row.setContentsMargins(0, 0, 0, 0)
        seeds_row.addWidget(self.count_spin)
        seeds_row.addWidget(QLabel("per prompt, starting at seed"))
        seeds_row.addWidget(self.seed_spin)
        seeds_row.addStretch(1)
        self.models_list = QListWidget()
        self.models_list.setMinimumHeight(90)
        self.models_list.setMaximumHeight(140)
        self.shared_label = QLabel()
        self.shared_label.setWordWrap(True)
        self.shared_label.setStyleSheet("color: palette(mid);")
        self.out_edit = QLineEdit()
        self.browse_button = browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        out = QWidget()
        out_row = QHBoxLayout(out)
        out_row.setContentsMargins(0, 0, 0, 0)
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(browse)

        form = QFormLayout()
        form.addRow("Prompts", self.prompts_edit)
        form.addRow("Seeds", seeds)
        form.addRow("Models", self.models_list)
        form.addRow("Shared", self.shared_label)
        form.addRow("Save in", out)

        self.count_label = QLabel()
        self.progress_bar = QProgressBar()
        self.status_label = QLabel("Images land in the folder and in the gallery as they come.")
        self.status_label.setWordWrap(True)
        self.preview = QLabel()
        self.preview.setFixedSize(PREVIEW_SIDE, PREVIEW_SIDE)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setStyleSheet("border: 1px solid palette(mid);")
        live = QHBoxLayout()
        texts = QVBoxLayout()
        texts.addWidget(self.count_label)
        texts.addWidget(self.progress_bar)
        texts.addWidget(self.status_label)
        texts.addStretch(1)
        live.addLayout(texts, 1)
        live.addWidget(self.preview)

        self.run_button, self.cancel_button, buttons = job_buttons(self, "Run batch", "Stop")
        self.run_button.clicked.connect(self.start)
        self.save_button = QPushButton("Save spec…")
        self.save_button.setToolTip("Write the batch as JSONL for `easel batch` (or --ray)")
        self.save_button.clicked.connect(self._save_spec_as)
        buttons.insertWidget(0, self.save_button)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(live)
        layout.addLayout(buttons)
        self.prompts_edit.textChanged.connect(self._update_count)
        self.count_spin.valueChanged.connect(self._update_count)
        self.models_list.itemChanged.connect(self._update_count)
        self.resize(640, 560)

    def _fill_from_settings(self) -> None:
        get = self.settings.get
        self.prompts_edit.setPlainText(str(get("prompt") or ""))
        self.seed_spin.setValue(int(get("seed") or 0) % (MAX_SEED + 1))
        current = str(get("model") or "")
        references = [current] if current else []
        if self.library is not None:
            references += [m.reference for m in self.library.models if m.usable]
        for reference in dict.fromkeys(references):
            info = self.library.find(reference) if self.library is not None else None
            item = QListWidgetItem(info.name if info else reference)
            item.setData(Qt.ItemDataRole.UserRole, reference)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(
                Qt.CheckState.Checked if reference == current else Qt.CheckState.Unchecked
            )
            self.models_list.addItem(item)
        style = get("style") or "none"
        self.shared_label.setText(
            f"{get('steps')} steps · {get('sampler')} · guidance {float(get('guidance_scale')):g}"
            f" · {get('width')}x{get('height')} · style: {style} · text to image "
            "(from the main window's settings; a model with a fixed size or its own samplers "
            "uses those)"
        )
        self.out_edit.setText(str(_fresh_out_dir()))

    # -- what the batch is ----------------------------------------------------------------------
    def prompts(self) -> list[str]:
        lines = (line.strip() for line in self.prompts_edit.toPlainText().splitlines())
        return [line for line in lines if line]

    def models(self) -> list[str]:
        checked = []
        for row in range(self.models_list.count()):
            item = self.models_list.item(row)
            if item.checkState() == Qt.CheckState.Checked:
                checked.append(item.data(Qt.ItemDataRole.UserRole))
        return checked

    def build_requests(self) -> list[GenerationRequest]:
        """Models x prompts x seeds over the shared settings; InputError says what is missing."""
        prompts, models = self.prompts(), self.models()
        if not prompts:
            raise InputError("Type at least one prompt (one per line).")
        if not models:
            raise InputError("Tick at least one model.")
        total = len(prompts) * len(models) * self.count_spin.value()
        if total > MAX_IMAGES:
            raise InputError(f"{total:,} images is more than a batch here takes ({MAX_IMAGES:,}).")
        first = self.seed_spin.value()
        seeds = [(first + i) % (MAX_SEED + 1) for i in range(self.count_spin.value())]
        base = self._base_request()
        requests = []
        for model in models:
            for prompt in prompts:
                styled, negative, extras = styled_prompts(
                    prompt, self.settings.get("negative_prompt"), self.settings.get("style")
                )
                for seed in seeds:
                    request = base.replace(
                        model=model, prompt=styled, negative_prompt=negative,
                        extras=extras, seed=seed,
                    )  # fmt: skip
                    requests.append(self._as_run(request))
        return requests

    def _as_run(self, request: GenerationRequest) -> GenerationRequest:
        """The request the model will really run (its own size and sampler; a LoRA it cannot
        use refused here), so the spec and the manifest say what the pictures are."""
        capabilities = getattr(self.library, "capabilities", None)
        if capabilities is None:
            return request
        from engine.capabilities import check_request

        return check_request(request, capabilities(request.model)).request

    def _base_request(self) -> GenerationRequest:
        get = self.settings.get
        return GenerationRequest(
            mode=Mode.TXT2IMG,
            steps=int(get("steps")),
            guidance_scale=float(get("guidance_scale")),
            sampler=str(get("sampler")),
            width=int(get("width")),
            height=int(get("height")),
            loras=tuple(LoraRef(path=p, weight=float(w)) for p, w in get("loras") or ()),
            runtime=self.runtime,
        )

    def write_spec(self, path: str | Path) -> Path:
        from engine.batch.spec import write_jsonl

        return write_jsonl(path, self.build_requests())

    def _update_count(self, *_: Any) -> None:
        prompts, models, seeds = len(self.prompts()), len(self.models()), self.count_spin.value()
        self.count_label.setText(
            f"{prompts} prompt{'s' * (prompts != 1)} × {seeds} seed{'s' * (seeds != 1)} × "
            f"{models} model{'s' * (models != 1)} = {prompts * seeds * models} images"
        )

    # -- actions --------------------------------------------------------------------------------
    def start(self) -> None:
        from engine.batch.request import BatchRequest

        out_dir = Path(self.out_edit.text().strip() or _fresh_out_dir()).expanduser()
        try:
            requests = self.build_requests()
            spec = self.write_spec(out_dir / SPEC_NAME)
            request = BatchRequest(
                spec=str(spec), out_dir=str(out_dir), add_to_gallery=True, runtime=self.runtime
            )
        except (EaselError, OSError) as exc:
            self._show_status(str(exc), error=True)
            return
        self.preview.clear()
        self._submit_job(request, len(requests))

    def cancel(self) -> None:
        self._cancel_job("Stopping (the image in flight is dropped)…")

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        for widget in (self.prompts_edit, self.seed_spin, self.count_spin, self.models_list,
                       self.out_edit, self.browse_button, self.save_button):  # fmt: skip
            widget.setEnabled(not running)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Save the batch in", self.out_edit.text())
        if folder:
            self.out_edit.setText(folder)

    def _save_spec_as(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save batch spec", str(Path.home() / SPEC_NAME), "Batch spec (*.jsonl)"
        )
        if not path:
            return
        try:
            self.write_spec(path)
        except (EaselError, OSError) as exc:
            self._show_status(str(exc), error=True)
            return
        self._show_status(f"Saved {path}: run it with  easel batch {path} -o OUTDIR [--ray auto]")

    # -- events (GUI thread, from the inbox) ----------------------------------------------------
    def _apply(self, event) -> None:
        if isinstance(event, Started):
            self._show_status("Loading the model…")
        elif isinstance(event, Progress):
            self._on_progress(event)
        elif isinstance(event, Preview) and event.image is not None:
            pixmap = QPixmap.fromImage(pil_to_qimage(event.image))
            self.preview.setPixmap(
                pixmap.scaled(PREVIEW_SIDE, PREVIEW_SIDE, Qt.AspectRatioMode.KeepAspectRatio,
                              Qt.TransformationMode.SmoothTransformation)
            )  # fmt: skip
        elif isinstance(event, Result):
            self._finish()
            self.last_summary = dict(event.info)
            self._show_status(_summary_text(event.info))
            self.batch_finished.emit("result", dict(event.info))
        elif isinstance(event, Failed):
            self._finish()
            self._show_status(event.message, error=True)
            self.batch_finished.emit("failed", {"message": event.message})
        elif isinstance(event, Cancelled):
            self._finish()
            self._show_status("Stopped. Run again with the same folder to go on where it stopped.")
            self.batch_finished.emit("cancelled", {})

    def _on_progress(self, event: Progress) -> None:
        info = event.info
        self.progress_bar.setRange(0, max(event.total, 1))
        self.progress_bar.setValue(event.step)
        entry_id = info.get("gallery_entry_id")
        if entry_id is not None and self.gallery is not None:
            entry = self.gallery.store.get(entry_id)
            if entry is not None:
                self.gallery.results_arrived([entry])
        self._show_status(_progress_text(event.step, event.total, info))

    def _finish(self) -> None:
        self.job_id = None
        self._set_running(False)
        if not self.isVisible():
            self._listen(False)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt naming
        # closing the window does not stop a running batch: it goes on into the folder and the
        # gallery, so the dialog keeps listening until the job ends
        if self.job_id is None:
            self._listen(False)
        super().closeEvent(event)


def _progress_text(done: int, total: int, info: dict) -> str:
    from engine.batch.writer import format_duration

    parts = [f"{done} of {total} images"]
    if info.get("skipped"):
        parts.append(f"{info['skipped']} already made")
    if info.get("images_per_second"):
        parts.append(f"{info['images_per_second']:.2f} images/s")
    if info.get("seconds_left") is not None and done < total:
        parts.append(f"about {format_duration(info['seconds_left'])} left")
    if info.get("failed"):
        parts.append(f"{info['failed']} failed: {info.get('last_error', '')}".rstrip(": "))
    return " · ".join(parts)


def _summary_text(info: dict) -> str:
    text = f"Done: {info.get('done', 0)} made"
    if info.get("skipped"):
        text += f", {info['skipped']} already there"
    if info.get("failed"):
        text += f", {info['failed']} failed (see manifest.jsonl)"
    return f"{text}. Folder: {info.get('out_dir', '')}"


def _fresh_out_dir() -> Path:
    from engine.paths import user_data_dir

    return user_data_dir() / "batches" / time.strftime("batch-%Y%m%d-%H%M%S")


def _spin(low: int, high: int, value: int) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, min(high, 2**31 - 1))
    spin.setValue(value)
    return spin
