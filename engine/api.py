"""Requests the engine runs: frozen, serialisable, importable without torch.

One frozen request per job. It is what history stores, what PNG metadata carries and what
"reproduce" replays, so every field round-trips through `to_dict`/`from_dict` (plain JSON types).
Validation here is cheap and pure (ranges, names); anything that needs a model happens in the job.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar

from engine.api_control import (
    ControlUnit,
    HiresFix,
    ImagePrompt,
    Region,
    control_units,
    hires_fix,
    image_prompts,
    regions,
)
from engine.errors import InputError
from engine.serialisable import Serialisable


class Mode(str, enum.Enum):
    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"


class DeviceChoice(str, enum.Enum):
    AUTO = "auto"
    CUDA = "cuda"
    MPS = "mps"
    CPU = "cpu"


class Precision(str, enum.Enum):
    AUTO = "auto"
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"


class Offload(str, enum.Enum):
    AUTO = "auto"  # chosen per model from its size and the VRAM budget (engine/sd/memory_plan)
    NONE = "none"
    MODEL = "model"  # accelerate model CPU offload: whole sub-models move to the GPU when used
    SEQUENTIAL = "sequential"  # layer by layer: slowest, for the smallest GPUs


#: Sampler names as users know them (A1111 naming); the SD family maps each to a diffusers
#: scheduler and config; native diffusion models accept the subset they implement.
SAMPLERS: tuple[str, ...] = (
    "Euler",
    "Euler a",
    "DPM++ 2M",
    "DPM++ 2M Karras",
    "DPM++ SDE Karras",
    "DDIM",
    "DDPM",
    "PNDM",
    "LMS",
    "UniPC",
    "LCM",
)

#: Token samplers of the autoregressive family (engine.families.dalle): the next image token is
#: drawn from the k most likely codes (top-k) or the smallest set holding p of the mass (top-p).
TOKEN_SAMPLERS: tuple[str, ...] = ("top-k", "top-p")

MAX_SIDE = 4096
MAX_STEPS = 500
MAX_BATCH = 64
MAX_SEED = 2**64 - 1  # what torch.Generator.manual_seed takes, and ComfyUI writes


@dataclass(frozen=True)
class LoraRef(Serialisable):
    """A LoRA file applied with a weight (A1111's `<lora:name:weight>`)."""

    path: str
    weight: float = 1.0

    def __post_init__(self):
        if not -4.0 <= float(self.weight) <= 4.0:
            raise InputError(f"LoRA weight {self.weight} is out of range (-4 to 4).")


@dataclass(frozen=True)
class RuntimeOptions(Serialisable):
    """Where and how a job runs. Not part of what makes an image, but of how fast it comes."""

    device: DeviceChoice = DeviceChoice.AUTO
    precision: Precision = Precision.AUTO
    cpu_threads: int = 0  # 0 = all cores
    attention_slicing: bool = False
    vae_tiling: bool = False
    vae_slicing: bool = False
    offload: Offload = Offload.AUTO
    #: SD3: leave the optional T5 text encoder out (about 9.5 GB less; prompts follow less well)
    skip_t5: bool = False
    #: SD 1.x/2.x/SDXL: decode the final picture with the tiny preview decoder (TAESD from the
    #: library, else one distilled from the model's VAE once): about ten times cheaper than the
    #: VAE, a little softer. Live painting turns it on.
    fast_decode: bool = False

    _decoders: ClassVar[dict] = {
        "device": DeviceChoice,
        "precision": Precision,
        "offload": Offload,
    }

    def __post_init__(self):
        for name, enum_type in self._decoders.items():
            value = getattr(self, name)
            if not isinstance(value, enum_type):
                object.__setattr__(self, name, _enum(enum_type, value, name))
        if self.cpu_threads < 0:
            raise InputError("CPU threads must be 0 (all cores) or a positive number.")


def _enum(enum_type: type[enum.Enum], value: Any, what: str):
    try:
        return enum_type(value)
    except ValueError:
        choices = ", ".join(e.value for e in enum_type)
        raise InputError(f"Unknown {what} '{value}'. Choose one of: {choices}.") from None


@dataclass(frozen=True)
class GenerationRequest(Serialisable):
    """Make images: Stable Diffusion-class models and Easel's native families alike.

    `model` is a path (file or folder) or a library id such as `builtin:emoji-ldm`. Images
    (`init_image`, `mask_image`) are file paths so the request stays small and serialisable; the
    desktop app writes the canvas to a working file before it submits. `extras` carries
    family-specific knobs (e.g. `eta`, `truncation`, `class_label`) as plain JSON values.
    """

    type_name: ClassVar[str] = "generate"

    prompt: str = ""
    negative_prompt: str = ""
    model: str = ""
    mode: Mode = Mode.TXT2IMG
    seed: int = 0
    steps: int = 20
    guidance_scale: float = 7.0
    sampler: str = "Euler a"
    width: int = 512
    height: int = 512
    batch_size: int = 1
    strength: float = 0.75
    init_image: str | None = None
    mask_image: str | None = None
    loras: tuple[LoraRef, ...] = ()
    clip_skip: int = 0
    #: steering beyond the prompt (engine/api_control.py); SD 1.x and SDXL
    control: tuple[ControlUnit, ...] = ()
    image_prompts: tuple[ImagePrompt, ...] = ()
    regions: tuple[Region, ...] = ()
    hires: HiresFix | None = None
    extras: dict = field(default_factory=dict)
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)

    _decoders: ClassVar[dict] = {
        "mode": Mode,
        "loras": lambda v: tuple(_lora(x) for x in v),
        "control": control_units,
        "image_prompts": image_prompts,
        "regions": regions,
        "hires": hires_fix,
        "runtime": lambda v: _runtime(v),
    }

    def __post_init__(self):
        if not isinstance(self.mode, Mode):
            object.__setattr__(self, "mode", _enum(Mode, self.mode, "mode"))
        object.__setattr__(self, "loras", tuple(self.loras))
        object.__setattr__(self, "control", control_units(self.control))
        object.__setattr__(self, "image_prompts", image_prompts(self.image_prompts))
        object.__setattr__(self, "regions", regions(self.regions))
        object.__setattr__(self, "hires", hires_fix(self.hires))
        object.__setattr__(self, "extras", dict(self.extras))
        self.validate()

    def validate(self) -> None:
        """Check ranges that need no model. Raises InputError with a fix the user can apply."""
        if not 1 <= self.steps <= MAX_STEPS:
            raise InputError(f"Steps must be between 1 and {MAX_STEPS} (got {self.steps}).")
        if not 0 <= self.seed <= MAX_SEED:
            raise InputError(f"Seed must be between 0 and {MAX_SEED} (got {self.seed}).")
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise InputError(f"Batch size must be between 1 and {MAX_BATCH}.")
        if not 0.0 <= self.guidance_scale <= 50.0:
            raise InputError(
                f"Guidance scale must be between 0 and 50 (got {self.guidance_scale})."
            )
        if not 0.0 < self.strength <= 1.0:
            raise InputError(f"Strength must be above 0 and at most 1 (got {self.strength}).")
        for side, value in (("Width", self.width), ("Height", self.height)):
            if not 8 <= value <= MAX_SIDE:
                raise InputError(f"{side} must be between 8 and {MAX_SIDE} pixels (got {value}).")
            if value % 8:
                raise InputError(
                    f"{side} {value} is not a multiple of 8; use {round_to_multiple(value)}."
                )
        if self.sampler not in SAMPLERS + TOKEN_SAMPLERS:
            raise InputError(
                f"Unknown sampler '{self.sampler}'. Choose one of: "
                f"{', '.join(SAMPLERS + TOKEN_SAMPLERS)}."
            )
        if self.mode is not Mode.TXT2IMG and not self.init_image:
            raise InputError(f"{self.mode.value} needs an init image.")
        if self.mode is Mode.INPAINT and not self.mask_image:
            raise InputError("Inpaint needs a mask: paint the area to change.")
        if not 0 <= self.clip_skip <= 12:
            raise InputError("CLIP skip must be between 0 and 12.")
        for what, text in (("prompt", self.prompt), ("negative prompt", self.negative_prompt)):
            if len(text) > MAX_PROMPT_CHARS:
                raise InputError(
                    f"The {what} is {len(text):,} characters; Easel reads up to "
                    f"{MAX_PROMPT_CHARS:,}. Shorten it."
                )


