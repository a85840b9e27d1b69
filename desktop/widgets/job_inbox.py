"""Engine events for a dialog that runs one engine job at a time.

The engine calls sinks on its worker thread, and a Qt call from there can crash PySide6, so the
sink only queues the event; a timer on the GUI thread drains the queue and hands the events of
the dialog's current job to its `_apply`. Used by the Train dialog and the latent explorer.
"""

from __future__ import annotations

import queue

from PySide6.QtCore import QTimer

POLL_MS = 16  # one frame: events show as fast as the screen can, and no faster


class JobInbox:
    """Mixin for a QWidget with `engine`, `job_id`, `status_label`, `progress_bar`,
    `_set_running(bool)` and an `_apply(event)`."""

    def _init_inbox(self) -> None:
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.drain)
        self._listening = False

    def _sink(self, event) -> None:
        """Engine thread: queue only, no Qt."""
        self._inbox.put(event)

    def drain(self) -> None:
        """GUI thread: apply every event that arrived for the current job."""
        while True:
            try:
                event = self._inbox.get_nowait()
            except queue.Empty:
                return
            if self.job_id is not None and event.job_id == self.job_id:
                self._apply(event)

    def _listen(self, on: bool) -> None:
        if on and not self._listening:
            self.engine.subscribe(self._sink)
            self._timer.start()
        elif not on and self._listening:
            self._timer.stop()
            self.engine.unsubscribe(self._sink)
        self._listening = on

    def _submit_job(self, request, total: int) -> None:
        """Show the job as queued (progress 0 of `total`, controls locked) and submit it."""
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(0)
        self._set_running(True)
        self._show_status("Queued…")
        self.job_id = self.engine.submit(request)

    def _cancel_job(self, status: str) -> None:
        if self.job_id is not None:
            self.engine.cancel(self.job_id)
            self._show_status(status)

    def _show_status(self, text: str, *, error: bool = False) -> None:
        self.status_label.setText(text)
        self.status_label.setStyleSheet("color: #c0392b;" if error else "")


def job_buttons(dialog, run_text: str, stop_text: str):
    """The run / stop / close row both job dialogs end with: run calls `dialog.<run>`, stop
    calls `dialog.cancel` (enabled only while a job runs), close rejects the dialog.

    Returns (run_button, stop_button, layout); the caller connects the run button."""
    from PySide6.QtWidgets import QHBoxLayout, QPushButton

    run_button = QPushButton(run_text)
    run_button.setDefault(True)
    stop_button = QPushButton(stop_text)
    stop_button.setEnabled(False)
    stop_button.clicked.connect(dialog.cancel)
    close_button = QPushButton("Close")
    close_button.clicked.connect(dialog.reject)
    row = QHBoxLayout()
    row.addStretch(1)
    for button in (run_button, stop_button, close_button):
        row.addWidget(button)
    return run_button, stop_button, row
