"""What a model is, shown beside the model browser's table: its card and a sample picture.

A model folder (Easel's native models, diffusers folders) carries its card as `README.md` and
sample pictures under `samples/`; a single file may have the usual neighbours (`name.md`,
`name.preview.png`, `name.png`, `name.jpg`, as A1111 and Civitai tools write them). The card is
Markdown, shown with its images (relative paths resolve against the folder).

Hashes are computed on a background thread (a checkpoint is gigabytes: seconds of reading) and
collected by a GUI-thread timer; the worker never touches Qt.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QImage, QPixmap, QTextCursor, QTextDocument
from PySide6.QtWidgets import QLabel, QTextBrowser, QVBoxLayout, QWidget

#: kinds shown in words; parts (text encoders, VAEs) load with models, they are not picked
KIND_LABELS = {"text_encoder": "text encoder", "ip_adapter": "IP-Adapter"}


def kind_text(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)


def _kind_and_base(kind: str, base: str) -> str:
    """'checkpoint, sd1.' / 'text encoder, a part shared by the models it fits.'"""
    if base:
        return f"{kind_text(kind)}, {base}."
    if kind in {"text_encoder", "vae"}:
        return f"{kind_text(kind)}, a part shared by the models it fits."
    return f"{kind_text(kind)}, unknown base."


THUMB = 160
PREVIEW_SUFFIXES = (".preview.png", ".png", ".jpg", ".jpeg", ".webp")
CARD_NAMES = ("README.md", "model_card.md", "card.md")


def card_path(path: str | Path) -> Path | None:
    path = Path(path)
    if path.is_dir():
        return next((path / n for n in CARD_NAMES if (path / n).is_file()), None)
    candidate = path.with_suffix(".md")
    return candidate if candidate.is_file() else None


def preview_path(path: str | Path) -> Path | None:
    """A sample picture of the model, or None."""
    path = Path(path)
    if path.is_dir():
        samples = path / "samples"
        pictures = sorted(samples.glob("*.png")) + sorted(samples.glob("*.jpg"))
        if pictures:
            grid = samples / "grid.png"
            return grid if grid.is_file() else pictures[0]
        return None
    for suffix in PREVIEW_SUFFIXES:
        candidate = path.with_name(path.stem + suffix)
        if candidate.is_file() and candidate != path:
            return candidate
    return None


def thumbnail(path: str | Path, side: int = THUMB) -> QPixmap | None:
    picture = preview_path(path)
    if picture is None:
        return None
    pixmap = QPixmap(str(picture))
    if pixmap.isNull():
        return None
    small = max(pixmap.width(), pixmap.height()) <= side // 2
    mode = Qt.TransformationMode.FastTransformation if small else (
        Qt.TransformationMode.SmoothTransformation)  # fmt: skip
    return pixmap.scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio, mode)


class ModelCardView(QWidget):
    """The selected model's sample picture over its card."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.picture = QLabel()
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setMinimumHeight(THUMB)
        self.card = QTextBrowser()
        self.card.setOpenExternalLinks(False)
        self.card.setOpenLinks(False)
        layout.addWidget(self.picture)
        layout.addWidget(self.card, 1)
        self.setMinimumWidth(300)
        self.show_model(None)

    def show_model(self, info) -> None:
        if info is None:
            self.picture.setPixmap(QPixmap())
            self.picture.setText("Select a model to see its card.")
            self.card.setMarkdown("")
            return
        pixmap = thumbnail(info.path) if info.path else None
        if pixmap is None:
            self.picture.setPixmap(QPixmap())
            self.picture.setText("No sample pictures")
        else:
            self.picture.setPixmap(pixmap)
        found = card_path(info.path) if info.path else None
        if found is None:
            self.card.setMarkdown(
                f"**{info.name}**\n\n{_kind_and_base(info.kind, info.base)}\n\n"
                "No model card: put a README.md beside the model (or name.md beside a single "
                "file) to describe what it makes and its licence."
            )
            return
        self.card.document().setBaseUrl(QUrl.fromLocalFile(str(found.parent) + "/"))
        self.card.setSearchPaths([str(found.parent)])
        try:
            self.card.setMarkdown(found.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            self.card.setMarkdown(f"The card {found.name} cannot be read ({exc}).")
        self.fit_images()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt naming
        super().resizeEvent(event)
        self.fit_images()

    def fit_images(self) -> None:
        """Shrink the card's pictures to its width (a card's 512 px sample grid made the whole
        card scroll sideways); never enlarge one past its own size."""
        doc = self.card.document()
        room = self.card.viewport().width() - 2 * doc.documentMargin() - 8
        cursor = QTextCursor(doc)
        for start, length, image in _image_fragments(doc):
            natural = doc.resource(QTextDocument.ResourceType.ImageResource, QUrl(image.name()))
            if isinstance(natural, QPixmap):
                natural = natural.toImage()
            if not isinstance(natural, QImage) or natural.isNull():
                continue
            width = max(32.0, min(float(natural.width()), room))
            if abs(image.width() - width) < 1:
                continue
            image.setWidth(width)
            image.setHeight(natural.height() * width / natural.width())
            cursor.setPosition(start)
            cursor.setPosition(start + length, QTextCursor.MoveMode.KeepAnchor)
            cursor.setCharFormat(image)


def _image_fragments(doc: QTextDocument) -> list:
    """(position, length, image format) of every picture in a document."""
    found = []
    block = doc.begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            if fragment.charFormat().isImageFormat():
                image = fragment.charFormat().toImageFormat()
                found.append((fragment.position(), fragment.length(), image))
            it += 1
        block = block.next()
    return found


class HashWorker(QObject):
    """SHA-256 of model files on one background thread; `hashed(reference, short_hash)`."""

    hashed = Signal(str, str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._todo: queue.SimpleQueue = queue.SimpleQueue()
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._asked: set[str] = set()
        self._timer = QTimer(self)
        self._timer.setInterval(50)
        self._timer.timeout.connect(self._collect)

    def request(self, reference: str, path: str) -> None:
        if reference in self._asked or not path:
            return
        self._asked.add(reference)
        with self._lock:
            self._todo.put((reference, path))
            if self._thread is None:  # the thread ends when it runs out of work
                self._thread = threading.Thread(target=self._run, name="easel-model-hashes")
                self._thread.start()
        self._timer.start()

    def _run(self) -> None:
        from engine.errors import EaselError, JobCancelled
        from engine.library.hashing import HashCache, identity_path, short_hash

        cache = HashCache()
        self._identity = identity_path
        try:
            self._work(cache, short_hash, (EaselError, JobCancelled, OSError))
        finally:
            with self._lock:
                if self._thread is threading.current_thread():  # stopped or failed
                    self._thread = None

    def _work(self, cache, short_hash, failures) -> None:
        while not self._stop.is_set():
            with self._lock:
                try:
                    reference, path = self._todo.get_nowait()
                except queue.Empty:
                    # under the lock `request` holds while it checks for a thread: a request
                    # that comes after this starts a new thread instead of being stranded
                    self._thread = None
                    return
            try:
                # the same identity the pictures' metadata name (a native folder's weights)
                target = self._identity(path)
                value = short_hash(cache.sha256(target, cancel=self._stop.is_set))
            except failures:
                value = ""  # unreadable: the status column already says why
            self._done.put((reference, value))

    @property
    def busy(self) -> bool:
        return self._thread is not None

    def _collect(self) -> None:
        while True:
            try:
                reference, value = self._done.get_nowait()
            except queue.Empty:
                return
            if value:
                self.hashed.emit(reference, value)

    def stop(self) -> None:
        self._stop.set()
        self._timer.stop()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=5)
