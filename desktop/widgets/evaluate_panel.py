"""The Evaluate panel: pick two image sets, see FID and KID, with progress and cancel.

Hosted by the main window from its Tools menu (as a dialog or dock); works with anything
engine-like (`submit`, `cancel`, `subscribe`, `unsubscribe`): the real `Engine`, the bridge's
engine or the fake one in tests.

Engine events arrive on the worker thread. They are relayed to the GUI thread by
`EventRelay`, a QObject whose `event_arrived` signal is emitted on the GUI thread: the worker
only puts events on a thread-safe queue (no Qt call at all), and a GUI-thread timer drains it.
Emitting a Qt signal from a Python worker thread can abort PySide6 6.12 (a shiboken reference
count bug found by the desktop bridge), so the queue hop is the safe form of a queued signal.
"""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLayout,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from engine.api import EvaluateRequest, RuntimeOptions
from engine.errors import EaselError
from engine.events import Cancelled, Event, Failed, Progress, Result, Started

DRAIN_INTERVAL_MS = 30


class EventRelay(QObject):
    """Re-emits engine events on the GUI thread as `event_arrived(event)`."""

    event_arrived = Signal(object)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._timer = QTimer(self)
        self._timer.setInterval(DRAIN_INTERVAL_MS)
        self._timer.timeout.connect(self.drain)
        self._timer.start()

    def sink(self, event: Event) -> None:
        """Called on the engine's worker thread: queue only, never touch Qt here."""
        self._inbox.put(event)

    def drain(self) -> None:
        while True:
            try:
                event = self._inbox.get_nowait()
            except queue.Empty:
                return
            self.event_arrived.emit(event)

    def stop(self) -> None:
        self._timer.stop()


