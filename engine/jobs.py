"""Routes each request to the code that runs it. Handlers are imported lazily (torch loads on
the first job, not when the app starts).

A handler is `handler(request, ctx) -> engine.events.Result`. It may raise EaselError for a
user-facing failure and JobCancelled when `ctx.check_cancelled()` fires.
"""

from __future__ import annotations

import importlib
from typing import Any

from engine.context import JobContext
from engine.errors import InputError
from engine.events import Result

#: request class name -> "module:function". One line per job type.
HANDLERS: dict[str, Any] = {
    "GenerationRequest": "engine.generate:run_generation",
    "TrainingRequest": "engine.training.runner:run_training",
    "EvaluateRequest": "engine.metrics.evaluate:run_evaluate",
    "ClipScoreRequest": "engine.metrics.clip_score:run_clip_score",
    "CaptionRequest": "engine.vision.caption:run_caption",
    "InterrogateRequest": "engine.vision.interrogate:run_interrogate",
    "ExpandPromptRequest": "engine.prompting.expand:run_expand",
    "UpscaleRequest": "engine.upscale:run_upscale",
    "DownloadRequest": "engine.library.download:run_download",
    "ScanLibraryRequest": "engine.library.scan:run_scan",
    "BatchRequest": "engine.batch.local:run_batch",
    "PreviewDecoderRequest": "engine.sd.preview_job:run_preview_decoder",
}


def register_handler(request_type: type, target: Any) -> None:
    """Route `request_type` to a "module:function" string or a callable (tests use this)."""
    HANDLERS[request_type.__name__] = target


def run_request(request: Any, ctx: JobContext) -> Result:
    target = HANDLERS.get(type(request).__name__)
    if target is None:
        raise InputError(f"The engine cannot run a {type(request).__name__}.")
    if callable(target):
        return target(request, ctx)
    module_name, func_name = target.split(":")
    handler = getattr(importlib.import_module(module_name), func_name)
    return handler(request, ctx)
