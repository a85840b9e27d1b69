"""Build one diffusers pipeline class from another pipeline's modules, sharing every module.

diffusers' own `Pipeline.from_pipe` does this, and then calls `new_pipeline.to(dtype=...)`
with float32 when no dtype is given (diffusers 0.42, installed here). Every module is shared,
so that cast converts the cached model itself: one img2img, inpaint, ControlNet or hires job
turned a bf16 model into fp32 for good (twice the RAM, a UNet step 1.3x slower, the VAE 2.6x,
measured on SD 1.5 at 256 px), and the ControlNet passed in with it too. Passing the
pipeline's dtype instead would still cast a mixed pipeline (an fp32 VAE beside an fp16 UNet,
`engine.devices.vae_dtype`) to one dtype. `share_pipeline` is `from_pipe`'s component matching
without any cast: the modules stay exactly as the loader placed them.
"""

from __future__ import annotations

from typing import Any


def share_pipeline(cls, pipe, **overrides: Any):
    """An instance of pipeline class `cls` over `pipe`'s modules and config; `overrides` replace
    or add components (a scheduler, a ControlNet) and config arguments, as in `from_pipe`."""
    from diffusers import ModelMixin

    expected, optional = cls._get_signature_keys(cls)
    types = cls._get_signature_types()
    components = pipe.components
    kwargs: dict[str, Any] = {}
    for name in expected:
        if name in overrides:
            kwargs[name] = overrides.pop(name)
        elif name in components:
            component = components[name]
            # a model of another class than the new pipeline's type hint is not switched over
            # (from_pipe's rule: e.g. an inpaint-only module the new class does not take)
            if not isinstance(component, ModelMixin) or type(component) in types.get(name, ()):
                kwargs[name] = component
    config = dict(pipe.config)
    for name in optional:
        if name in overrides:
            kwargs[name] = overrides.pop(name)
        elif name in config:
            kwargs[name] = config[name]
        elif f"_{name}" in config:  # kept privately by an earlier from_pipe
            kwargs[name] = config[f"_{name}"]
    kwargs.update(overrides)
    shared = cls(**kwargs)
    shared.set_progress_bar_config(disable=True)
    return shared
