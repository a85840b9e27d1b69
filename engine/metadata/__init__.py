"""Generation metadata in image files: written the way other apps read it, read from theirs.

Written (`writer`): A1111's `parameters` text exactly as A1111 1.10 lays it out, and Easel's
own `easel` chunk holding the full request as JSON, which is what "reproduce" uses.

Read (`detect`): Easel, AUTOMATIC1111 (PNG text, JPEG/WebP EXIF, stealth alpha), ComfyUI
(prompt graph or workflow), InvokeAI (3.x+, sd-metadata, Dream), Fooocus and NovelAI, each
told by its own signature. Chunks are read without decoding pixels (`chunks`), sizes and JSON
nesting are bounded, and damaged data gives an `EaselError`, never a crash. What a file does
not hold stays unknown; what Easel cannot run as written is kept and explained (`common`).
No torch here: the app imports this at start-up.
"""

from engine.metadata.a1111 import parse_a1111
from engine.metadata.chunks import MetadataError, read_image_text
from engine.metadata.comfyui import parse_comfyui
from engine.metadata.common import ImportedSettings, build_imported
from engine.metadata.detect import read_generation_metadata, read_image_settings, read_png_text
from engine.metadata.easel import parse_easel
from engine.metadata.fooocus import parse_fooocus
from engine.metadata.invokeai import parse_dream, parse_invokeai, parse_sd_metadata
from engine.metadata.novelai import parse_novelai
from engine.metadata.writer import (
    A1111_KEY,
    EASEL_KEY,
    VERSION,
    a1111_parameters,
    save_png_with_metadata,
)

__all__ = [
    "A1111_KEY",
    "EASEL_KEY",
    "VERSION",
    "ImportedSettings",
    "MetadataError",
    "a1111_parameters",
    "build_imported",
    "parse_a1111",
    "parse_comfyui",
    "parse_dream",
    "parse_easel",
    "parse_fooocus",
    "parse_invokeai",
    "parse_novelai",
    "parse_sd_metadata",
    "read_generation_metadata",
    "read_image_settings",
    "read_image_text",
    "read_png_text",
    "save_png_with_metadata",
]
