"""`BatchRequest`: run a whole batch spec as one engine job (the CLI's local mode and the
desktop Batch dialog). Importable without torch, like engine.api."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from engine.api import RuntimeOptions, Serialisable, register_request_type
from engine.errors import InputError


@register_request_type
@dataclass(frozen=True)
class BatchRequest(Serialisable):
    """Make every image of `spec` into `out_dir`, skipping what its manifest already holds.

    `runtime` replaces each request's runtime options (where this machine runs them: the spec
    says what to make, not on which device). `add_to_gallery` also keeps each image in the
    gallery, as the desktop app does for its own batches.
    """

    type_name: ClassVar[str] = "batch"

    spec: str = ""
    out_dir: str = ""
    add_to_gallery: bool = False
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)

    _decoders: ClassVar[dict] = {
        "runtime": lambda v: RuntimeOptions.from_dict(v) if isinstance(v, dict) else v,
    }

    def __post_init__(self):
        if not self.spec.strip():
            raise InputError("Choose a batch spec: a .jsonl file of requests or a .toml grid.")
        if not self.out_dir.strip():
            raise InputError("Choose an output folder for the batch (-o OUTDIR).")
