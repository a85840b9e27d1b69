"""Wires the Control panel into the main window: its dock beside the prompt panel, the region
layers on the canvas and their tools, the steering fields added to every Generate, the gallery's
Vary / Upscale / Hires fix, and restoring control settings with "reuse settings" or a dropped PNG.

Kept out of main_window.py (already long): `install(window)` is called once while the window
is built, after the menus and before the layout is restored.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QImage

from desktop.state.control import SOURCE_SKETCH, ControlState
from desktop.widgets.canvas import SKETCH_PEN
from desktop.widgets.canvas_regions import REGION_ERASER, REGION_PEN, RegionOverlay
from desktop.widgets.control_panel import ControlPanel
from engine.api import GenerationRequest
from engine.history import HistoryEntry
from engine.variations import pick_upscaler

BLANK_CANVAS = QColor(0, 0, 0)  # a scribble is white on black: a blank canvas is black


def install(window) -> None:
    window.control = ControlState(window.document, window)
    window.control_panel = ControlPanel(window.control, window.library, window.settings)
    # no fixed minimum width: the panel asks for what its cards need (nothing is cut off)
    window.control_dock = window._dock(
        "Control", "control", window.control_panel, Qt.DockWidgetArea.LeftDockWidgetArea
    )
    window.tabifyDockWidget(window.prompt_dock, window.control_dock)
    window.prompt_dock.raise_()
    window.region_overlay = RegionOverlay(window.canvas, window.control.regions)
    window.control_panel.tool_requested.connect(lambda tool: choose_tool(window, tool))
    window.generation.extend_request = lambda request: add_steering(window, request)
    _install_region_actions(window)
    _wire_gallery(window)
    window.settings_restored.connect(lambda request, source: restore(window, request, source))
    view = _menu(window, "&View")
    if view is not None:
        view.addAction(window.control_dock.toggleViewAction())


def _menu(window, title: str):
    for action in window.menuBar().actions():
        if action.text() == title:
            return action.menu()
    return None


def _install_region_actions(window) -> None:
    a = window._action
    window.region_action = a(
        "Paint region", lambda: choose_tool(window, REGION_PEN), "R", checkable=True
    )
    window.region_action.setToolTip("Paint the selected region of a regional prompt (R)")
    window.region_eraser_action = a(
        "Erase region", lambda: choose_tool(window, REGION_ERASER), "Shift+R", checkable=True
    )
    window.show_regions_action = a(
        "Show regions", window.region_overlay.set_visible, None, checkable=True
    )
    window.show_regions_action.setChecked(True)
    canvas_menu = _menu(window, "&Canvas")
    if canvas_menu is not None:
        canvas_menu.addSeparator()
        canvas_menu.addActions(
            [window.region_action, window.region_eraser_action, window.show_regions_action]
        )

    def tool_changed(tool: str) -> None:
        window.region_action.setChecked(tool == REGION_PEN)
        window.region_eraser_action.setChecked(tool == REGION_ERASER)

    window.canvas.tool_changed.connect(tool_changed)


def choose_tool(window, tool: str) -> None:
    """Switch the canvas tool; a sketch or region needs a picture to draw on, so an empty
    canvas gets a blank one at the size set (drawing a scribble on nothing is the flow)."""
    if tool in (SKETCH_PEN, REGION_PEN) and not window.document.has_image():
        width, height = int(window.settings.get("width")), int(window.settings.get("height"))
        blank = QImage(width, height, QImage.Format.Format_ARGB32)
        blank.fill(BLANK_CANVAS)
        window.document.set_image(blank, "New blank canvas")
    if tool == REGION_PEN and window.control.regions.active() is None:
        window.control.regions.add()
    window.canvas.set_tool(tool)
    window.canvas.setFocus()


def add_steering(window, request: GenerationRequest) -> GenerationRequest:
    """The request with what the Control panel sets; nothing is added for a model that cannot
    be steered (the panel says so and keeps the settings)."""
    control: ControlState = window.control
    caps = window.library.capabilities(request.model)
    if control.is_empty() or not caps.control:
        return request
    steering = control.steering(caps.reads_control)
    for note in steering.notes:
        window.show_message(note, "info")
    return request.replace(
        control=steering.control,
        image_prompts=steering.image_prompts,
        regions=steering.regions,
        hires=steering.hires,
    )


def restore(window, request: GenerationRequest, source: str) -> None:
    """Reuse settings / a dropped PNG: Easel's own request restores the panel as it was
    (steering included or cleared); another app's only when it carries steering."""
    steered = request.control or request.image_prompts or request.regions or request.hires
    if source != "Easel" and not steered:
        return
    notes = window.control.apply_request(request)
    if notes:
        window.show_message("Settings restored; " + " ".join(notes), "error")
    if steered:
        window.control_dock.raise_()


# -- gallery -----------------------------------------------------------------------------------
def _wire_gallery(window) -> None:
    g, generation = window.gallery_panel, window.generation
    g.vary_strong_requested.connect(lambda e: generation.vary(e, "strong"))
    g.upscale_x2_requested.connect(lambda e: upscale_by(window, e, 2))
    g.upscale_x4_requested.connect(lambda e: upscale_by(window, e, 4))
    g.hires_requested.connect(lambda e: hires_entry(window, e))


def upscale_by(window, entry: HistoryEntry, factor: int):
    """Upscale ×2 / ×4 with the library's upscaler model (Lanczos when there is none)."""
    upscalers = [(m.reference, 0) for m in window.library.of_kind("upscaler") if m.status == "ok"]
    return window.generation.upscale(entry, pick_upscaler(upscalers, factor), float(factor))


def hires_entry(window, entry: HistoryEntry):
    """Hires fix of a result with the Control panel's hires settings (its defaults if off)."""
    hires = window.control.hires
    return window.generation.hires(
        entry,
        scale=hires.scale,
        strength=hires.strength,
        upscaler=hires.upscaler,
        steps=hires.steps,
    )


def sketch_unit(window, model: str = ""):
    """Add a scribble unit reading the sketch layer and switch to the Sketch tool."""
    unit = window.control.add_unit(SOURCE_SKETCH, model=model)
    if unit is not None:
        choose_tool(window, SKETCH_PEN)
    return unit