class EvaluatePanel(QWidget):
    """Compare two image sets with FID and KID. Emits `finished(info)` with the result info."""

    finished = Signal(dict)

    def __init__(
        self,
        engine_like: Any,
        parent: QWidget | None = None,
        *,
        runtime: RuntimeOptions | None = None,
    ):
        super().__init__(parent)
        self.setObjectName("evaluatePanel")
        self.setWindowTitle("Evaluate image sets")
        # the theme's primary button stays blue when disabled; grey it out while a job runs
        self.setStyleSheet(
            "QPushButton#primary:disabled { background: #2b2d32; border-color: #43474f; "
            "color: #6b6f78; }"
        )
        self._engine = engine_like
        self._runtime = runtime or RuntimeOptions()
        self._job_id: int | None = None
        self._relay = EventRelay(self)
        self._relay.event_arrived.connect(self._on_event)
        self._engine.subscribe(self._relay.sink)
        self._attached = True
        self._build()
        self._set_running(False)

    # -- layout -------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        # the window never gets smaller than its contents: no squashed boxes or cut labels,
        # and it grows when results and warnings appear
        layout.setSizeConstraint(QLayout.SizeConstraint.SetMinimumSize)
        self.setMinimumWidth(520)
        layout.setContentsMargins(14, 12, 14, 12)
        layout.setSpacing(8)
        title = QLabel("EVALUATE IMAGE SETS")
        title.setObjectName("section")
        layout.addWidget(title)
        intro = QLabel(
            "FID and KID measure how far apart two sets of images are, using the features of "
            "the FID Inception network. Lower is closer; 0 means the sets look alike."
        )
        intro.setObjectName("note")
        intro.setWordWrap(True)
        layout.addWidget(intro)

        grid = QGridLayout()
        grid.setHorizontalSpacing(8)
        self.set_a_edit = self._add_set_row(grid, 0, "Set A", "Folder of reference images")
        self.set_b_edit = self._add_set_row(grid, 1, "Set B", "Folder of images to judge")
        grid.addWidget(QLabel("Batch"), 2, 0)
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 512)
        self.batch_spin.setValue(32)
        self.batch_spin.setToolTip("Images per network pass: larger is faster, uses more memory")
        grid.addWidget(self.batch_spin, 2, 1, alignment=Qt.AlignmentFlag.AlignLeft)
        layout.addLayout(grid)

        buttons = QHBoxLayout()
        self.close_button = QPushButton("Close")
        self.close_button.setToolTip("Close this window (Esc); a running evaluation is cancelled")
        self.close_button.clicked.connect(self.close)
        buttons.addWidget(self.close_button)
        buttons.addStretch(1)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.evaluate_button = QPushButton("Evaluate")
        self.evaluate_button.setObjectName("primary")
        self.evaluate_button.clicked.connect(self.start)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.evaluate_button)
        layout.addLayout(buttons)

        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(False)
        layout.addWidget(self.progress)
        self.status_label = QLabel("Choose two folders of images.")
        self.status_label.setObjectName("note")
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)

        results = QGridLayout()
        results.setHorizontalSpacing(18)
        self.fid_value = self._add_result(results, 0, "FID")
        self.kid_value = self._add_result(results, 1, "KID")
        layout.addLayout(results)
        self.warning_label = QLabel("")
        self.warning_label.setObjectName("note")
        self.warning_label.setWordWrap(True)
        layout.addWidget(self.warning_label)
        layout.addStretch(1)

    def _add_set_row(self, grid: QGridLayout, row: int, name: str, hint: str) -> QLineEdit:
        grid.addWidget(QLabel(name), row, 0)
        edit = QLineEdit()
        edit.setPlaceholderText(hint)
        edit.setMinimumWidth(260)
        grid.addWidget(edit, row, 1)
        browse = QPushButton("Browse…")
        browse.clicked.connect(lambda: self._browse(edit, name))
        grid.addWidget(browse, row, 2)
        return edit

    def _add_result(self, grid: QGridLayout, column: int, name: str) -> QLabel:
        caption = QLabel(name)
        caption.setObjectName("section")
        value = QLabel("–")
        value.setObjectName(f"{name.lower()}Value")
        value.setStyleSheet("font-size: 20pt; font-weight: 600;")
        value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        grid.addWidget(caption, 0, column)
        grid.addWidget(value, 1, column)
        return value

    def _browse(self, edit: QLineEdit, name: str) -> None:
        folder = QFileDialog.getExistingDirectory(self, f"Choose {name}", edit.text() or "")
        if folder:
            edit.setText(folder)

    # -- actions ------------------------------------------------------------------------------
    def set_folders(self, set_a: str | Path, set_b: str | Path) -> None:
        self.set_a_edit.setText(str(set_a))
        self.set_b_edit.setText(str(set_b))

    def start(self) -> None:
        if self._job_id is not None:
            return
        try:
            request = EvaluateRequest(
                set_a=self.set_a_edit.text().strip(),
                set_b=self.set_b_edit.text().strip(),
                batch_size=self.batch_spin.value(),
                runtime=self._runtime,
            )
        except EaselError as exc:
            self._show_error(str(exc))
            return
        self._clear_results()
        self.status_label.setText("Queued…")
        self.progress.setRange(0, 0)  # busy until the first progress event says how many
        self._set_running(True)
        self._job_id = self._engine.submit(request)

    def cancel(self) -> None:
        if self._job_id is not None:
            self._engine.cancel(self._job_id)
            self.status_label.setText("Cancelling…")
            self.cancel_button.setEnabled(False)

    def detach(self) -> None:
        """Cancel a running job and stop listening to the engine (the host calls this, and
        closing the panel does it too)."""
        if not self._attached:
            return
        self.cancel()
        self._engine.unsubscribe(self._relay.sink)
        self._relay.stop()
        self._attached = False

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        """Word-wrapped text needs more height when the window is narrow: keep the minimum
        height at what the contents need at this width, so rows are never squashed."""
        super().resizeEvent(event)
        layout = self.layout()
        if layout.hasHeightForWidth():
            need = layout.totalHeightForWidth(self.width())
            if need != self.minimumHeight():
                self.setMinimumHeight(need)

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if event.key() == Qt.Key.Key_Escape:  # as in the other tool windows (dialogs)
            self.close()
            return
        super().keyPressEvent(event)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.detach()
        super().closeEvent(event)

    @property
    def running(self) -> bool:
        return self._job_id is not None

    # -- events from the engine (GUI thread) ---------------------------------------------------
    def _on_event(self, event: Event) -> None:
        if event.job_id != self._job_id:
            return
        if isinstance(event, Started):
            self.status_label.setText("Starting…")
        elif isinstance(event, Progress):
            self._show_progress(event)
        elif isinstance(event, Result):
            self._show_result(event.info)
        elif isinstance(event, Failed):
            self._show_error(event.message)
        elif isinstance(event, Cancelled):
            self._finish("Cancelled.")

    def _show_progress(self, event: Progress) -> None:
        if event.total:
            self.progress.setRange(0, event.total)
            self.progress.setValue(event.step)
        stage = event.info.get("stage", "")
        parts = [stage] if stage else []
        if event.total and 0 < event.step < event.total:
            parts.append(f"{event.step} of {event.total} images")
        text = ": ".join(parts) or "Working…"
        rate = event.info.get("images_per_second")
        if rate:
            text += f" · {rate:.1f} images/s"
        left = event.info.get("seconds_left")
        if left and event.step:
            text += f" · about {_duration(left)} left"
        self.status_label.setText(text)

    def _show_result(self, info: dict) -> None:
        if not all(key in info for key in ("fid", "kid", "count_a", "count_b")):
            self._show_error("The evaluation finished without FID and KID values.")
            return
        self.fid_value.setText(f"{info['fid']:.2f}")
        kid_text = f"{info['kid']:.4f}"
        # subsets that hold the whole set all give the same value: no spread worth showing
        if info.get("kid_std", 0.0) >= 5e-5:
            kid_text += f" ± {info['kid_std']:.4f}"
        self.kid_value.setText(kid_text)
        self.warning_label.setText("\n".join(info.get("warnings", [])))
        self.adjustSize()  # make room for the results instead of squashing the set rows
        seconds = info.get("seconds", 0.0)
        self._finish(
            f"Compared {info['count_a']} with {info['count_b']} images in {_duration(seconds)}."
        )
        self.finished.emit(dict(info))

    def _show_error(self, message: str) -> None:
        self._finish("")
        self.status_label.setText(message)
        self.status_label.setStyleSheet("color: #ff8a8a;")

    def _finish(self, text: str) -> None:
        self._job_id = None
        self._set_running(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if text.startswith("Compared") else 0)
        self.status_label.setStyleSheet("")
        self.status_label.setText(text)

    def _clear_results(self) -> None:
        self.fid_value.setText("–")
        self.kid_value.setText("–")
        self.warning_label.setText("")
        self.status_label.setStyleSheet("")

    def _set_running(self, running: bool) -> None:
        self.evaluate_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        for widget in (self.set_a_edit, self.set_b_edit, self.batch_spin):
            widget.setEnabled(not running)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest:02d} s"
