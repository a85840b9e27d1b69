"""The main window's menus and canvas toolbar, built from the window's actions."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QLabel, QSlider, QToolBar, QToolButton

from desktop.canvas_edits import add_to_canvas_menu

#: Tools menu entries hosted here, written elsewhere: (menu text, module, class)
HOSTED_TOOLS = (
    ("Batch generation…", "desktop.widgets.batch_dialog", "BatchDialog"),
    ("Train a model…", "desktop.widgets.train_dialog", "TrainDialog"),
    ("Evaluate images…", "desktop.widgets.evaluate_panel", "EvaluatePanel"),
    ("Latent explorer…", "desktop.widgets.latent_explorer", "LatentExplorer"),
)


def build_menus(window) -> None:
    """File, Edit, Canvas, Generate, Models, Tools (hosted dialogs) and View menus."""
    bar = window.menuBar()
    file_menu = bar.addMenu("&File")
    file_menu.addActions([window.open_action, window.save_action])
    file_menu.addSeparator()
    file_menu.addAction(window.quit_action)
    edit = bar.addMenu("&Edit")
    edit.addActions([window.undo_action, window.redo_action])
    edit.addSeparator()
    edit.addActions([window.copy_action, window.paste_action])
    edit.addSeparator()
    edit.addAction(window.settings_action)
    canvas = bar.addMenu("&Canvas")
    canvas.addActions(
        [window.brush_action, window.eraser_action, window.smaller_action, window.bigger_action]
    )
    canvas.addSeparator()
    canvas.addActions(
        [window.clear_mask_action, window.invert_mask_action, window.show_mask_action]
    )
    canvas.addSeparator()
    canvas.addActions(
        [window.fit_action, window.actual_action, window.zoom_in_action, window.zoom_out_action]
    )
    canvas.addSeparator()
    canvas.addAction(window.extend_action)
    add_to_canvas_menu(window, canvas)
    canvas.addSeparator()
    canvas.addAction(window.upscale_canvas_action)
    canvas.addSeparator()
    canvas.addActions([window.describe_action, window.interrogate_action])
    generate = bar.addMenu("&Generate")
    generate.addActions([window.generate_action, window.cancel_action])
    generate.addSeparator()
    generate.addAction(window.expand_action)
    models = bar.addMenu("&Models")
    models.addAction(window.models_action)
    tools = bar.addMenu("&Tools")
    for text, module, class_name in HOSTED_TOOLS:
        action = QAction(text, window)
        action.triggered.connect(lambda _=False, m=module, c=class_name: window.open_tool(m, c))
        tools.addAction(action)
    view = bar.addMenu("&View")
    view.addActions([window.prompt_dock.toggleViewAction(), window.gallery_dock.toggleViewAction()])


def build_toolbar(window) -> None:
    """The canvas toolbar: undo/redo, brush/eraser and size, mask and zoom tools, outpaint."""
    bar = QToolBar("Canvas")
    bar.setObjectName("canvas-toolbar")
    bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    window.addToolBar(Qt.ToolBarArea.TopToolBarArea, bar)
    for action in (window.undo_action, window.redo_action):
        # icon only: their text names the edit ("Undo Paint mask") and would jump around
        button = QToolButton()
        button.setDefaultAction(action)
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        bar.addWidget(button)
    bar.addSeparator()
    bar.addActions([window.brush_action, window.eraser_action, window.sketch_action])
    window.size_slider = QSlider(Qt.Orientation.Horizontal)
    window.size_slider.setRange(2, 300)
    window.size_slider.setFixedWidth(140)
    window.size_slider.setValue(window.canvas.brush_size)
    window.size_slider.setToolTip("Brush size ([ and ])")
    window.size_label = QLabel(f" {window.canvas.brush_size} px ")
    window.size_label.setMinimumWidth(52)
    bar.addWidget(QLabel(" Size "))
    bar.addWidget(window.size_slider)
    bar.addWidget(window.size_label)
    bar.addActions([window.clear_mask_action, window.invert_mask_action])
    bar.addSeparator()
    bar.addActions([window.fit_action, window.actual_action])
    bar.addSeparator()
    bar.addActions([window.crop_action, window.rotate_right_action, window.extend_action])
