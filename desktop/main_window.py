"""The main window: canvas in the middle, prompt panel on the left, gallery on the right,
canvas tools on a toolbar, engine state and progress in the status bar.

It builds the state objects, the widgets and the two controllers (generation, image actions),
wires them together, and keeps geometry, layout and the last settings between runs.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QInputDialog,
    QLabel,
    QMainWindow,
    QProgressBar,
    QStyle,
    QWidget,
)

from desktop.bridge import EngineBridge
from desktop.canvas_edits import install as install_canvas_edits
from desktop.control_wiring import install as install_control
from desktop.controller import GenerationController, upscale_request_type
from desktop.gallery_actions import delete_after_asking, export_dialog
from desktop.icons import icon
from desktop.image_actions import OUTPAINT_SIDES, ImageActions
from desktop.images import IMAGE_SUFFIXES
from desktop.menus import build_menus, build_toolbar
from desktop.settings_import import SettingsImport
from desktop.state.document import CanvasDocument
from desktop.state.gallery import GalleryState
from desktop.state.generation import GenerationSettings
from desktop.state.job import JobState
from desktop.state.models import ModelLibrary
from desktop.state.preferences import Preferences
from desktop.state.prompt_history import PromptHistory
from desktop.tool_windows import ToolWindows
from desktop.understanding import install as install_understanding
from desktop.widgets.canvas import BRUSH, ERASER, CanvasView
from desktop.widgets.gallery_panel import GalleryPanel
from desktop.widgets.live_painting import install as install_live_painting
from desktop.widgets.prompt_panel import PromptPanel
from desktop.widgets.prompt_recall import install as install_prompt_recall
from desktop.widgets.toast import ERROR, Toast
from engine.history import HistoryEntry


class MainWindow(QMainWindow):
    #: settings were restored from a request (GenerationRequest, the app that wrote it)
    settings_restored = Signal(object, str)

    def __init__(self, bridge: EngineBridge, preferences: Preferences | None = None):
        super().__init__()
        self.setWindowTitle("Easel")
        self.setObjectName("EaselMainWindow")
        self.setAcceptDrops(True)
        self.bridge = bridge
        self.preferences = preferences or Preferences(self)
        self._made_for_pending = ""  # first launch: the default model's own settings to apply
        self._make_state()
        self._make_widgets()
        self._make_actions()
        install_canvas_edits(self)  # crop, sketch, resize, rotate, flip, layers
        self.understanding = install_understanding(self)  # expand, describe, interrogate
        build_menus(self)
        build_toolbar(self)
        self.live = install_live_painting(self)  # the Live switch, its pane and queue
        install_control(self)  # Control dock, region layers, gallery Vary/Upscale/Hires
        self._make_status_bar()
        self._wire()
        self._restore()
        self._closing = False

    # -- construction -------------------------------------------------------------------------
    def start_background_work(self) -> None:
        """After the window shows: load the engine and bring the model records up to date."""
        self.report_startup_problems()
        self.bridge.start()
        self.library.rescan_async()

    def report_startup_problems(self) -> None:
        """Tell the user what start-up had to work around (data folder, damaged settings)."""
        from engine.paths import data_dir_warning

        for problem in (data_dir_warning(), self.preferences.problem):
            if problem:
                print(f"Easel: {problem}", file=sys.stderr, flush=True)
                self.show_message(problem, ERROR)

    def _make_state(self) -> None:
        self.settings = GenerationSettings(self)
        self.document = CanvasDocument(self)
        self.job = JobState(self)
        self.gallery = GalleryState(parent=self)
        self.library = ModelLibrary(self.preferences.model_folders(), parent=self)
        self.generation = GenerationController(
            self.bridge,
            self.settings,
            self.document,
            self.job,
            self.gallery,
            self.preferences,
            self,
            capabilities=self.library.capabilities,
        )
        self.images = ImageActions(self.document, self.settings, self)
        self.settings_import = SettingsImport(self)  # reuse settings, settings in a dropped PNG
        self.tools = ToolWindows(self)  # hosted tool windows, closed with the main window

    def _make_widgets(self) -> None:
        self.canvas = CanvasView(self.document)
        self.setCentralWidget(self.canvas)
        self.prompt_panel = PromptPanel(self.settings, self.library)
        self.prompt_panel.setMinimumWidth(340)
        self.prompt_dock = self._dock(
            "Generate", "prompt", self.prompt_panel, Qt.DockWidgetArea.LeftDockWidgetArea
        )
        self.gallery_panel = GalleryPanel(
            self.gallery, can_upscale=upscale_request_type() is not None
        )
        self.gallery_panel.setMinimumWidth(300)
        self.gallery_dock = self._dock(
            "Gallery", "gallery", self.gallery_panel, Qt.DockWidgetArea.RightDockWidgetArea
        )
        self.toast = Toast(self)
        self.prompt_history = PromptHistory(self.preferences, self)
        self.prompt_recall = install_prompt_recall(self.prompt_panel, self.prompt_history)

    def _dock(self, title: str, name: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"{name}-dock")
        dock.setWidget(widget)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
        )
        self.addDockWidget(area, dock)
        return dock

    def _action(self, text: str, slot, shortcut=None, icon=None, checkable=False) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            keys = shortcut if isinstance(shortcut, list) else [shortcut]
            action.setShortcuts([QKeySequence(k) for k in keys])
        if icon is not None:
            action.setIcon(self.style().standardIcon(icon))
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        self.addAction(action)  # shortcuts work whichever widget has focus
        return action

    def _make_actions(self) -> None:
        sp = QStyle.StandardPixmap
        a = self._action
        stack = self.document.undo_stack
        self.undo_action = stack.createUndoAction(self, "Undo")
        self.undo_action.setShortcut(QKeySequence.StandardKey.Undo)
        self.undo_action.setIcon(self.style().standardIcon(sp.SP_ArrowBack))
        self.redo_action = stack.createRedoAction(self, "Redo")
        self.redo_action.setShortcuts([QKeySequence.StandardKey.Redo, QKeySequence("Ctrl+Y")])
        self.redo_action.setIcon(self.style().standardIcon(sp.SP_ArrowForward))
        self.addActions([self.undo_action, self.redo_action])
        self.open_action = a(
            "Open image…", self.open_dialog, QKeySequence.StandardKey.Open, sp.SP_DialogOpenButton
        )
        self.save_action = a(
            "Save image as…",
            self.save_canvas_dialog,
            QKeySequence.StandardKey.Save,
            sp.SP_DialogSaveButton,
        )
        self.paste_action = a("Paste image", self.images.paste, QKeySequence.StandardKey.Paste)
        self.copy_action = a("Copy image", self.images.copy, QKeySequence.StandardKey.Copy)
        self.quit_action = a("Quit", self.close, QKeySequence.StandardKey.Quit)
        self.generate_action = a(
            "Generate", self.generation.generate, ["Ctrl+Return", "Ctrl+Enter"], sp.SP_MediaPlay
        )
        self.cancel_action = a("Cancel", self.generation.cancel, "Esc", sp.SP_MediaStop)
        self.brush_action = a("Brush", lambda: self.canvas.set_tool(BRUSH), "B", checkable=True)
        self.eraser_action = a("Eraser", lambda: self.canvas.set_tool(ERASER), "E", checkable=True)
        self.brush_action.setChecked(True)
        self.smaller_action = a(
            "Smaller brush", lambda: self.canvas.set_brush_size(self.canvas.brush_size * 0.8), "["
        )
        self.bigger_action = a(
            "Bigger brush",
            lambda: self.canvas.set_brush_size(self.canvas.brush_size * 1.25 + 1),
            "]",
        )
        self.clear_mask_action = a(
            "Clear mask", self.document.clear_mask, "Ctrl+Shift+X", sp.SP_DialogResetButton
        )
        self.invert_mask_action = a("Invert mask", self.document.invert_mask, "Ctrl+I")
        self.show_mask_action = a(
            "Show mask", lambda on: self.canvas.set_mask_visible(on), "M", checkable=True
        )
        self.show_mask_action.setChecked(True)
        self.fit_action = a("Fit to window", self.canvas.fit, "Ctrl+0")
        self.actual_action = a("Actual size (100%)", self.canvas.actual_size, "Ctrl+1")
        self.zoom_in_action = a(
            "Zoom in", lambda: self.canvas.zoom_by(1.25), QKeySequence.StandardKey.ZoomIn
        )
        self.zoom_out_action = a(
            "Zoom out", lambda: self.canvas.zoom_by(0.8), QKeySequence.StandardKey.ZoomOut
        )
        self.extend_action = a("Extend canvas (outpaint)…", self.extend_dialog, "Ctrl+Shift+E")
        self.upscale_canvas_action = a("Upscale…", self.upscale_canvas, "Ctrl+Shift+U")
        self.models_action = a("Model browser…", self.show_model_browser, "Ctrl+M", sp.SP_DirIcon)
        self.settings_action = a(
            "Settings…", self.show_settings, QKeySequence.StandardKey.Preferences
        )
        drawn = {
            self.brush_action: "brush",
            self.eraser_action: "eraser",
            self.clear_mask_action: "clear",
            self.invert_mask_action: "invert",
            self.fit_action: "fit",
            self.actual_action: "actual",
            self.extend_action: "extend",
        }
        for action, name in drawn.items():
            action.setIcon(icon(name))
        # short toolbar labels; the menus keep the full names
        for action, text in (
            (self.fit_action, "Fit"),
            (self.actual_action, "100%"),
            (self.extend_action, "Outpaint…"),
            (self.clear_mask_action, "Clear"),
            (self.invert_mask_action, "Invert"),
        ):
            action.setIconText(text)

    def _make_status_bar(self) -> None:
        status = self.statusBar()
        self.engine_label = QLabel()
        self.progress = QProgressBar()
        self.progress.setFixedWidth(220)
        self.progress.setTextVisible(False)
        self.progress_label = QLabel()
        self.progress_label.setMinimumWidth(150)
        self.zoom_label = QLabel("100%")
        status.addWidget(self.engine_label)
        status.addPermanentWidget(self.progress_label)
        status.addPermanentWidget(self.progress)
        status.addPermanentWidget(self.zoom_label)
        self._job_changed()

    def _wire(self) -> None:
        self.prompt_panel.generate_requested.connect(self.generation.generate)
        self.generation.prompt_submitted.connect(self.prompt_history.add)
        self.prompt_panel.cancel_requested.connect(self.generation.cancel)
        self.prompt_panel.add_lora_requested.connect(self.add_lora_dialog)
        self.generation.message.connect(self.show_message)
        self.images.message.connect(self.show_message)
        self.images.settings_found.connect(self.settings_import.offer)
        self.images.models_dropped.connect(self.import_models)
        self.canvas.files_dropped.connect(self.images.open_urls)
        self.canvas.image_dropped.connect(self.images.open_qimage)
        self.canvas.brush_size_changed.connect(self._brush_size_changed)
        self.canvas.tool_changed.connect(self._tool_changed)
        self.canvas.zoom_changed.connect(lambda z: self.zoom_label.setText(f"{z * 100:.0f}%"))
        self.size_slider.valueChanged.connect(self.canvas.set_brush_size)
        self.job.changed.connect(self._job_changed)
        self.preferences.changed.connect(self._preferences_changed)
        self.settings.changed.connect(lambda name: name == "model" and self._prepare_model())
        self.bridge.engine_ready.connect(self._prepare_model)
        self.bridge.warming.connect(self._warming)
        g = self.gallery_panel
        g.open_requested.connect(lambda e: self.open_entry(e, as_init=False))
        g.init_requested.connect(lambda e: self.open_entry(e, as_init=True))
        g.reuse_requested.connect(self.reuse_entry)
        g.vary_requested.connect(self.generation.vary)
        g.upscale_requested.connect(self.upscale_entry)
        g.save_requested.connect(self.save_entry_dialog)
        g.copy_requested.connect(lambda e: self.images.copy_file(e.image_path))
        g.delete_requested.connect(lambda e: self.gallery.delete(e.id))
        g.delete_many_requested.connect(lambda es: delete_after_asking(self, self.gallery, es))
        g.export_requested.connect(lambda es: export_dialog(self, es, self.show_message))
        self.bridge.output_folder = self.preferences.output_folder()

    # -- state -> widgets ---------------------------------------------------------------------
    def _job_changed(self) -> None:
        job = self.job
        # a coloured dot (U+25CF is in every common UI font; emoji glyphs are not)
        colour, text = {
            "loading": ("#e0a84f", "Loading engine…"),
            "ready": ("#5cc87a", "Engine ready"),
            "warming": ("#e0a84f", "Preparing Stable Diffusion…"),
            "broken": ("#e0605a", "Engine failed to load"),
        }.get(job.engine_state, ("#9aa0ab", job.engine_state))
        if job.engine_state == "ready" and job.activity():
            # not "ready" while the first job still loads its model (seconds on a CPU)
            colour, text = ("#e0a84f" if job.step == 0 else "#5c9ee0"), job.activity()
        self.engine_label.setText(f'<span style="color:{colour}">●</span>&nbsp;{text}')
        self.engine_label.setToolTip(job.engine_message)
        busy = job.busy
        self.progress.setVisible(busy)
        self.progress_label.setVisible(busy)
        if busy:
            self.progress.setRange(0, max(job.total, 0))
            self.progress.setValue(job.step)
            self.progress_label.setText(job.progress_text())
        self.prompt_panel.set_busy(busy)
        self.cancel_action.setEnabled(busy)

    def _brush_size_changed(self, size: int) -> None:
        self.size_slider.blockSignals(True)
        self.size_slider.setValue(size)
        self.size_slider.blockSignals(False)
        self.size_label.setText(f" {size} px ")

    def _tool_changed(self, tool: str) -> None:
        self.brush_action.setChecked(tool == BRUSH)
        self.eraser_action.setChecked(tool == ERASER)

    def _prepare_model(self) -> None:
        """Import the Stable Diffusion stack as soon as an SD model is chosen (in the background,
        with a visible state), and build its tokenizers, so the first generation does not pay
        for either (both hold the GIL in long stretches: frozen frames mid-job)."""
        model = self.settings.get("model")
        if self.bridge.ready and self.library.needs_diffusers(model):
            self.bridge.warm_up()
            self.bridge.prepare_model(self.library.local_path(model))

    def _warming(self, busy: bool) -> None:
        if busy:
            self.job.set_engine_state("warming", "Importing diffusers and transformers")
        elif self.job.engine_state == "warming":
            self.job.set_engine_state("ready", "Engine ready")

    def _preferences_changed(self) -> None:
        self.bridge.output_folder = self.preferences.output_folder()

    def show_message(self, text: str, kind: str = "info") -> None:
        # the toast only: a status-bar message would hide the engine state on its left
        self.toast.show_message(text, kind)

    # -- user actions ---------------------------------------------------------------------------
    def open_dialog(self) -> None:
        patterns = " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES))
        path, _ = QFileDialog.getOpenFileName(self, "Open image", "", f"Images ({patterns})")
        if path:
            self.images.open_path(path)

    def save_canvas_dialog(self) -> None:
        if not self.document.has_image():
            self.show_message("There is no image on the canvas to save.", ERROR)
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Save image", "image.png", "PNG (*.png);;JPEG (*.jpg)"
        )
        if path and not self.document.image.save(path):
            self.show_message(f"Could not save {path}.", ERROR)

    def save_entry_dialog(self, entry: HistoryEntry) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save image", entry.image_path.name, "PNG (*.png)"
        )
        if path:
            self.save_entry(entry, Path(path))

    def save_entry(self, entry: HistoryEntry, target: Path) -> bool:
        """Copy the gallery file (it keeps the generation settings in its metadata)."""
        try:
            shutil.copyfile(entry.image_path, target)
        except OSError as exc:
            self.show_message(f"Could not save {target.name}: {exc.strerror or exc}", ERROR)
            return False
        self.show_message(f"Saved {target.name}.")
        return True

    def open_entry(self, entry: HistoryEntry, *, as_init: bool) -> None:
        """ "Open on canvas" shows the picture and keeps the Mode as chosen; "Use as init
        image" is the one that asks for image to image."""
        mode = self.settings.get("mode")
        if self.images.open_path(entry.image_path) and not as_init:
            self.settings.set("mode", mode)

    def upscale_entry(self, entry: HistoryEntry):
        """Ask for the upscaler and factor, then upscale the gallery result."""
        return self._upscale_dialog(
            (entry.width, entry.height), lambda m, f: self.generation.upscale(entry, m, f)
        )

    def upscale_canvas(self):
        if not self.document.has_image():
            self.show_message("Open or generate an image before upscaling.", ERROR)
            return None
        return self._upscale_dialog(self.document.size(), self.generation.upscale_canvas)

    def _upscale_dialog(self, size, run):
        from desktop.widgets.upscale_dialog import UpscaleDialog

        upscalers = [m for m in self.library.of_kind("upscaler") if m.status == "ok"]
        dialog = UpscaleDialog(upscalers, size, self)
        dialog.accepted.connect(lambda: run(*dialog.choice()))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def extend_dialog(self) -> None:
        side, ok = QInputDialog.getItem(
            self, "Extend canvas", "Side", [s.title() for s in OUTPAINT_SIDES], 1, False
        )
        if not ok:
            return
        amount, ok = QInputDialog.getInt(
            self, "Extend canvas", "Pixels (multiple of 8)", 128, 8, 2048, 8
        )
        if ok:
            self.images.extend(side.lower(), amount)

    def add_lora_dialog(self) -> None:
        loras = [m for m in self.library.of_kind("lora") if m.status == "ok"]
        if loras:
            names = [m.name for m in loras]
            name, ok = QInputDialog.getItem(self, "Add LoRA", "LoRA", names, 0, False)
            if ok:
                self.prompt_panel.add_lora(loras[names.index(name)].path)
            return
        path, _ = QFileDialog.getOpenFileName(self, "Add LoRA", "", "LoRA (*.safetensors)")
        if path:
            self.prompt_panel.add_lora(path)

    def import_models(self, paths: list) -> None:
        from desktop.widgets.model_browser import ModelBrowser

        browser = ModelBrowser(self.library, self)
        browser.message.connect(self.show_message)
        browser.import_paths([Path(p) for p in paths])
        browser.deleteLater()

    def show_model_browser(self):
        from desktop.widgets.model_browser import ModelBrowser

        browser = ModelBrowser(self.library, self)
        browser.message.connect(self.show_message)
        browser.default_chosen.connect(self.set_default_model)
        browser.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        browser.show()
        return browser

    def set_default_model(self, reference: str) -> None:
        self.preferences.set_default_model(reference)
        self.settings.set("model", reference)

    def show_settings(self):
        from desktop.widgets.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.preferences, self, library=self.library)
        dialog.accepted.connect(
            lambda: dialog.problems and self.show_message("\n".join(dialog.problems), ERROR)
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def reuse_entry(self, entry: HistoryEntry) -> None:
        self.settings_import.reuse_entry(entry)

    def open_tool(self, module_name: str, class_name: str):
        """Open a hosted tool window (desktop/tool_windows.py); None if it is not available."""
        return self.tools.open(module_name, class_name)

    # -- persistence and shutdown -----------------------------------------------------------------
    def _restore(self) -> None:
        prefs = self.preferences
        geometry = prefs.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1360, 860)
        state = prefs.value("window/state")
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state)
        self.settings.load_json(prefs.value("generation/last", ""))
        default_model = prefs.default_model()
        if default_model and not prefs.value("generation/last", ""):
            self.settings.set("model", default_model)
            self._made_for_pending = default_model  # its settings, once the library has listed
            self.library.changed.connect(self._apply_made_for)
            self._apply_made_for()
        brush = prefs.value("canvas/brush_size")
        if brush is not None:
            self.canvas.set_brush_size(int(brush))

    def _apply_made_for(self) -> None:
        """On first launch, the default model's own guidance and steps (a built-in measured at
        guidance 3 would otherwise run at the panel's 7), unless the user already chose."""
        model = self._made_for_pending
        if not model or self.library.find(model) is None:
            return  # not listed yet: the library's next change tries again
        self._made_for_pending = ""
        self.library.changed.disconnect(self._apply_made_for)
        if self.settings.get("model") == model:
            for name, value in self.library.made_for(model).items():
                self.settings.set(name, value)

    def save_preferences(self) -> None:
        prefs = self.preferences
        prefs.set_value("window/geometry", self.saveGeometry())
        prefs.set_value("window/state", self.saveState())
        prefs.set_value("generation/last", self.settings.to_json())
        prefs.set_value("canvas/brush_size", self.canvas.brush_size)
        prefs.sync()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        """Save layout and settings, cancel running jobs and join the engine before closing."""
        if not self._closing:
            self._closing = True
            self.save_preferences()
            self.tools.close_all()
            if self.job.busy:
                self.statusBar().showMessage("Stopping the running job…")
            self.bridge.shutdown(timeout=60)
            self.library.shutdown()
            # the undo stack announces its clean-up while child objects are being deleted;
            # nobody may react to that once the window is gone
            self.document.undo_stack.blockSignals(True)
        event.accept()

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self.toast.isVisible():
            self.toast._place()

    # -- drops anywhere in the window go to the canvas -----------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802
        self.canvas.dragEnterEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        self.canvas.dropEvent(event)
