"""The canvas's editing actions: crop and sketch tools, resize, rotate, flip, layer visibility.

Each edit is one undo step in the document (desktop/state/document.py); this module only makes
the window's QActions and puts them where the menus and toolbar find them.
"""

from __future__ import annotations

from PySide6.QtGui import QAction, QColor
from PySide6.QtWidgets import QColorDialog

from desktop.icons import icon
from desktop.widgets.canvas import CROP, SKETCH_ERASER, SKETCH_PEN
from desktop.widgets.resize_dialog import resize_canvas

LAYER_NAMES = (("picture", "Show picture"), ("sketch", "Show sketch layer"), ("mask", "Show mask"))


def install(window) -> None:
    """Create the actions on `window` (as attributes) so build_menus/build_toolbar can use them."""
    doc, canvas, a = window.document, window.canvas, window._action
    window.crop_action = a("Crop", lambda: canvas.set_tool(CROP), "C", checkable=True)
    window.crop_action.setToolTip("Crop: drag the rectangle to keep (Esc cancels)")
    window.sketch_action = a("Sketch", lambda: canvas.set_tool(SKETCH_PEN), "K", checkable=True)
    window.sketch_action.setToolTip("Draw on the sketch layer (a guide for the next picture)")
    window.sketch_eraser_action = a(
        "Erase sketch", lambda: canvas.set_tool(SKETCH_ERASER), "Shift+K", checkable=True
    )
    window.sketch_colour_action = a("Sketch colour…", lambda: _choose_colour(window))
    window.clear_sketch_action = a("Clear sketch", doc.clear_sketch)
    window.resize_action = a("Resize canvas…", lambda: resize_canvas(window), "Ctrl+Alt+I")
    window.rotate_right_action = a("Rotate 90° right", lambda: doc.rotate(90), "Ctrl+R")
    window.rotate_left_action = a("Rotate 90° left", lambda: doc.rotate(-90), "Ctrl+Shift+R")
    window.rotate_half_action = a("Rotate 180°", lambda: doc.rotate(180))
    window.flip_h_action = a("Flip horizontally", lambda: doc.flip(True))
    window.flip_v_action = a("Flip vertically", lambda: doc.flip(False))
    window.crop_action.setIcon(icon("crop"))
    window.sketch_action.setIcon(icon("sketch"))
    window.rotate_right_action.setIcon(icon("rotate"))
    window.rotate_right_action.setIconText("Rotate")
    window.layer_actions = {"mask": window.show_mask_action}  # M, as before
    for layer, text in LAYER_NAMES:
        if layer in window.layer_actions:
            continue
        action = QAction(text, window)
        action.setCheckable(True)
        action.setChecked(True)
        action.toggled.connect(lambda on, name=layer: canvas.set_layer_visible(name, on))
        window.layer_actions[layer] = action
    canvas.tool_changed.connect(lambda tool: _tool_changed(window, tool))


def _tool_changed(window, tool: str) -> None:
    window.crop_action.setChecked(tool == CROP)
    window.sketch_action.setChecked(tool == SKETCH_PEN)
    window.sketch_eraser_action.setChecked(tool == SKETCH_ERASER)


def _choose_colour(window) -> None:
    colour = QColorDialog.getColor(window.canvas.sketch_colour, window, "Sketch colour")
    if colour.isValid():
        window.canvas.set_sketch_colour(QColor(colour))
        window.canvas.set_tool(SKETCH_PEN)


def add_to_canvas_menu(window, menu) -> None:
    menu.addSeparator()
    menu.addActions([window.crop_action, window.resize_action])
    rotate = menu.addMenu("Rotate and flip")
    rotate.addActions(
        [
            window.rotate_right_action,
            window.rotate_left_action,
            window.rotate_half_action,
            window.flip_h_action,
            window.flip_v_action,
        ]
    )
    menu.addSeparator()
    menu.addActions([window.sketch_action, window.sketch_eraser_action])
    menu.addActions([window.sketch_colour_action, window.clear_sketch_action])
    layers = menu.addMenu("Layers")
    layers.addActions(list(window.layer_actions.values()))
