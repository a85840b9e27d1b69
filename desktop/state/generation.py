"""What the user has set up for the next generation: prompt, model, sampler, size, seed...

A plain table of named values with one `changed(name)` signal. Widgets show a value and write
it back with `set`; the main window snapshots it into one frozen `GenerationRequest` with
`to_request`. `apply_request` restores settings from a gallery entry or a dropped PNG.
"""

from __future__ import annotations

import json
import random
from collections.abc import Collection
from typing import Any

from PySide6.QtCore import QObject, Signal

from engine.api import (
    MAX_SEED,
    SAMPLERS,
    TOKEN_SAMPLERS,
    GenerationRequest,
    LoraRef,
    Mode,
    RuntimeOptions,
)
from engine.library.builtin_choice import default_model

#: the built-in that measured best (its quality.json), what a first launch starts with
DEFAULT_MODEL = default_model()

SIZE_PRESETS: tuple[tuple[str, int, int], ...] = (
    ("Square 512", 512, 512),
    ("Portrait 512x768", 512, 768),
    ("Landscape 768x512", 768, 512),
    ("Square 768", 768, 768),
    ("Square 1024 (SDXL)", 1024, 1024),
    ("Small 256", 256, 256),
    ("Emoji 64", 64, 64),
)

#: name -> default. Everything a user can set for one generation.
DEFAULTS: dict[str, Any] = {
    "prompt": "",
    "negative_prompt": "",
    "model": DEFAULT_MODEL,
    "mode": Mode.TXT2IMG.value,
    "sampler": "Euler a",
    "steps": 20,
    "guidance_scale": 7.0,
    "seed": 0,
    "seed_mode": "random",  # "random" draws a new seed per job, "fixed" uses `seed`
    "width": 512,
    "height": 512,
    "batch_size": 1,
    "strength": 0.75,
    "loras": [],  # [[path, weight], ...]
    "style": "",  # a style preset's name (engine.prompting.styles), "" for none
    #: how far an unfamiliar prompt is pulled to the concepts a built-in knows (engine.text.
    #: concepts), 0..1; None for models without known concepts (nothing is sent)
    "concept_strength": None,
    #: how far sampling is pushed away from a built-in's weaker copy (engine.families.
    #: autoguide), 1 (off) ..5; None for models without one (nothing is sent)
    "autoguidance": None,
}
#: the range a stored or reused autoguidance must be in (engine.families.autoguide.MAX_SCALE)
AUTOGUIDANCE_RANGE = (1.0, 5.0)


