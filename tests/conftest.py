"""Test-wide set-up: offscreen Qt, an isolated data folder, no network, no leaked threads."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

# Must happen before any QApplication exists and before huggingface_hub is imported.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


def _test_this_checkout() -> None:
    """Import `desktop` and `engine` from the checkout these tests live in.

    `tests/desktop` is itself a package called `desktop` (pytest puts `tests/` first on the
    path), so `desktop.*` submodules are found by the editable install's finder, which maps them
    to the folder `pip install -e` was run in. In a second checkout (a git worktree sharing one
    virtual environment) the tests would silently exercise the other checkout's code.
    """
    root = Path(__file__).resolve().parents[1]
    for name, module in list(sys.modules.items()):
        mapping = getattr(module, "MAPPING", None)
        if name.startswith("__editable__") and isinstance(mapping, dict):
            for package in ("desktop", "engine"):
                if package in mapping:
                    mapping[package] = str(root / package)


_test_this_checkout()

# PySide6 6.12 on Python < 3.12 drops references to None/True on every void call and emit, which
# aborts a long Qt test run; desktop.qt_compat makes those singletons immortal (see its docstring).
from desktop.qt_compat import immortalize_singletons  # noqa: E402

immortalize_singletons()


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path_factory, monkeypatch):
    """Every test gets its own user data folder (models, gallery, database, settings)."""
    data_dir = tmp_path_factory.mktemp("easel-data")
    monkeypatch.setenv("EASEL_DATA_DIR", str(data_dir))
    return data_dir


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """Fail any test that leaves a thread running (an engine it did not shut down, say)."""
    before = set(threading.enumerate())
    yield
    deadline = 5.0
    leaked = []
    for thread in set(threading.enumerate()) - before:
        if thread.daemon and thread.name.startswith(("pydevd", "QDBus")):
            continue
        thread.join(deadline)
        if thread.is_alive():
            leaked.append(thread.name)
    if leaked:
        pytest.fail(f"test left threads running: {leaked}")


@pytest.fixture
def no_network(monkeypatch):
    """Make every attempt to open a network connection raise, as on a machine with no network."""
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network access is blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield


@pytest.fixture
def engine():
    """A real engine (worker thread); shut down and joined after the test."""
    from engine.worker import Engine

    eng = Engine()
    yield eng
    assert eng.shutdown(timeout=60), "engine worker did not stop"
