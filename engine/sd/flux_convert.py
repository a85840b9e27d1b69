"""FLUX.1 transformers in Black Forest Labs' original layout, converted to diffusers' names.

BFL's files (and ComfyUI's, under `model.diffusion_model.`) name the transformer
`double_blocks.N.img_attn.qkv`, `single_blocks.N.linear1`, `img_in`, `txt_in`, `time_in`,
`vector_in`, `guidance_in` and `final_layer`. diffusers' own converter assumes the full-size
model (it splits `linear1` at 3072 rows), so narrower or wider files fail there. Here every size
is read from the tensors instead:

- width (inner_dim) = rows of `img_in.weight`; input channels = its columns (Fill and
  Canny/Depth files take more than the latents); output channels = rows of `final_layer.linear`;
- head size = length of the query norm's scale, heads = width / head size;
- MLP width = rows of `single_blocks.N.linear1` minus q, k and v (3 x width);
- text and pooled widths from `txt_in` / `vector_in`, depth from the block numbers, and the
  guidance embedder (dev) is optional (schnell has none).

Fused tensors are split (`qkv` in three, `linear1` in q, k, v and MLP) and the final
modulation's halves are swapped: BFL stores (shift, scale), diffusers' AdaLayerNormContinuous
reads (scale, shift). The model is built without memory and the file read one tensor at a time,
cast to the compute dtype as it is read (fp8 upcast; ComfyUI's scaled-fp8 files: each weight
times its scale, engine.library.fp8), so the weights never sit in memory twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.errors import ModelError

PREFIX = "model.diffusion_model."  # ComfyUI's all-in-one (and some transformer-only) files
#: diffusers' FluxTransformer2DModel fixes the MLP at 4x the width (no config setting for it)
MLP_RATIO = 4

#: one-to-one renames: original name (block number as {i}) -> diffusers name
_TOP = {
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
    "txt_in": "context_embedder",
    "img_in": "x_embedder",
    "final_layer.linear": "proj_out",
}
_DOUBLE = {
    "img_mod.lin": "norm1.linear",
    "txt_mod.lin": "norm1_context.linear",
    "img_attn.proj": "attn.to_out.0",
    "txt_attn.proj": "attn.to_add_out",
    "img_mlp.0": "ff.net.0.proj",
    "img_mlp.2": "ff.net.2",
    "txt_mlp.0": "ff_context.net.0.proj",
    "txt_mlp.2": "ff_context.net.2",
}
_DOUBLE_NORMS = {
    "img_attn.norm.query_norm.scale": "attn.norm_q.weight",
    "img_attn.norm.key_norm.scale": "attn.norm_k.weight",
    "txt_attn.norm.query_norm.scale": "attn.norm_added_q.weight",
    "txt_attn.norm.key_norm.scale": "attn.norm_added_k.weight",
}
_SINGLE = {"modulation.lin": "norm.linear", "linear2": "proj_out"}
_SINGLE_NORMS = {
    "norm.query_norm.scale": "attn.norm_q.weight",
    "norm.key_norm.scale": "attn.norm_k.weight",
}
#: fused tensors: original name -> the diffusers names of its row blocks, in order
_QKV = {
    "img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
}
_LINEAR1 = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")
_DOUBLE_TABLES = (_DOUBLE_NORMS, _DOUBLE)
_SINGLE_TABLES = (_SINGLE_NORMS, _SINGLE)
_FINAL_MODULATION = "final_layer.adaLN_modulation.1"


def strip(key: str) -> str:
    return key[len(PREFIX) :] if key.startswith(PREFIX) else key


def is_original_flux(keys: Iterable[str]) -> bool:
    """BFL names (bare or under ComfyUI's prefix), not diffusers' or FLUX.2's."""
    names = [strip(k) for k in keys]
    flux1 = any(k.startswith("double_blocks.") and ".img_attn.qkv." in k for k in names)
    return flux1 and not any(k.startswith("single_stream_modulation.") for k in names)


@dataclass(frozen=True)
class FluxGeometry:
    """The sizes of a FLUX.1 transformer, read from its tensors."""

    width: int
    head_dim: int
    mlp_width: int
    in_channels: int
    out_channels: int
    text_width: int
    pooled_width: int
    double_blocks: int
    single_blocks: int
    guidance: bool

    @property
    def heads(self) -> int:
        return self.width // self.head_dim

    def config(self) -> dict:
        """FluxTransformer2DModel config values these sizes decide."""
        return {
            "num_layers": self.double_blocks,
            "num_single_layers": self.single_blocks,
            "attention_head_dim": self.head_dim,
            "num_attention_heads": self.heads,
            "joint_attention_dim": self.text_width,
            "pooled_projection_dim": self.pooled_width,
            "guidance_embeds": self.guidance,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
        }


def read_geometry(shapes: Mapping[str, tuple], shown: str = "the file") -> FluxGeometry:
    """The sizes from {stripped name: shape}; ModelError when a tensor the layout needs is
    missing or the sizes do not fit together."""

    def shape(name: str, dims: int = 2) -> tuple:
        if name not in shapes:
            raise ModelError(
                f"{shown} is not a complete FLUX.1 transformer: it lacks '{name}'. The file "
                "may be truncated or of another model; download it again."
            )
        if len(shapes[name]) != dims:
            raise ModelError(
                f"{shown} does not fit the FLUX.1 layout: '{name}' has shape "
                f"{tuple(shapes[name])}, where a {dims}-dimensional tensor belongs."
            )
        return tuple(shapes[name])

    width, in_channels = shape("img_in.weight")
    (head_dim,) = shape("double_blocks.0.img_attn.norm.query_norm.scale", dims=1)
    double = _count(shapes, r"double_blocks\.(\d+)\.")
    single = _count(shapes, r"single_blocks\.(\d+)\.")
    mlp_width = shape("single_blocks.0.linear1.weight")[0] - 3 * width if single else 0
    geometry = FluxGeometry(
        width=width,
        head_dim=head_dim,
        mlp_width=mlp_width,
        in_channels=in_channels,
        out_channels=shape("final_layer.linear.weight")[0],
        text_width=shape("txt_in.weight")[1],
        pooled_width=shape("vector_in.in_layer.weight")[1],
        double_blocks=double,
        single_blocks=single,
        guidance="guidance_in.in_layer.weight" in shapes,
    )
    if head_dim <= 0 or width % head_dim:
        raise ModelError(f"{shown}: its width {width} is no whole number of {head_dim}-wide heads.")
    if single and mlp_width != MLP_RATIO * width:
        raise ModelError(
            f"{shown} is a FLUX.1-like transformer with a {mlp_width}-wide MLP at width {width}; "
            f"the FLUX.1 architecture Easel runs has {MLP_RATIO} x its width."
        )
    return geometry


def _count(shapes: Mapping[str, tuple], pattern: str) -> int:
    numbers = {int(m.group(1)) for k in shapes if (m := re.match(pattern, k))}
    return max(numbers) + 1 if numbers else 0


def convert_tensor(name: str, tensor: torch.Tensor, geometry: FluxGeometry) -> dict:
    """{diffusers name: tensor} for one original tensor (a fused one gives several), or {} for a
    name this layout does not have."""
    base, _, kind = name.rpartition(".")
    if kind not in ("weight", "bias", "scale"):  # "scale": the q/k norms, named in full below
        return {}  # (scaled-fp8 scales are applied and dropped before: engine.library.fp8)
    if kind != "scale" and base in _TOP:
        return {f"{_TOP[base]}.{kind}": tensor}
    if kind != "scale" and base == _FINAL_MODULATION:
        shift, scale = tensor.chunk(2, dim=0)
        return {f"norm_out.linear.{kind}": torch.cat([scale, shift], dim=0)}
    match = re.fullmatch(r"(double|single)_blocks\.(\d+)\.(.+)", name)
    if not match:
        return {}
    stream, number, rest = match.groups()
    width = geometry.width
    if stream == "double":
        fused = {base: (names, (width,) * 3) for base, names in _QKV.items()}
        return _block(f"transformer_blocks.{number}.", rest, tensor, _DOUBLE_TABLES, fused)
    fused = {"linear1": (_LINEAR1, (width, width, width, geometry.mlp_width))}
    return _block(f"single_transformer_blocks.{number}.", rest, tensor, _SINGLE_TABLES, fused)


def _block(out: str, rest: str, tensor: torch.Tensor, tables: tuple, fused: dict) -> dict:
    """One tensor of a double or single block: `tables` = (norm renames, renames), `fused` =
    {original name: (diffusers names, rows of each)}."""
    norms, renames = tables
    if rest in norms:
        return {out + norms[rest]: tensor}
    base, _, kind = rest.rpartition(".")
    if kind == "scale":
        return {}
    if base in renames:
        return {f"{out}{renames[base]}.{kind}": tensor}
    if base in fused:
        names, rows = fused[base]
        return {f"{out}{n}.{kind}": p for n, p in zip(names, _split(tensor, rows), strict=True)}
    return {}


class RowsMismatch(ValueError):
    """A fused tensor whose rows do not add up to the width (the caller names the file)."""


def _split(tensor: torch.Tensor, rows: tuple[int, ...]) -> tuple:
    """Row blocks of a fused tensor (views: no copy)."""
    if tensor.shape[0] != sum(rows):
        raise RowsMismatch(f"{tensor.shape[0]} rows where the file's width says {sum(rows)}")
    return tensor.split(rows, dim=0)


def _convert_named(name: str, tensor: torch.Tensor, geometry: FluxGeometry, shown: str) -> dict:
    """convert_tensor, with a ModelError naming the file for a tensor that does not fit."""
    try:
        converted = convert_tensor(name, tensor, geometry)
    except RowsMismatch as exc:
        raise ModelError(
            f"{shown} does not fit the FLUX.1 layout: its '{name}' has {exc}. The file is "
            "damaged or not a FLUX.1 transformer."
        ) from exc
    if not converted:
        raise _unknown_tensor(name, shown)
    return converted


def convert_state_dict(state: Mapping[str, torch.Tensor], shown: str = "the file") -> dict:
    """A whole original state dict (bare or prefixed) in diffusers' names."""
    from engine.library.fp8 import dequantise_state

    stripped = dequantise_state({strip(k): v for k, v in state.items()}, None, shown)
    geometry = read_geometry({k: tuple(v.shape) for k, v in stripped.items()}, shown)
    out = {}
    for name, tensor in stripped.items():
        out.update(_convert_named(name, tensor, geometry, shown))
    return out


def _unknown_tensor(name: str, shown: str) -> ModelError:
    return ModelError(
        f"{shown} holds a tensor the FLUX.1 layout does not have: '{name}'. It is a "
        "variant Easel does not know, or not a FLUX.1 transformer."
    )


# -- loading ---------------------------------------------------------------------------------
def file_shapes(path: Path) -> tuple[str, dict[str, tuple]]:
    """(prefix, {stripped name: shape}) of the transformer tensors in a safetensors file."""
    from engine.library.header import read_header

    tensors = read_header(path).tensors
    prefix = PREFIX if any(k.startswith(PREFIX) for k in tensors) else ""
    shapes = {k[len(prefix) :]: tuple(v.shape) for k, v in tensors.items() if k.startswith(prefix)}
    return prefix, shapes


def load_original_transformer(path: Path, config: dict, dtype: torch.dtype):
    """A FluxTransformer2DModel from an original-layout safetensors file; `config` is the
    companion's (or bundled) transformer config, its sizes replaced by the file's."""
    from accelerate import init_empty_weights
    from diffusers import FluxTransformer2DModel

    shown = f"'{path.name}'"
    from engine.library.header import BrokenFile

    try:
        prefix, shapes = file_shapes(path)
    except (BrokenFile, OSError) as exc:
        raise ModelError(f"{shown} cannot be read: {exc}. Download it again.") from exc
    geometry = read_geometry(shapes, shown)
    config = {**config, **geometry.config()}
    _check_rope(config, geometry, shown)
    with init_empty_weights():
        model = FluxTransformer2DModel.from_config(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state = _read_converted(path, prefix, geometry, dtype, shown)
    _check_fit(state, expected, shown)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def _check_rope(config: dict, geometry: FluxGeometry, shown: str) -> None:
    """The rotary embedding's axes must add up to the head size the file has."""
    axes = tuple(config.get("axes_dims_rope") or ())
    if sum(axes) != geometry.head_dim:
        raise ModelError(
            f"{shown} has {geometry.head_dim}-wide attention heads; the FLUX.1 settings it is "
            f"loaded with expect {sum(axes)} (rotary axes {axes}). It needs settings of its own."
        )


def _read_converted(path: Path, prefix: str, geometry, dtype, shown: str) -> dict:
    """The file's transformer tensors in diffusers' names, each cast to `dtype` as it is read
    (engine.library.checkpoint_stream: plain file reads, so no mapping keeps the file's pages
    beside the weights; a scaled-fp8 file's scales applied and dropped)."""
    from engine.library.checkpoint_stream import iter_checkpoint

    state = {}
    try:
        for name, tensor in iter_checkpoint(path, lambda _: dtype, prefix=prefix, strip=True):
            # split parts are views of the fused tensor: contiguous rows, no copy
            state.update(_convert_named(name, tensor, geometry, shown))
    except (OSError, ValueError, RuntimeError) as exc:  # a truncated file fails on read
        raise ModelError(f"{shown} cannot be read: {exc}. Download it again.") from exc
    return state


def _check_fit(state: dict, expected: dict[str, tuple], shown: str) -> None:
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if extra:  # e.g. a guidance embedder the config leaves out: cannot happen from geometry
        raise ModelError(f"{shown} holds tensors the FLUX.1 model has no place for ({extra[0]}).")
    if missing:
        raise ModelError(
            f"{shown} is not a complete FLUX.1 transformer: {len(missing)} tensors are missing "
            f"(e.g. {missing[0]}). The file may be truncated; download it again."
        )
    for name, shape in expected.items():
        if tuple(state[name].shape) != shape:
            raise ModelError(
                f"{shown} does not fit the FLUX.1 architecture: '{name}' is "
                f"{tuple(state[name].shape)}, the model built from its sizes needs {shape}."
            )