class GenerationSettings(QObject):
    changed = Signal(str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._values: dict[str, Any] = dict(DEFAULTS)
        self._values["loras"] = []
        self.last_seed: int | None = None

    def get(self, name: str) -> Any:
        return self._values[name]

    def set(self, name: str, value: Any) -> None:
        if name not in DEFAULTS:
            raise KeyError(name)
        if name == "sampler" and value not in SAMPLERS + TOKEN_SAMPLERS:
            return
        if self._values.get(name) == value:
            return
        self._values[name] = value
        self.changed.emit(name)

    @property
    def mode(self) -> Mode:
        return Mode(self._values["mode"])

    def next_seed(self) -> int:
        if self._values["seed_mode"] == "fixed":
            return int(self._values["seed"])
        return random.randint(0, MAX_SEED)

    def reuse_last_seed(self) -> bool:
        """Fix the seed to the one the last job used. False when nothing ran yet."""
        if self.last_seed is None:
            return False
        self.set("seed", self.last_seed)
        self.set("seed_mode", "fixed")
        return True

    def to_request(
        self,
        *,
        init_image: str | None = None,
        mask_image: str | None = None,
        size: tuple[int, int] | None = None,
        runtime: RuntimeOptions | None = None,
        mode: Mode | None = None,
    ) -> GenerationRequest:
        """Snapshot into a frozen request (raises InputError with the engine's message);
        `mode` overrides the chosen Mode (live painting picks its own).

        Wildcards (`__colour__`) are expanded from the seed, then the chosen style is applied
        on top; `extras` keeps the template, the style's name and the user's own text so
        "reuse settings" restores what the user typed."""
        v = self._values
        width, height = size or (v["width"], v["height"])
        seed = self.next_seed()
        typed, typed_negative = v["prompt"], v["negative_prompt"]
        expanded = expand_wildcards(typed, seed)
        expanded_negative = expand_wildcards(typed_negative, seed + 1)
        prompt, negative, extras = styled_prompts(expanded, expanded_negative, v["style"])
        if expanded != typed or expanded_negative != typed_negative:
            extras = {**extras, "prompt_template": typed, "negative_template": typed_negative}
        if v["concept_strength"] is not None:
            extras = {**extras, "concept_strength": float(v["concept_strength"])}
        if v["autoguidance"] is not None:
            extras = {**extras, "autoguidance": float(v["autoguidance"])}
        return GenerationRequest(
            prompt=prompt,
            negative_prompt=negative,
            model=v["model"],
            mode=Mode(v["mode"]) if mode is None else mode,
            seed=seed,
            steps=int(v["steps"]),
            guidance_scale=float(v["guidance_scale"]),
            sampler=v["sampler"],
            width=int(width),
            height=int(height),
            batch_size=int(v["batch_size"]),
            strength=float(v["strength"]),
            init_image=init_image,
            mask_image=mask_image,
            loras=tuple(LoraRef(path=p, weight=float(w)) for p, w in v["loras"]),
            extras=extras,
            runtime=runtime or RuntimeOptions(),
        )

    def apply_request(
        self,
        request: GenerationRequest,
        *,
        include_model: bool = True,
        only: Collection[str] | None = None,
    ) -> None:
        """Restore what made an image (prompt, sampler, seed, size...). Mode stays as it is:
        the images a request named are working files that may be gone. `only`: the request
        fields to restore (what another app's metadata really holds); the rest stay."""
        if only is not None:
            self._apply_fields(request, set(only), include_model)
            return
        extras = request.extras or {}
        if isinstance(extras.get("prompt_template"), str):
            # wildcards: the template comes back; the same seed draws the same choices again
            self.set("prompt", extras["prompt_template"])
            self.set("negative_prompt", str(extras.get("negative_template", "")))
            self.set("style", str(extras.get("style", "")))
            self._apply_numbers(request, include_model)
            return
        style = extras.get("style")
        if isinstance(style, str) and style:
            # the user's own text and the style, not the styled prompt (no double styling)
            self.set("prompt", str(extras.get("user_prompt", request.prompt)))
            self.set("negative_prompt", str(extras.get("user_negative", request.negative_prompt)))
            self.set("style", style)
        else:
            self.set("prompt", request.prompt)
            self.set("negative_prompt", request.negative_prompt)
            self.set("style", "")
        self._apply_numbers(request, include_model)

    def _apply_numbers(self, request: GenerationRequest, include_model: bool) -> None:
        if include_model and request.model:
            self.set("model", request.model)
        self.set("sampler", request.sampler)
        self.set("steps", request.steps)
        self.set("guidance_scale", request.guidance_scale)
        self.set("seed", request.seed)
        self.set("seed_mode", "fixed")
        self.set("width", request.width)
        self.set("height", request.height)
        self.set("batch_size", request.batch_size)
        self.set("strength", request.strength)
        self.set("loras", [[lora.path, lora.weight] for lora in request.loras])
        if "concept_strength" in (request.extras or {}):
            self.set("concept_strength", float(request.extras["concept_strength"]))
        if "autoguidance" in (request.extras or {}):
            self.set("autoguidance", float(request.extras["autoguidance"]))

    def _apply_fields(self, request: GenerationRequest, fields: set[str], include_model: bool):
        simple = ("prompt", "negative_prompt", "sampler", "steps", "guidance_scale", "width",
                  "height", "batch_size", "strength")  # fmt: skip
        for name in simple:
            if name in fields:
                self.set(name, getattr(request, name))
        if "prompt" in fields:
            self.set("style", "")  # another app's prompt is already the full text
        if include_model and "model" in fields and request.model:
            self.set("model", request.model)
        if "seed" in fields:
            self.set("seed", request.seed)
            self.set("seed_mode", "fixed")
        if "loras" in fields:
            self.set("loras", [[lora.path, lora.weight] for lora in request.loras])

    # -- persistence (QSettings stores one JSON string) --------------------------------------
    def to_json(self) -> str:
        return json.dumps(self._values)

    def load_json(self, text: str | None) -> None:
        """Restore saved settings, ignoring unknown or mistyped values."""
        try:
            data = json.loads(text or "{}")
        except json.JSONDecodeError:
            return
        if not isinstance(data, dict):
            return
        for name, default in DEFAULTS.items():
            value = data.get(name, default)
            if isinstance(default, float) and isinstance(value, int):
                value = float(value)
            if name == "mode" and value not in {m.value for m in Mode}:
                continue
            if name == "concept_strength":  # None (no known concepts) or a share 0..1
                if value is None or (isinstance(value, (int, float)) and 0 <= value <= 1):
                    self.set(name, None if value is None else float(value))
                continue
            if name == "autoguidance":  # None (no weaker copy) or a scale in range
                low, high = AUTOGUIDANCE_RANGE
                if value is None or (isinstance(value, (int, float)) and low <= value <= high):
                    self.set(name, None if value is None else float(value))
                continue
            if type(value) is type(default):
                self.set(name, value)


def expand_wildcards(text: str, seed: int) -> str:
    from engine.prompting.wildcards import expand

    return expand(text, seed % (MAX_SEED + 1))


def styled_prompts(prompt: str, negative: str, style: str) -> tuple[str, str, dict]:
    """(prompt, negative, extras) with `style` applied; no style leaves the text as typed.
    An unknown style (a renamed user style) raises InputError naming it."""
    if not style:
        return prompt, negative, {}
    from engine.prompting.styles import apply_style

    styled, styled_negative = apply_style(style, prompt, negative)
    extras = {"style": style, "user_prompt": prompt, "user_negative": negative}
    return styled, styled_negative, extras
