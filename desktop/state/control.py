"""What steers the next generation beyond the prompt: ControlNet units, image prompts (IP-Adapter),
regional prompts and the hires fix (the request contract is engine/api_control.py).

The Control panel binds to this state; Generate asks `steering()` for the request's `control`,
`image_prompts`, `regions` and `hires` on the GUI thread. A unit's control image comes from a
file (chosen or dropped), the picture on the canvas, or the canvas's sketch layer; the canvas
and sketch are written to PNGs at Generate time, so drawing a scribble and pressing Generate is
the whole flow. Those PNGs are kept in `<data>/control`, named by their content: the request in
the gallery and in the PNG metadata names them, so "reuse settings" finds them again (the same
sketch sent twice is one file).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QObject, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter

from desktop.state.document import CanvasDocument
from desktop.state.regions import RegionLayers
from engine.api import GenerationRequest
from engine.api_control import (
    HIRES_UPSCALERS_LATENT,
    MAX_CONTROL_UNITS,
    MAX_IMAGE_PROMPTS,
    ControlUnit,
    HiresFix,
    ImagePrompt,
    Region,
)
from engine.errors import InputError
from engine.paths import user_data_dir

#: the control-map thumbnail is computed at this size (the thumbnail itself is 96 px)
MAP_PREVIEW_SIDE = 128

SOURCE_SKETCH, SOURCE_CANVAS, SOURCE_FILE = "sketch", "canvas", "file"
SOURCES = (SOURCE_SKETCH, SOURCE_CANVAS, SOURCE_FILE)
SOURCE_LABELS = {
    SOURCE_SKETCH: "Sketch layer",
    SOURCE_CANVAS: "Canvas picture",
    SOURCE_FILE: "File",
}
#: the preprocessor a new unit starts with for each source: strokes are a scribble already
SOURCE_PREPROCESSOR = {SOURCE_SKETCH: "scribble", SOURCE_CANVAS: "canny", SOURCE_FILE: "canny"}


@dataclass
class UnitState:
    """One ControlNet unit as the panel edits it (the request's ControlUnit is built from it)."""

    model: str = ""
    preprocessor: str = "scribble"
    weight: float = 1.0
    start: float = 0.0
    end: float = 1.0
    guess_mode: bool = False
    source: str = SOURCE_SKETCH
    #: the control image for SOURCE_FILE (a chosen or dropped file, or one restored)
    image_path: str = ""
    options: dict | None = None


@dataclass
class ImagePromptState:
    image_path: str
    weight: float = 0.6
    model: str = ""


@dataclass
class HiresState:
    enabled: bool = False
    scale: float = 2.0
    strength: float = 0.5
    upscaler: str = HIRES_UPSCALERS_LATENT
    steps: int = 0

    def to_request(self) -> HiresFix | None:
        if not self.enabled:
            return None
        return HiresFix(
            scale=self.scale, strength=self.strength, upscaler=self.upscaler, steps=self.steps
        )


@dataclass(frozen=True)
class Steering:
    """The request fields the Control panel sets, and what the user should know about them."""

    control: tuple[ControlUnit, ...] = ()
    image_prompts: tuple[ImagePrompt, ...] = ()
    regions: tuple[Region, ...] = ()
    hires: HiresFix | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def control_dir() -> Path:
    path = user_data_dir() / "control"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_control_image(image: QImage, kind: str) -> Path:
    """Write `image` as a PNG named by its content (`<kind>-<hash>.png`) and return the path."""
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG", 90):
        raise InputError(f"Could not encode the {kind} image for the control unit.")
    buffer.close()
    payload = bytes(data.data())
    path = control_dir() / f"{kind}-{hashlib.sha256(payload).hexdigest()[:16]}.png"
    if not path.exists():
        try:
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(payload)
            tmp.replace(path)
        except OSError as exc:
            raise InputError(
                f"Could not write the control image to {path.parent}: {exc.strerror or exc}. "
                "Is the disk full?"
            ) from None
    return path


def sketch_as_scribble(sketch: QImage) -> QImage:
    """The sketch layer flattened onto black: the strokes as they are (white on black), what a
    scribble ControlNet reads."""
    flat = QImage(sketch.size(), QImage.Format.Format_RGB32)
    flat.fill(QColor(0, 0, 0))
    painter = QPainter(flat)
    painter.drawImage(0, 0, sketch)
    painter.end()
    return flat


class ControlState(QObject):
    """Units, image prompts and the hires fix; regions live in `regions` (canvas layers)."""

    units_changed = Signal()  # a unit added or removed (rebuild the cards)
    unit_changed = Signal(int)  # a unit's fields changed
    image_prompts_changed = Signal()
    hires_changed = Signal()

    def __init__(self, document: CanvasDocument, parent: QObject | None = None):
        super().__init__(parent)
        self.document = document
        self.regions = RegionLayers(document, self)
        self.units: list[UnitState] = []
        self.image_prompts: list[ImagePromptState] = []
        #: the IP-Adapter every image prompt uses ("": the library's one for the model's base)
        self.image_prompt_model = ""
        self.hires = HiresState()

    # -- units ------------------------------------------------------------------------------
    def add_unit(self, source: str = SOURCE_SKETCH, model: str = "") -> UnitState | None:
        if len(self.units) >= MAX_CONTROL_UNITS:
            return None
        unit = UnitState(model=model, source=source, preprocessor=SOURCE_PREPROCESSOR[source])
        self.units.append(unit)
        self.units_changed.emit()
        return unit

    def remove_unit(self, index: int) -> None:
        if 0 <= index < len(self.units):
            del self.units[index]
            self.units_changed.emit()

    def set_unit(self, index: int, **changes) -> None:
        if not 0 <= index < len(self.units):
            return
        unit = self.units[index]
        updated = replace(unit, **changes)
        if updated != unit:
            self.units[index] = updated
            self.unit_changed.emit(index)

    def use_file(self, index: int, path: str) -> None:
        """A file chosen or dropped on a unit's thumbnail becomes its control image."""
        self.set_unit(index, source=SOURCE_FILE, image_path=str(path))

    # -- image prompts and hires --------------------------------------------------------------
    def add_image_prompt(self, path: str, weight: float = 0.6) -> bool:
        if len(self.image_prompts) >= MAX_IMAGE_PROMPTS:
            return False
        self.image_prompts.append(
            ImagePromptState(str(path), float(weight), self.image_prompt_model)
        )
        self.image_prompts_changed.emit()
        return True

    def set_image_prompt_model(self, model: str) -> None:
        """One IP-Adapter for every reference (the engine runs one image encoder per job)."""
        self.image_prompt_model = str(model)
        for prompt in self.image_prompts:
            prompt.model = self.image_prompt_model
        self.image_prompts_changed.emit()

    def remove_image_prompt(self, index: int) -> None:
        if 0 <= index < len(self.image_prompts):
            del self.image_prompts[index]
            self.image_prompts_changed.emit()

    def set_image_prompt_weight(self, index: int, weight: float) -> None:
        if 0 <= index < len(self.image_prompts):
            self.image_prompts[index].weight = float(weight)
            self.image_prompts_changed.emit()

    def set_hires(self, **changes) -> None:
        updated = replace(self.hires, **changes)
        if updated != self.hires:
            self.hires = updated
            self.hires_changed.emit()

    def is_empty(self) -> bool:
        return not (self.units or self.image_prompts or self.regions.regions or self.hires.enabled)

    # -- Generate: the request's steering fields ----------------------------------------------
    def control_image(self, unit: UnitState) -> QImage | None:
        """What the unit's thumbnail shows and what is sent (None: nothing there yet)."""
        if unit.source == SOURCE_SKETCH:
            sketch = self.document.sketch
            return sketch_as_scribble(sketch) if sketch is not None else None
        if unit.source == SOURCE_CANVAS:
            return self.document.image
        if unit.image_path and Path(unit.image_path).is_file():
            image = QImage(unit.image_path)
            return None if image.isNull() else image
        return None

    def map_preview(self, unit: UnitState, side: int = MAP_PREVIEW_SIDE) -> tuple:
        """(thumbnail image or None, note): the unit's control map as its ControlNet will read
        it, made from a `side`-pixel copy of the control image (a few ms: the numpy
        preprocessors, never a model), so the thumbnail shows edges, lines or strokes rather
        than the source; the note says when that map is empty. Depth needs a model: the engine
        makes that map, and the thumbnail keeps the source picture."""
        image = self.control_image(unit)
        if image is None or unit.preprocessor in ("none", "depth"):
            return image, ""
        import numpy as np

        from desktop.images import pil_to_qimage, qimage_to_pil
        from engine.sd.preprocess import run_preprocessor

        small = image.scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio)
        try:
            result = run_preprocessor(unit.preprocessor, qimage_to_pil(small), unit.options)
        except InputError:  # bad thresholds: the request says so at Generate
            return image, ""
        empty = int(np.asarray(result.convert("L")).max()) < 32
        note = f"The {unit.preprocessor} map of this picture is empty." if empty else ""
        return pil_to_qimage(result), note

    def steering(self, reads_control: str = "") -> Steering:
        """Build the request fields (raises InputError naming the unit and the fix). Writes
        the sketch, canvas and region masks to PNGs in `control_dir()`. `reads_control`: the
        title of a model that reads one control image itself (FLUX.1 Canny / Depth)."""
        if reads_control:
            return self._own_control_steering(reads_control)
        notes: list[str] = []
        units = tuple(self._unit_request(i, unit) for i, unit in enumerate(self.units))
        prompts = tuple(self._image_prompt_request(i, p) for i, p in enumerate(self.image_prompts))
        regions = []
        for number, region in enumerate(self.regions.regions, 1):
            if region.is_empty():
                notes.append(f"Region {number} has no painted area: it was not sent.")
                continue
            path = save_control_image(region.mask, "region")
            regions.append(Region(mask=str(path), prompt=region.prompt, weight=region.weight))
        return Steering(units, prompts, tuple(regions), self.hires.to_request(), tuple(notes))

    def _own_control_steering(self, title: str) -> Steering:
        """The first unit's picture and preprocessor, at full strength over every step with no
        ControlNet (what such a model reads); the rest stays in the panel, unsent, with a
        note."""
        units: tuple[ControlUnit, ...] = ()
        if self.units:
            unit = self._unit_request(0, self.units[0], needs_model=False)
            whole = dict(model="", weight=1.0, start=0.0, end=1.0, guess_mode=False)
            units = (unit.replace(**whole),)
        notes = []
        if len(self.units) > 1:
            notes.append(f"{title} reads one control image: only unit 1 was sent.")
        unused = [
            name
            for name, used in (
                ("image prompts", self.image_prompts),
                ("regional prompts", self.regions.regions),
                ("the hires fix", self.hires.enabled),
            )
            if used
        ]
        if unused:
            notes.append(f"{title} does not use {' or '.join(unused)}: not sent.")
        return Steering(control=units, notes=tuple(notes))

    def _unit_request(self, index: int, unit: UnitState, needs_model: bool = True) -> ControlUnit:
        name = f"Control unit {index + 1}"
        if needs_model and not unit.model:
            raise InputError(f"{name} has no ControlNet model: choose one in the Control panel.")
        if unit.source == SOURCE_SKETCH:
            if not self.document.has_image():
                raise InputError(
                    f"{name} uses the sketch layer, and there is no canvas to draw on: open or "
                    "generate a picture first, or give the unit a file."
                )
            if not self.document.has_sketch():
                raise InputError(
                    f"{name} uses the sketch layer, which is empty: draw on the canvas with the "
                    "Sketch tool (K), or give the unit a file."
                )
            path = save_control_image(sketch_as_scribble(self.document.sketch), "sketch")
        elif unit.source == SOURCE_CANVAS:
            if not self.document.has_image():
                raise InputError(f"{name} uses the canvas picture, and the canvas is empty.")
            path = save_control_image(self.document.image, "canvas")
        else:
            if not unit.image_path:
                raise InputError(f"{name} has no control image: choose a file or drop one on it.")
            if not Path(unit.image_path).is_file():
                raise InputError(
                    f"{name}'s control image {unit.image_path} is missing: choose it again."
                )
            path = Path(unit.image_path)
        return ControlUnit(
            image=str(path),
            model=unit.model,
            preprocessor=unit.preprocessor,
            weight=unit.weight,
            start=unit.start,
            end=unit.end,
            guess_mode=unit.guess_mode,
            options=unit.options,
        )

    @staticmethod
    def _image_prompt_request(index: int, prompt: ImagePromptState) -> ImagePrompt:
        if not Path(prompt.image_path).is_file():
            raise InputError(
                f"Image prompt {index + 1} ({prompt.image_path}) is missing: remove it or add "
                "the picture again."
            )
        return ImagePrompt(image=prompt.image_path, weight=prompt.weight, model=prompt.model)

    # -- restore (reuse settings, a dropped PNG) ------------------------------------------------
    def apply_request(self, request: GenerationRequest) -> list[str]:
        """Show what steered `request` in the panel. Returns notes on files that are gone
        (their unit, reference or region is kept with the rest of its settings)."""
        notes: list[str] = []
        self.units = []
        for number, unit in enumerate(request.control, 1):
            present = Path(unit.image).is_file()
            if not present:
                notes.append(
                    f"Control unit {number}'s image {Path(unit.image).name} is missing: choose "
                    "it again."
                )
            self.units.append(
                UnitState(
                    model=unit.model,
                    preprocessor=unit.preprocessor,
                    weight=unit.weight,
                    start=unit.start,
                    end=unit.end,
                    guess_mode=unit.guess_mode,
                    source=SOURCE_FILE,
                    image_path=unit.image if present else "",
                    options=unit.options,
                )
            )
        self.units_changed.emit()
        self.image_prompts = []
        for number, prompt in enumerate(request.image_prompts, 1):
            if not Path(prompt.image).is_file():
                notes.append(
                    f"Image prompt {number}'s picture {Path(prompt.image).name} is missing: "
                    "it was left out."
                )
                continue
            self.image_prompts.append(ImagePromptState(prompt.image, prompt.weight, prompt.model))
        if request.image_prompts:
            self.image_prompt_model = request.image_prompts[0].model
        self.image_prompts_changed.emit()
        self._restore_regions(request, notes)
        hires = request.hires
        self.hires = (
            HiresState(True, hires.scale, hires.strength, hires.upscaler, hires.steps)
            if hires
            else replace(self.hires, enabled=False)
        )
        self.hires_changed.emit()
        return notes

    def _restore_regions(self, request: GenerationRequest, notes: list[str]) -> None:
        self.regions.clear()
        for number, region in enumerate(request.regions, 1):
            mask = QImage(region.mask) if Path(region.mask).is_file() else QImage()
            if mask.isNull():
                notes.append(
                    f"Region {number}'s mask {Path(region.mask).name} is missing: paint it "
                    "again (its prompt is kept)."
                )
            self.regions.add(region.prompt, region.weight, mask)
