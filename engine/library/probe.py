"""Identify a model file or folder from its content, never from its name.

Single files are judged by their tensor names, shapes and metadata, read from the safetensors
header (no tensor is loaded) or, for pickles, from a `weights_only` load onto the meta device.
Folders are judged by `model_index.json` (diffusers) or `config.json` with a "family" (Easel's
native models). The rules follow how the architectures differ (InvokeAI's model probe, ComfyUI's
model detection):

- Stable Diffusion UNets (`model.diffusion_model.*`): the cross-attention context width says the
  base (768 SD 1.x, 1024 SD 2.x, 2048 SDXL, 1280 SDXL refiner), `label_emb` the SDXL conditioning
  (2816 base, 2560 refiner), `input_blocks.0.0.weight`'s input channels the variant (9 inpaint).
- SD 2.x prediction type: metadata first (`modelspec.prediction_type`, `modelspec.architecture`,
  a `v_pred` key); otherwise ComfyUI's rule on one small bias (std > 0.09 means v-prediction);
  if even that is missing the variant is "unknown" and loading uses the 768 v-prediction config,
  because SD 2.0/2.1 768 and most community SD 2.x models are v-prediction.
- SD3 / SD3.5 (`joint_blocks`) and FLUX (`double_blocks`), in every layout and as GGUF files:
  `probe_modern` (family, variant, all-in-one or transformer-only, quantisation).
- LoRA: the cross-attention key projection's input width gives its base, as for UNets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from engine.library.header import BrokenFile, Header, read_header, read_tensor_values

Shapes = dict[str, tuple[int, ...]]

CONTEXT_TO_BASE = {768: "sd1", 1024: "sd2", 2048: "sdxl", 1280: "sdxl-refiner"}
BASE_NAMES = {
    "sd1": "SD 1.x",
    "sd2": "SD 2.x",
    "sdxl": "SDXL",
    "sdxl-refiner": "SDXL refiner",
    "sd3": "SD3",
    "flux": "FLUX",
    "flux2": "FLUX.2",
}
#: flow-matching transformer families, loaded by engine.sd.modern_loading
TRANSFORMER_BASES = frozenset({"sd3", "flux", "flux2"})
UNET = "model.diffusion_model."
SD2_V_PROBE_KEY = UNET + "output_blocks.11.1.transformer_blocks.0.norm1.bias"


@dataclass(frozen=True)
class ProbeResult:
    """What a file or folder is.

    `status`: "ok", "unsupported" (known but Easel cannot run it yet), "broken" (unreadable),
    "unsafe" (a pickle that needs code to load) or "unknown" (readable, but no rule matched).
    """

    #: checkpoint | lora | vae | text_encoder | embedding | upscaler | controlnet | ip_adapter |
    #: image_encoder | native | unknown | broken
    kind: str
    base: str = ""  # sd1 | sd2 | sdxl | sdxl-refiner | sd3 | flux | native family name
    variant: str = ""  # "" | inpaint | epsilon | v_prediction | unknown (comma-joined)
    layout: str = ""  # single_file | diffusers | native
    status: str = "ok"
    reason: str = ""
    config: str = ""  # bundled resources/configs folder for single-file checkpoints
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def describe(self) -> str:
        """One line for lists: 'SDXL checkpoint (inpaint)' or 'broken: <reason>'."""
        if self.status == "broken":
            return f"broken: {self.reason}"
        words = [BASE_NAMES.get(self.base, self.base), self.kind]
        text = " ".join(w for w in words if w)
        if self.variant:
            text += f" ({self.variant})"
        if self.status != "ok":
            text += f": {self.reason}"
        return text


def broken(reason: str) -> ProbeResult:
    return ProbeResult(kind="broken", status="broken", reason=reason)


def unknown(reason: str) -> ProbeResult:
    return ProbeResult(kind="unknown", status="unknown", reason=reason)


def probe_path(path: str | Path) -> ProbeResult:
    """Identify `path`. Never raises for bad content: broken files come back as kind "broken"."""
    from engine.library.pickles import PICKLE_SUFFIXES

    path = Path(path)
    if path.is_dir():
        from engine.library.probe_folder import probe_folder

        return probe_folder(path)
    if not path.is_file():
        return broken("the file does not exist")
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return _probe_pickle(path)
    if _starts_with(path, b"GGUF"):
        from engine.library.probe_modern import probe_gguf

        return probe_gguf(path)
    # Anything else is tried as safetensors whatever its suffix: content decides, not names.
    try:
        header = read_header(path)
    except BrokenFile as exc:
        return broken(str(exc))
    try:
        return classify(
            header.shapes(),
            header.metadata,
            read_values=_value_reader(path, header),
            dtypes=_modern_dtypes(header),
        )
    except (TypeError, ValueError, IndexError, KeyError) as exc:
        # Shapes are not checked entry by entry when the header is read (that would cost more
        # than the read); a malformed one surfaces here instead.
        return broken(f"the header's tensor shapes are malformed ({exc})")


def _modern_dtypes(header: Header) -> dict[str, str] | None:
    """Tensor dtypes (for fp8 detection), read only for SD3/FLUX files: building every entry
    would double the cost of scanning ordinary checkpoints."""
    from engine.library import probe_modern

    names = header.names()
    if probe_modern.is_flux(names) or probe_modern.is_sd3(names) or _text_encoder_only(names):
        return {name: info.dtype for name, info in header.tensors.items()}
    return None


def _text_encoder_only(keys) -> bool:
    from engine.library import probe_parts

    keys = list(keys)
    return not any(k.startswith(UNET) for k in keys) and probe_parts.is_text_encoder(keys)


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(magic)) == magic
    except OSError:
        return False


def _value_reader(path: Path, header: Header) -> Callable[[str], list[float] | None]:
    def read(key: str) -> list[float] | None:
        info = header.info(key)
        if info is None or info.end - info.start > 1 << 20:
            return None
        try:
            return read_tensor_values(path, info)
        except (BrokenFile, OSError):
            return None

    return read


def _probe_pickle(path: Path) -> ProbeResult:
    from engine.errors import ModelError
    from engine.library.pickles import load_pickle, unwrap_state_dict

    try:
        # The meta device keeps a multi-GB checkpoint from being read into memory.
        state_dict = unwrap_state_dict(load_pickle(path, map_location="meta"))
    except ModelError as exc:
        if path.stat().st_size == 0:
            return broken("the file is empty (0 bytes)")
        # A refused pickle is not damaged: it is unsafe, and the message says how to convert it.
        status = "unsafe" if str(exc).startswith("Refused") else "broken"
        return replace(broken(str(exc)), status=status)
    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    return classify(shapes, {}, read_values=None)


def classify(
    shapes: Shapes,
    metadata: dict[str, str],
    *,
    read_values: Callable[[str], list[float] | None] | None = None,
    dtypes: dict[str, str] | None = None,
) -> ProbeResult:
    """Decide what a state dict is from its keys, shapes, metadata (and dtypes, for fp8)."""
    from engine.library import probe_control, probe_modern, probe_parts

    if not shapes:
        return unknown("the file holds no tensors")
    keys = list(shapes)
    if probe_control.is_controlnet(keys):
        return probe_control.classify_controlnet(shapes)
    if probe_control.is_ip_adapter(keys):
        return probe_control.classify_ip_adapter(shapes)
    if not _is_lora(keys) and (probe_modern.is_flux(keys) or probe_modern.is_sd3(keys)):
        return probe_modern.classify_modern(shapes, metadata, dtypes)
    for test, classifier in (
        (lambda k: (UNET + "input_blocks.0.0.weight") in shapes, None),
        (_is_lora, lambda: _classify_lora(shapes, metadata)),
        (_is_vae, lambda: _classify_vae(shapes, metadata)),
        (_is_embedding, lambda: _classify_embedding(shapes)),
    ):
        if test(keys):
            if classifier is None:
                return _classify_sd_checkpoint(shapes, metadata, read_values)
            return classifier()
    if _text_encoder_only(keys):
        return probe_parts.classify_text_encoder(shapes, dtypes)
    taesd = classify_taesd(shapes)
    if taesd is not None:
        return taesd
    if "conv_in.weight" in shapes and any(k.startswith("down_blocks.") for k in keys):
        return unknown(
            "this is a single diffusers component (a UNet), not a whole model: "
            "add the diffusers folder it belongs to"
        )
    return _classify_other(shapes)


# ----------------------------------------------------------------------------- checkpoints
def _context_dim(shapes: Shapes, prefix: str = UNET) -> int | None:
    for key, shape in shapes.items():
        if key.startswith(prefix) and key.endswith("attn2.to_k.weight") and len(shape) == 2:
            return shape[1]
    return None


def _classify_sd_checkpoint(shapes: Shapes, metadata: dict, read_values) -> ProbeResult:
    in_channels = shapes[UNET + "input_blocks.0.0.weight"][1]
    context = _context_dim(shapes)
    label_emb = shapes.get(UNET + "label_emb.0.0.weight")
    adm = label_emb[1] if label_emb and len(label_emb) == 2 else None
    details = {"in_channels": in_channels, "context_dim": context, "adm_in_channels": adm}
    base = CONTEXT_TO_BASE.get(context or 0)
    if base in {"sdxl", "sdxl-refiner"} and adm not in {2816, 2560}:
        base = None
    if base in {"sd1", "sd2"} and adm is not None:
        base = None  # SD 2.x unCLIP and other class-conditioned UNets
    if base is None:
        return ProbeResult(
            kind="checkpoint",
            layout="single_file",
            status="unsupported",
            reason=f"a Stable Diffusion-like UNet with context width {context} and "
            f"conditioning {adm} matches no model family Easel knows",
            details=details,
        )
    variants = []
    if in_channels == 9:
        variants.append("inpaint")
    elif in_channels == 8:
        return _unsupported_variant(base, "instruct-pix2pix", details)
    elif in_channels != 4:
        return _unsupported_variant(base, f"{in_channels} input channels", details)
    prediction = _prediction_type(shapes, metadata, base, read_values)
    if prediction:
        variants.append(prediction)
    missing = _missing_components(shapes, base)
    if missing:
        return ProbeResult(
            kind="checkpoint",
            base=base,
            variant=",".join(variants),
            layout="single_file",
            status="unsupported",
            reason=f"the file holds no {' or '.join(missing)}: it is not a complete model",
            details=details,
        )
    config = _config_for(base, variants)
    if not config:
        return _unsupported_variant(base, ",".join(variants), details)
    return ProbeResult(
        kind="checkpoint",
        base=base,
        variant=",".join(variants),
        layout="single_file",
        config=config,
        details=details,
    )


def _unsupported_variant(base: str, variant: str, details: dict) -> ProbeResult:
    return ProbeResult(
        kind="checkpoint",
        base=base,
        variant=variant,
        layout="single_file",
        status="unsupported",
        reason=f"{BASE_NAMES[base]} {variant} checkpoints are not supported yet",
        details=details,
    )


def _missing_components(shapes: Shapes, base: str) -> list[str]:
    keys = list(shapes)
    missing = []
    if not any(k.startswith("first_stage_model.") for k in keys):
        missing.append("VAE")
    text_prefix = {
        "sd1": "cond_stage_model.transformer.",
        "sd2": "cond_stage_model.model.",
        "sdxl": "conditioner.embedders.1.model.",
        "sdxl-refiner": "conditioner.embedders.0.model.",
    }[base]
    if not any(k.startswith(text_prefix) for k in keys):
        missing.append("text encoder")
    return missing


def _prediction_type(shapes: Shapes, metadata: dict, base: str, read_values) -> str:
    """ "v_prediction", "epsilon", "unknown" (SD 2.x only) or "" (the family's usual one)."""
    declared = _declared_prediction(shapes, metadata)
    if declared:
        return declared if (base == "sd2" or declared == "v_prediction") else ""
    if base != "sd2":
        return ""
    values = read_values(SD2_V_PROBE_KEY) if read_values else None
    if values:
        mean = sum(values) / len(values)
        std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
        return "v_prediction" if std > 0.09 else "epsilon"
    return "unknown"


def _declared_prediction(shapes: Shapes, metadata: dict) -> str:
    if "v_pred" in shapes or "edm_vpred.sigma_max" in shapes:
        return "v_prediction"
    declared = metadata.get("modelspec.prediction_type", "").lower()
    if declared in {"v", "v_prediction", "v-prediction"}:
        return "v_prediction"
    if declared in {"epsilon", "eps"}:
        return "epsilon"
    architecture = metadata.get("modelspec.architecture", "").lower()
    if architecture.endswith("-v") or "768-v" in architecture:
        return "v_prediction"
    if architecture.startswith("stable-diffusion-v2") and "512" in architecture:
        return "epsilon"
    return ""


def _config_for(base: str, variants: list[str]) -> str:
    inpaint = "inpaint" in variants
    if base == "sd1":
        return "sd1-inpaint" if inpaint else "sd1"
    if base == "sd2":
        if inpaint:
            return ""  # no bundled SD 2.x inpaint config yet
        return "sd2-512" if "epsilon" in variants else "sd2-768-v"
    if base == "sdxl":
        return "sdxl-inpaint" if inpaint else "sdxl-base"
    return "sdxl-refiner" if not inpaint else ""


# ----------------------------------------------------------------------------- LoRA
LORA_MARKERS = (
    ".lora_down.weight",
    ".lora_up.weight",
    ".lora_A.weight",
    ".lora_B.weight",
    ".lora.down.weight",
    ".lora_linear_layer.down.weight",
    ".hada_w1_a",
    ".lokr_w1",
)


def _is_lora(keys: list[str]) -> bool:
    return any(k.endswith(LORA_MARKERS) for k in keys)


def _lora_down_keys(shapes: Shapes):
    for key, shape in shapes.items():
        if len(shape) >= 2 and re.search(r"(lora_down|lora_A|lora\.down|down)\.weight$", key):
            yield key, shape


def _classify_lora(shapes: Shapes, metadata: dict) -> ProbeResult:
    keys = list(shapes)
    flavour = "LyCORIS" if any(k.endswith((".hada_w1_a", ".lokr_w1")) for k in keys) else ""
    details = {"format": flavour or "LoRA"}
    transformer_base = _transformer_lora_base(shapes)
    if transformer_base:
        return ProbeResult(kind="lora", base=transformer_base, details=details)
    base = ""
    for key, shape in _lora_down_keys(shapes):
        if re.search(r"attn2[._]to_k", key):
            base = CONTEXT_TO_BASE.get(shape[1], "")
            if base:
                break
    if not base and any(k.startswith(("lora_te2_", "text_encoder_2.")) for k in keys):
        base = "sdxl"
    if not base:
        base = _lora_base_from_text_encoder(shapes) or _lora_base_from_metadata(metadata)
    if not base:
        return ProbeResult(
            kind="lora",
            status="unknown",
            reason="a LoRA whose target model could not be told from its shapes or metadata",
            details=details,
        )
    return ProbeResult(kind="lora", base=base, details=details)


#: hidden width of FLUX.2 dev (FLUX.1 and FLUX.2 klein 4B are 3072 wide, klein 9B 4096)
_FLUX2_DEV_WIDTH = 6144


def _transformer_lora_base(shapes: Shapes) -> str:
    """'sd3', 'flux' or 'flux2' for LoRAs of the transformer families (kohya `lora_unet_*`,
    original and diffusers key names), '' for UNet LoRAs."""
    keys = list(shapes)
    if any("to_qkv_mlp_proj" in k or "stream_modulation" in k for k in keys):
        return "flux2"  # FLUX.2's fused single-block projection and shared modulation
    if any(
        part in k for k in keys for part in ("double_blocks", "single_blocks", "single_transformer")
    ):
        widths = {shape[1] for _, shape in _lora_down_keys(shapes)}
        return "flux2" if _FLUX2_DEV_WIDTH in widths else "flux"
    if any("joint_blocks" in k or "context_block" in k for k in keys):
        return "sd3"
    if any(k.startswith("transformer.transformer_blocks.") for k in keys):
        # diffusers keys on the joint blocks only: the width tells (SD3 1536 / 2432 wide,
        # FLUX.2 dev 6144 and klein 9B 4096; 3072 is FLUX.1 or klein 4B: FLUX.1 is assumed)
        widths = {shape[1] for _, shape in _lora_down_keys(shapes)}
        if widths & {_FLUX2_DEV_WIDTH, 4096}:
            return "flux2"
        return "flux" if 3072 in widths else "sd3"
    return ""


def _lora_base_from_text_encoder(shapes: Shapes) -> str:
    for key, shape in _lora_down_keys(shapes):
        if ("lora_te_" in key or "text_encoder." in key) and "mlp_fc1" in key.replace(".", "_"):
            return {768: "sd1", 1024: "sd2"}.get(shape[1], "")
    return ""


def _lora_base_from_metadata(metadata: dict) -> str:
    version = metadata.get("ss_base_model_version", "").lower()
    architecture = metadata.get("modelspec.architecture", "").lower()
    text = version + " " + architecture
    if "xl" in text:
        return "sdxl"
    if metadata.get("ss_v2", "").lower() == "true" or "v2" in text:
        return "sd2"
    if "v1" in text or "sd_v1" in text:
        return "sd1"
    return ""


# ----------------------------------------------------------------------------- VAE, embeddings
def _strip_vae_prefix(keys: list[str]) -> list[str]:
    out = []
    for k in keys:
        for prefix in ("first_stage_model.", "vae."):
            if k.startswith(prefix):
                k = k[len(prefix) :]
        out.append(k)
    return out


def _is_vae(keys: list[str]) -> bool:
    stripped = set(_strip_vae_prefix(keys))
    return "encoder.conv_in.weight" in stripped or "decoder.conv_in.weight" in stripped


def _classify_vae(shapes: Shapes, metadata: dict) -> ProbeResult:
    stripped = dict(zip(_strip_vae_prefix(list(shapes)), shapes.values(), strict=True))
    conv_in = stripped.get("decoder.conv_in.weight") or ()
    latent_channels = conv_in[1] if len(conv_in) == 4 else None
    layout = "diffusers" if any(".down_blocks." in k for k in stripped) else "original"
    details = {"latent_channels": latent_channels, "key_layout": layout}
    if latent_channels == 16:
        # SD3's and FLUX.1's autoencoders share one architecture (different weights and
        # scaling factors); nothing in the tensors tells them apart
        details["fits"] = "sd3, flux"
        return ProbeResult(kind="vae", variant="16-channel", details=details)
    if latent_channels not in (4, None):
        return ProbeResult(
            kind="vae",
            status="unknown",
            reason=f"a VAE with {latent_channels} latent channels matches no family",
            details=details,
        )
    declared = (metadata.get("modelspec.architecture", "") + metadata.get("base", "")).lower()
    if "xl" in declared:
        return ProbeResult(kind="vae", base="sdxl", details=details)
    if "v1" in declared or "v2" in declared:
        return ProbeResult(kind="vae", base="sd1", details=details)
    # SD 1.x/2.x and SDXL VAEs share one architecture; nothing in the file says which it is.
    details["fits"] = "sd1, sd2, sdxl"
    return ProbeResult(kind="vae", base="", details=details)


def _is_embedding(keys: list[str]) -> bool:
    names = set(keys)
    return (
        "emb_params" in names
        or any(k.startswith("string_to_param") for k in keys)
        or names <= {"clip_l", "clip_g"}
    )


def _classify_embedding(shapes: Shapes) -> ProbeResult:
    if "clip_g" in shapes:
        return ProbeResult(kind="embedding", base="sdxl")
    width = next(iter(shapes.values()))[-1]
    return ProbeResult(kind="embedding", base={768: "sd1", 1024: "sd2"}.get(width, ""))


# ----------------------------------------------------------------------------- TAESD
#: a TAESD decoder's first convolution: original layout (after a parameter-free Clamp at 0),
#: diffusers' DecoderTiny alone, or inside an AutoencoderTiny file
_TAESD_FIRST_CONVS = ("1.weight", "layers.0.weight", "decoder.layers.0.weight")


def classify_taesd(shapes: Shapes) -> ProbeResult | None:
    """A tiny preview decoder (TAESD layout: 64-channel 3x3 convolutions, blocks of three
    convs named `N.conv.0/2/4`), or None. A TAESD encoder alone is named as such."""
    for first in _TAESD_FIRST_CONVS:
        prefix = first[: -len("0.weight")] if first != "1.weight" else ""
        shape = shapes.get(first)
        block = prefix + ("3.conv.0.weight" if first == "1.weight" else "2.conv.0.weight")
        if shape is None or len(shape) != 4 or block not in shapes:
            continue
        latent_channels = int(shape[1])
        details = {"latent_channels": latent_channels, "part": "decoder"}
        if latent_channels != 4:
            return ProbeResult(
                kind="taesd",
                status="unsupported",
                reason=f"a tiny decoder for {latent_channels}-channel latents (SD3/FLUX)",
                details=details,
            )
        # TAESD (SD 1.x/2.x) and TAESDXL share one layout; nothing in the file says which
        return ProbeResult(kind="taesd", base="", details={**details, "fits": "sd1, sd2, sdxl"})
    encoder_first = shapes.get("0.weight")
    if (
        encoder_first is not None
        and tuple(encoder_first)[1:] == (3, 3, 3)
        and "1.conv.0.weight" in shapes
    ):
        return unknown("a TAESD encoder; previews need the decoder (taesd_decoder.safetensors)")
    return None


# ----------------------------------------------------------------------------- upscalers
def _classify_other(shapes: Shapes) -> ProbeResult:
    """Last resort: ask spandrel's detectors (upscalers), with meta tensors (no data read)."""
    try:
        import torch

        from engine.library.upscalers import detect_architecture

        state = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
        architecture = detect_architecture(state)
    except Exception as exc:  # noqa: BLE001 - spandrel missing or a detector crashed
        return unknown(f"no known model layout matches its tensors (upscaler check failed: {exc})")
    if architecture:
        return ProbeResult(
            kind="upscaler", base=architecture, details={"architecture": architecture}
        )
    return unknown("no known model layout matches its tensor names and shapes")


def read_json_object(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
