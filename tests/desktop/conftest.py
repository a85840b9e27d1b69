"""Desktop test fixtures: a main window on the scriptable fake engine, image files to drop."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from desktop.bridge import EngineBridge
from desktop.testing.fake_engine import FakeEngine, Script


@pytest.fixture
def fake_engine_holder():
    """The fake engine the bridge creates, reachable from the test (`holder[0]`)."""
    return []


@pytest.fixture
def make_window(qtbot, fake_engine_holder):
    """Build (and afterwards close) main windows on a fake engine; each close joins its threads."""
    from desktop.app import create_window

    windows = []

    def make(script: Script | None = None, *, start: bool = True):
        def factory(sink):
            engine = FakeEngine(sink, default=script or Script(steps=3))
            fake_engine_holder.append(engine)
            return engine

        window = create_window(EngineBridge(factory, preload=()))
        qtbot.addWidget(window)
        window.show()
        if start:
            window.start_background_work()
            qtbot.waitUntil(lambda: window.bridge.ready, timeout=5000)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()
        assert not window.library.scanning


@pytest.fixture
def window(make_window):
    return make_window()


@pytest.fixture
def fake(window, fake_engine_holder) -> FakeEngine:
    return fake_engine_holder[-1]


def drop_urls(widget, urls: list[QUrl]) -> bool:
    """Drag `urls` over `widget` and drop them, as a user would. Returns whether it was accepted."""
    mime = QMimeData()
    mime.setUrls(urls)
    return _drop(widget, mime)


def drop_files(widget, paths) -> bool:
    return drop_urls(widget, [QUrl.fromLocalFile(str(p)) for p in paths])


def _drop(widget, mime: QMimeData) -> bool:
    pos = QPointF(widget.width() / 2, widget.height() / 2)
    actions = Qt.DropAction.CopyAction
    buttons, mods = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    # QDragEnterEvent takes a QPoint (PySide6 6.11), QDropEvent a QPointF
    enter = QDragEnterEvent(pos.toPoint(), actions, mime, buttons, mods)
    QApplication.sendEvent(widget, enter)
    if not enter.isAccepted():
        return False
    drop = QDropEvent(pos, actions, mime, buttons, mods)
    QApplication.sendEvent(widget, drop)
    return drop.isAccepted()


@pytest.fixture
def image_file(tmp_path):
    """A real 96x64 PNG with a gradient."""
    from PIL import Image

    image = Image.new("RGB", (96, 64))
    image.putdata([(x * 2, y * 3, 120) for y in range(64) for x in range(96)])
    path = tmp_path / "photo.png"
    image.save(path)
    return path
