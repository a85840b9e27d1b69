"""What each flow-matching transformer family runs: one table, no torch.

SD3 / SD3.5 (MMDiT, three text encoders) and FLUX.1 (double and single stream blocks, CLIP-L and
T5) differ from SD 1.x/SDXL in ways the rest of the engine must know: the sampler is the model's
flow-matching Euler, FLUX dev/schnell take guidance as an input of the transformer ("distilled
guidance", no negative prompt) instead of classifier-free guidance, sizes are multiples of 16
(8x VAE, then 2x2 patches), and the recommended steps differ by an order of magnitude between
the base and the distilled variants. `FAMILIES` holds all of it per (base, variant), so the
capability declaration can read it in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.api import Mode

ALL_MODES = (Mode.TXT2IMG, Mode.IMG2IMG, Mode.INPAINT)
#: diffusers' flow-matching Euler (FlowMatchEulerDiscreteScheduler) is what these models run
FLOW_SAMPLERS = ("Euler",)


@dataclass(frozen=True)
class StepDefaults:
    """The settings a model is made for (user-overridable): steps, guidance and sampler."""

    steps: int
    guidance_scale: float
    sampler: str = "Euler"


@dataclass(frozen=True)
class FamilySpec:
    base: str  # "sd3" | "flux" | "flux2"
    variant: str
    title: str
    defaults: StepDefaults
    #: "cfg" (classifier-free, uses the negative prompt), "distilled" (an input of the
    #: transformer, no negative prompt) or "none" (timestep-distilled: guidance is ignored)
    guidance: str
    modes: tuple[Mode, ...] = ALL_MODES
    samplers: tuple[str, ...] = FLOW_SAMPLERS
    size_multiple: int = 16
    default_size: int = 1024
    #: diffusers pipeline class per mode
    pipelines: dict = field(default_factory=dict)
    #: LoRAs go through the pipelines' diffusers loaders (kohya, original and diffusers keys)
    lora: bool = True
    #: components a single transformer file needs from a companion diffusers folder
    companions: tuple[str, ...] = ()
    #: img2img is an edit guided by the picture as a reference (FLUX Kontext, FLUX.2), not a
    #: partial denoise from it: there is no strength
    reference_edit: bool = False
    #: the control map the transformer itself reads (FLUX.1 Canny / Depth dev: its latents are
    #: concatenated to the image latents): "canny", "depth", "any" (the kind is not known: the
    #: unit's preprocessor says it) or "" (the model takes no control image)
    control: str = ""


_SD3_PIPELINES = {
    Mode.TXT2IMG: "StableDiffusion3Pipeline",
    Mode.IMG2IMG: "StableDiffusion3Img2ImgPipeline",
    Mode.INPAINT: "StableDiffusion3InpaintPipeline",
}
_FLUX_PIPELINES = {
    Mode.TXT2IMG: "FluxPipeline",
    Mode.IMG2IMG: "FluxImg2ImgPipeline",
    Mode.INPAINT: "FluxInpaintPipeline",
}
SD3_COMPANIONS = (
    "text_encoder",
    "text_encoder_2",
    "text_encoder_3",
    "tokenizer",
    "tokenizer_2",
    "tokenizer_3",
    "vae",
    "scheduler",
)
FLUX_COMPANIONS = ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae", "scheduler")
#: FLUX.2 has one text encoder (Mistral Small 3 for dev, Qwen3 for klein)
FLUX2_COMPANIONS = ("text_encoder", "tokenizer", "vae", "scheduler")
_FLUX_CONTROL_PIPELINES = {
    Mode.TXT2IMG: "FluxControlPipeline",
    Mode.IMG2IMG: "FluxControlImg2ImgPipeline",
    Mode.INPAINT: "FluxControlInpaintPipeline",
}
_KLEIN_PIPELINES = {
    Mode.TXT2IMG: "Flux2KleinPipeline",
    Mode.IMG2IMG: "Flux2KleinPipeline",
    Mode.INPAINT: "Flux2KleinInpaintPipeline",
}


def _klein(variant: str, title: str, defaults: StepDefaults, guidance: str) -> FamilySpec:
    return FamilySpec(
        "flux2",
        variant,
        title,
        defaults,
        guidance,
        pipelines=_KLEIN_PIPELINES,
        companions=FLUX2_COMPANIONS,
        reference_edit=True,
    )


def _flux_control(variant: str, title: str, defaults: StepDefaults, control: str) -> FamilySpec:
    return FamilySpec(
        "flux",
        variant,
        title,
        defaults,
        "distilled",
        pipelines=_FLUX_CONTROL_PIPELINES,
        companions=FLUX_COMPANIONS,
        control=control,
    )


#: what diffusers' docs and Black Forest Labs run the control models with: Canny dev 50 steps at
#: guidance 30, Depth dev 30 steps at guidance 10
CANNY_DEFAULTS = StepDefaults(50, 30.0)
DEPTH_DEFAULTS = StepDefaults(30, 10.0)


def _sd3(variant: str, title: str, steps: int, guidance: float) -> FamilySpec:
    kind = "cfg" if guidance > 0 else "none"
    return FamilySpec(
        "sd3",
        variant,
        title,
        StepDefaults(steps, guidance),
        kind,
        pipelines=_SD3_PIPELINES,
        companions=SD3_COMPANIONS,
    )


FAMILIES: dict[tuple[str, str], FamilySpec] = {
    ("sd3", "medium"): _sd3("medium", "SD3 Medium", 28, 7.0),
    ("sd3", "3.5-medium"): _sd3("3.5-medium", "SD3.5 Medium", 40, 4.5),
    ("sd3", "large"): _sd3("large", "SD3.5 Large", 28, 3.5),
    ("sd3", "large-turbo"): _sd3("large-turbo", "SD3.5 Large Turbo", 4, 0.0),
    ("sd3", ""): _sd3("", "SD3", 28, 5.0),  # another depth: the family's middle ground
    ("flux", "dev"): FamilySpec(
        "flux",
        "dev",
        "FLUX.1 dev",
        StepDefaults(28, 3.5),
        "distilled",
        pipelines=_FLUX_PIPELINES,
        companions=FLUX_COMPANIONS,
    ),
    ("flux", "schnell"): FamilySpec(
        "flux",
        "schnell",
        "FLUX.1 schnell",
        StepDefaults(4, 0.0),
        "none",
        pipelines=_FLUX_PIPELINES,
        companions=FLUX_COMPANIONS,
    ),
    ("flux", "fill"): FamilySpec(
        "flux",
        "fill",
        "FLUX.1 Fill",
        StepDefaults(50, 30.0),
        "distilled",
        modes=(Mode.INPAINT,),
        pipelines={Mode.INPAINT: "FluxFillPipeline"},
        companions=FLUX_COMPANIONS,
    ),
    ("flux", "kontext"): FamilySpec(
        "flux",
        "kontext",
        "FLUX.1 Kontext",
        StepDefaults(28, 2.5),
        "distilled",
        modes=(Mode.TXT2IMG, Mode.IMG2IMG),
        pipelines={Mode.TXT2IMG: "FluxKontextPipeline", Mode.IMG2IMG: "FluxKontextPipeline"},
        companions=FLUX_COMPANIONS,
        reference_edit=True,
    ),
    ("flux", "control-canny"): _flux_control(
        "control-canny", "FLUX.1 Canny", CANNY_DEFAULTS, "canny"
    ),
    ("flux", "control-depth"): _flux_control(
        "control-depth", "FLUX.1 Depth", DEPTH_DEFAULTS, "depth"
    ),
    # Canny or Depth, the file does not say: the job takes the kind from the unit's
    # preprocessor (engine.sd.flux_control.spec_for_unit); these defaults are Canny's
    ("flux", "control"): _flux_control("control", "FLUX.1 control", CANNY_DEFAULTS, "any"),
    # FLUX.2: the image-to-image mode edits with the picture as a reference (several can be
    # given to the pipeline; Easel sends the init picture)
    ("flux2", "dev"): FamilySpec(
        "flux2",
        "dev",
        "FLUX.2 dev",
        StepDefaults(50, 4.0),
        "distilled",
        modes=(Mode.TXT2IMG, Mode.IMG2IMG),
        pipelines={Mode.TXT2IMG: "Flux2Pipeline", Mode.IMG2IMG: "Flux2Pipeline"},
        companions=FLUX2_COMPANIONS,
        reference_edit=True,
    ),
    # klein's distilled release (4 steps, guidance ignored) and its undistilled base (CFG)
    ("flux2", "klein"): _klein("klein", "FLUX.2 klein", StepDefaults(4, 1.0), "none"),
    ("flux2", "klein-base"): _klein(
        "klein-base", "FLUX.2 klein base", StepDefaults(50, 4.0), "cfg"
    ),
}

MODERN_BASES = frozenset(base for base, _ in FAMILIES)
#: probe variant parts that describe storage, not the model (quantisation)
_STORAGE_WORDS = ("fp8", "fp8-e5m2", "fp8-scaled", "bf16", "fp16", "F16", "F32", "BF16")


def model_variant(variant: str) -> str:
    """The model part of a probe variant ('dev,Q4_K' -> 'dev')."""
    for part in variant.split(","):
        if part and part not in _STORAGE_WORDS and not part.startswith(("Q", "IQ", "TQ")):
            return part
    return ""


def family_spec(base: str, variant: str) -> FamilySpec:
    """The table entry for a probed (base, variant); other SD3 depths use the generic entry."""
    name = model_variant(variant)
    spec = FAMILIES.get((base, name))
    if spec is None and base == "sd3":
        spec = FAMILIES[("sd3", "")]
    if spec is None:
        from engine.errors import ModelError

        raise ModelError(f"Easel does not run {base} '{variant}' models yet.")
    return spec
