"""Load a separate text encoder file (CLIP-L, CLIP-G, T5) with a bundled transformers config.

transformers has no single-file loader, so the model is built without memory
(accelerate's `init_empty_weights`: parameters on the meta device, buffers real) and the file's
tensors are assigned into it, one at a time and cast to the compute dtype as they are read, so
a 9.5 GB T5 file never sits in memory twice (ComfyUI's scaled-fp8 files: each weight times its
scale, engine.library.fp8). Names are brought to transformers' own first:
OpenCLIP's (`transformer.resblocks.N`, fused `in_proj`) through diffusers' converter, the
classic `text_model.` level added or dropped to match the installed transformers (version 5
drops it for CLIPTextModel), and T5's tied embedding filled from whichever copy the file has.
A file that lacks tensors the config needs is refused with their names.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from engine.errors import ModelError
from engine.library.probe_parts import strip_prefix, text_layout

#: T5's token embedding is stored once as `shared` and used again by the encoder
T5_TIED = ("shared.weight", "encoder.embed_tokens.weight")


def load_text_encoder(
    file: Path, config_dir: Path, component: str, dtype: torch.dtype, *, prefix: str = ""
):
    """The `component` text encoder of `config_dir`'s pipeline, weights from `file` (only the
    tensors under `prefix`: an all-in-one file's `text_encoders.t5xxl.transformer.`)."""
    import transformers

    config_path = config_dir / component / "config.json"
    try:
        architecture = json.loads(config_path.read_text(encoding="utf-8"))["architectures"][0]
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise ModelError(f"Easel's model settings file '{config_path}' is broken.") from exc
    cls = getattr(transformers, architecture)
    config = cls.config_class.from_pretrained(str(config_dir / component), local_files_only=True)
    model = _empty_model(cls, config)
    expected = model.state_dict()
    state = _read_state(file, dtype, keep_fp32=_fp32_modules(cls, dtype), prefix=prefix)
    state = _to_model_names(state, model, set(expected))
    for name, buffer in model.named_buffers():  # buffers are built by the model, not stored
        if name in expected and name not in state and buffer.device.type != "meta":
            state[name] = buffer
    missing = sorted(set(expected) - set(state))
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise ModelError(
            f"'{file.name}' does not fit the {component} slot of this model: it lacks "
            f"{len(missing)} of the tensors a {architecture} needs ({shown})."
        )
    wrong = [k for k in expected if tuple(state[k].shape) != tuple(expected[k].shape)]
    if wrong:
        raise ModelError(
            f"'{file.name}' does not fit the {component} slot: '{wrong[0]}' is "
            f"{tuple(state[wrong[0]].shape)}, the model needs {tuple(expected[wrong[0]].shape)}."
        )
    model.load_state_dict({k: state[k] for k in expected}, strict=True, assign=True)
    return model.eval()


def _empty_model(cls, config):
    from accelerate import init_empty_weights

    with init_empty_weights():  # buffers (CLIP's position ids) stay real: they are not in files
        return cls(config)


def _fp32_modules(cls, dtype: torch.dtype) -> tuple[str, ...]:
    """T5 keeps its feed-forward output (`wo`) in float32 under fp16, as transformers does:
    those activations overflow fp16."""
    modules = getattr(cls, "_keep_in_fp32_modules", None) or ()
    return tuple(modules) if dtype == torch.float16 else ()


def _read_state(
    file: Path, dtype: torch.dtype, *, keep_fp32: tuple[str, ...], prefix: str = ""
) -> dict:
    from engine.library.checkpoint_stream import iter_checkpoint
    from engine.library.fp8 import is_scaled
    from engine.library.header import BrokenFile, read_header

    def wanted(key: str) -> torch.dtype:
        return torch.float32 if set(key.split(".")) & set(keep_fp32) else dtype

    try:
        if is_scaled(read_header(file).names()):
            # ComfyUI's scaled fp8: each weight times its scale (engine.library.fp8), read with
            # plain file reads, so no mapping keeps the fp8 bytes beside the dequantised weights
            return dict(iter_checkpoint(file, wanted, prefix=prefix))
    except (BrokenFile, OSError, ValueError) as exc:
        raise ModelError(f"The text encoder file '{file.name}' cannot be read: {exc}") from exc
    return _read_mapped(file, wanted, prefix)


def _read_mapped(file: Path, wanted, prefix: str) -> dict:
    from safetensors import safe_open

    state = {}
    try:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():
                if not key.startswith(prefix):
                    continue  # another part of an all-in-one file: never read
                tensor = handle.get_tensor(key)
                if tensor.is_floating_point():
                    tensor = tensor.to(wanted(key))
                state[key] = tensor
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"The text encoder file '{file.name}' cannot be read: {exc}") from exc
    return state


def _to_model_names(state: dict, model, expected: set[str]) -> dict:
    """The file's tensors under the model's own parameter names."""
    layout = text_layout(state)
    prefix, names = strip_prefix(state)
    if layout == "open_clip":
        from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint

        state = convert_open_clip_checkpoint(
            model, {"m." + k: state[v] for k, v in names.items()}, prefix="m."
        )
    else:
        state = {k: state[v] for k, v in names.items()}
    out = {}
    for key, value in state.items():
        for name in (key, key.removeprefix("text_model."), "text_model." + key):
            if name in expected:
                out[name] = value
                break
    if layout == "t5":
        present = [k for k in T5_TIED if k in out]
        for key in T5_TIED:
            if key in expected and key not in out and present:
                out[key] = out[present[0]]
    if "text_projection.weight" in expected and "text_projection.weight" not in out:
        # CLIP-L files made for FLUX have no projection, SD3's pipeline wants one: the identity
        # (a square projection), as diffusers and ComfyUI use for SD3's own all-in-one CLIP-L
        width = _square_projection_width(model)
        if layout != "t5" and width:
            out["text_projection.weight"] = torch.eye(width, dtype=_dtype_of(out))
    return out


def _square_projection_width(model) -> int:
    config = model.config
    if getattr(config, "projection_dim", None) != getattr(config, "hidden_size", None):
        return 0
    return int(config.hidden_size)


def _dtype_of(state: dict) -> torch.dtype:
    return next((v.dtype for v in state.values() if v.is_floating_point()), torch.float32)