def _runtime(value: Any) -> RuntimeOptions:
    if isinstance(value, RuntimeOptions):
        return value
    if not isinstance(value, dict):
        raise InputError("Stored setting 'runtime' must be an object.")
    return RuntimeOptions.from_dict(value)


def _lora(item: Any) -> LoraRef:
    if isinstance(item, LoraRef):
        return item
    if not isinstance(item, dict):
        raise InputError("Stored setting 'loras' must be a list of {path, weight} objects.")
    return LoraRef.from_dict(item)


MAX_PROMPT_CHARS = 20_000


def round_to_multiple(value: int, multiple: int = 8) -> int:
    """Nearest multiple (at least one multiple), as the size fields suggest."""
    return max(multiple, (value + multiple // 2) // multiple * multiple)


@dataclass(frozen=True)
class TrainingRequest(Serialisable):
    """Train one of Easel's native families on a folder of images."""

    type_name: ClassVar[str] = "train"

    family: str = "dcgan"
    data_dir: str = ""
    out_dir: str = ""
    steps: int = 1000
    resolution: int = 64
    batch_size: int = 32
    learning_rate: float = 0.0  # 0 = the family's default
    seed: int = 0
    resume: bool = False
    data_dir_b: str | None = None  # second domain (CycleGAN)
    sample_every: int = 200
    flip: bool = True
    extras: dict = field(default_factory=dict)
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)

    _decoders: ClassVar[dict] = {
        "runtime": lambda v: _runtime(v),
    }

    def __post_init__(self):
        object.__setattr__(self, "extras", dict(self.extras))
        if self.steps < 1:
            raise InputError("Training needs at least 1 step.")
        if not 8 <= self.resolution <= 1024:
            raise InputError("Resolution must be between 8 and 1024 pixels.")
        if not 1 <= self.batch_size <= 1024:
            raise InputError("Batch size must be between 1 and 1024.")
        if not self.data_dir:
            raise InputError("Choose a folder of images to train on.")
        if not self.out_dir:
            raise InputError("Choose a folder to save the trained model in.")


REQUEST_TYPES: dict[str, type[Serialisable]] = {
    GenerationRequest.type_name: GenerationRequest,
    TrainingRequest.type_name: TrainingRequest,
}


def register_request_type(cls: type[Serialisable]) -> type[Serialisable]:
    """Class decorator: make a request type loadable by `request_from_dict`."""
    REQUEST_TYPES[cls.type_name] = cls
    return cls


def request_from_dict(data: dict[str, Any]) -> Serialisable:
    kind = data.get("type", GenerationRequest.type_name)
    if kind not in REQUEST_TYPES:
        raise InputError(f"Unknown job type '{kind}'.")
    return REQUEST_TYPES[kind].from_dict(data)


# -- understanding and judging images (metrics, prompt help, image to text) -------------------

#: KID defaults from the KID paper (Binkowski et al. 2018): 100 subsets of up to 1000 images.
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


def _paths(value: Any) -> tuple[str, ...]:
    """A set of images as a tuple of paths: one folder, image files, or a mix of both."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value.strip() else ()
    return tuple(str(v) for v in value if str(v).strip())


def _check_model_folder(model: str, what: str) -> None:
    if not model.strip():
        raise InputError(f"Choose a {what} model folder.")


@register_request_type
@dataclass(frozen=True)
class EvaluateRequest(Serialisable):
    """FID and KID between two sets of images (folders, gallery selections or batches)."""

    type_name: ClassVar[str] = "evaluate"

    set_a: tuple[str, ...] = ()
    set_b: tuple[str, ...] = ()
    batch_size: int = 32
    kid_subsets: int = KID_SUBSETS
    kid_subset_size: int = KID_SUBSET_SIZE
    seed: int = 0  # draws KID's subsets, so the same sets always give the same KID
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)

    _decoders: ClassVar[dict] = {
        "runtime": lambda v: _runtime(v),
    }

    def __post_init__(self):
        object.__setattr__(self, "set_a", _paths(self.set_a))
        object.__setattr__(self, "set_b", _paths(self.set_b))
        if not self.set_a or not self.set_b:
            raise InputError("Choose two sets of images to compare (set A and set B).")
        if not 1 <= self.batch_size <= 512:
            raise InputError("Batch size must be between 1 and 512.")
        if not 1 <= self.kid_subsets <= 10000:
            raise InputError("KID subsets must be between 1 and 10000.")
        if self.kid_subset_size < 2:
            raise InputError("KID subset size must be at least 2 images.")
        if not 0 <= self.seed <= MAX_SEED:
            raise InputError(f"Seed must be between 0 and {MAX_SEED} (got {self.seed}).")


@register_request_type
@dataclass(frozen=True)
class ClipScoreRequest(Serialisable):
    """How well images agree with a prompt (CLIPScore) with a CLIP model folder."""

    type_name: ClassVar[str] = "clip_score"

    images: tuple[str, ...] = ()
    prompt: str = ""
    model: str = ""
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)

    _decoders: ClassVar[dict] = {
        "runtime": lambda v: _runtime(v),
    }

    def __post_init__(self):
        object.__setattr__(self, "images", _paths(self.images))
        if not self.images:
            raise InputError("Choose at least one image (or a folder of images) to score.")
        if not self.prompt.strip():
            raise InputError("Type the prompt the images should match.")
        _check_model_folder(self.model, "CLIP")


@register_request_type
@dataclass(frozen=True)
class CaptionRequest(Serialisable):
    """Describe an image in words with an image-to-text model folder."""

    type_name: ClassVar[str] = "caption"

    image: str = ""
    model: str = ""
    max_new_tokens: int = 40
    num_beams: int = 3
    #: text the caption starts with (BLIP-style conditional captioning), e.g. "a painting of"
    prefix: str = ""
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)

    _decoders: ClassVar[dict] = {
        "runtime": lambda v: _runtime(v),
    }

    def __post_init__(self):
        if not self.image.strip():
            raise InputError("Choose an image to describe.")
        _check_model_folder(self.model, "captioning (image-to-text)")
        if not 1 <= self.max_new_tokens <= 200:
            raise InputError("Caption length must be between 1 and 200 tokens.")
        if not 1 <= self.num_beams <= 8:
            raise InputError("Beams must be between 1 and 8.")


@register_request_type
@dataclass(frozen=True)
class InterrogateRequest(Serialisable):
    """Rank style and keyword fragments for an image with a CLIP model folder."""

    type_name: ClassVar[str] = "interrogate"

    image: str = ""
    model: str = ""
    top_k: int = 8
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)

    _decoders: ClassVar[dict] = {
        "runtime": lambda v: _runtime(v),
    }

    def __post_init__(self):
        if not self.image.strip():
            raise InputError("Choose an image to interrogate.")
        _check_model_folder(self.model, "CLIP")
        if not 1 <= self.top_k <= 50:
            raise InputError("Top-k must be between 1 and 50.")


@register_request_type
@dataclass(frozen=True)
class ExpandPromptRequest(Serialisable):
    """Grow a short prompt into a richer one.

    With `model` (a causal language model folder) the prompt is continued by the model, seeded;
    without one, the closest style and keyword fragments are retrieved with MiniLM embeddings.
    """

    type_name: ClassVar[str] = "expand_prompt"

    prompt: str = ""
    model: str = ""  # empty: retrieval expansion, no language model needed
    seed: int = 0
    max_new_tokens: int = 48
    temperature: float = 0.8
    top_p: float = 0.95
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)

    _decoders: ClassVar[dict] = {
        "runtime": lambda v: _runtime(v),
    }

    def __post_init__(self):
        if not self.prompt.strip():
            raise InputError("Type a prompt to expand.")
        if not 0 <= self.seed <= MAX_SEED:
            raise InputError(f"Seed must be between 0 and {MAX_SEED} (got {self.seed}).")
        if not 1 <= self.max_new_tokens <= 200:
            raise InputError("Expansion length must be between 1 and 200 tokens.")
        if not 0.0 < self.temperature <= 2.0:
            raise InputError("Temperature must be above 0 and at most 2.")
        if not 0.0 < self.top_p <= 1.0:
            raise InputError("Top-p must be above 0 and at most 1.")


@register_request_type
@dataclass(frozen=True)
class UpscaleRequest(Serialisable):
    """Enlarge an image with an upscaler model file (ESRGAN, Real-ESRGAN, SwinIR, HAT, ... read
    through spandrel), or with a plain Lanczos resize when `model` is empty.

    Large images are processed in tiles of `tile_size` pixels (0 = whole image at once) that
    overlap by `tile_overlap` pixels and are blended, so memory stays bounded. `scale` is the
    final enlargement; 0 means the model's own factor (2 for Lanczos).
    """

    type_name: ClassVar[str] = "upscale"

    image: str = ""
    model: str = ""
    scale: float = 0.0
    tile_size: int = 256
    tile_overlap: int = 16
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)

    _decoders: ClassVar[dict] = {
        "runtime": lambda v: _runtime(v),
    }

    def __post_init__(self):
        if not self.image:
            raise InputError("Choose an image to upscale.")
        if self.scale != 0 and not 1.0 <= self.scale <= 8.0:
            raise InputError(f"Upscale factor must be between 1 and 8 (got {self.scale}).")
        if self.tile_size != 0 and not 32 <= self.tile_size <= 4096:
            raise InputError("Tile size must be 0 (no tiling) or between 32 and 4096 pixels.")
        if not 0 <= self.tile_overlap <= 256:
            raise InputError("Tile overlap must be between 0 and 256 pixels.")
        if self.tile_size and self.tile_overlap * 2 >= self.tile_size:
            raise InputError("Tile overlap must be less than half the tile size.")


@register_request_type
@dataclass(frozen=True)
class DownloadRequest(Serialisable):
    """Download a model repository from the Hugging Face hub into Easel's models folder.

    The only job that uses the network, and only when the user asks. Resumable and cancellable.
    """

    type_name: ClassVar[str] = "download"

    repo_id: str = ""
    revision: str = "main"
    name: str = ""  # folder name in the models folder; default: the repo's name

    def __post_init__(self):
        parts = self.repo_id.strip().split("/")
        if len(parts) != 2 or not all(parts):
            raise InputError(
                f"'{self.repo_id}' is not a Hugging Face repo id; it looks like 'owner/model-name'."
            )
        if not self.revision.strip():
            raise InputError("Give a revision (branch, tag or commit), e.g. 'main'.")


@register_request_type
@dataclass(frozen=True)
class ScanLibraryRequest(Serialisable):
    """Find and identify models in every library source (run on the worker: hashing a large
    library takes a while). With `hash_files`, SHA-256 hashes are computed too (cached)."""

    type_name: ClassVar[str] = "scan_library"

    hash_files: bool = False
    include_hf_cache: bool = True


@register_request_type
@dataclass(frozen=True)
class PreviewDecoderRequest(Serialisable):
    """Build (distil) the fast preview decoder of an SD 1.x/2.x/SDXL model from its own VAE and
    cache it, so previews and live painting decode about ten times faster. A short training on
    the worker (minutes on a CPU), cancellable; needed once per model."""

    type_name: ClassVar[str] = "preview_decoder"

    model: str = ""
    steps: int = 300
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)

    _decoders: ClassVar[dict] = {
        "runtime": lambda v: _runtime(v),
    }

    def __post_init__(self):
        if not self.model:
            raise InputError("Choose the model to build a preview decoder for.")
        if not 1 <= self.steps <= 5000:
            raise InputError(f"Training steps must be between 1 and 5000 (got {self.steps}).")
