"""Settings a model is made for, filled into a request where the user left them to the model.

A request names the fields to take from the model in `extras["model_defaults"]` (a list of
"steps", "guidance_scale", "sampler", or true for all three); the app and the CLI send that
for fields the user did not set. Whatever the user set stays: that is the override. The
request stored with each image holds the values actually used, so "reuse settings" replays
them exactly.
"""

from __future__ import annotations

from engine.api import GenerationRequest
from engine.errors import InputError

FIELDS = ("steps", "guidance_scale", "sampler")


def requested_fields(request: GenerationRequest) -> tuple[str, ...]:
    wanted = request.extras.get("model_defaults")
    if wanted in (None, False, [], ()):
        return ()
    if wanted is True:
        return FIELDS
    if not isinstance(wanted, (list, tuple)) or not set(wanted) <= set(FIELDS):
        raise InputError(
            f"extras.model_defaults must be true or a list of {', '.join(FIELDS)} (got {wanted!r})."
        )
    return tuple(wanted)


def apply_model_defaults(request: GenerationRequest, defaults) -> GenerationRequest:
    """`request` with the fields it leaves to the model set from `defaults` (a StepDefaults or
    None); the `model_defaults` marker is removed, so the stored request is concrete."""
    fields = requested_fields(request)
    if not fields:
        return request
    extras = {k: v for k, v in request.extras.items() if k != "model_defaults"}
    if defaults is None:
        return request.replace(extras=extras)
    changes = {name: getattr(defaults, name) for name in fields}
    return request.replace(extras=extras, **changes)
