"""What each model can do, declared once, and the one check every generation request passes.

A request may ask for things a model cannot do: emoji-ldm makes 64x64 pictures and samples with
DDIM or DDPM, a DCGAN cannot start from a picture, no native model takes a LoRA. Before any work,
`check_request` either refuses with one message the user can act on, or applies a documented
fallback (the model's own size, the sampler it runs) and says so in a notice; the request it
returns is what really runs, so metadata and "reuse settings" describe the picture.

The desktop app enables its controls from the same `Capabilities` (no torch here: it is read on
the GUI thread when a model is chosen), so the panel and the engine never disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from engine.api import SAMPLERS, TOKEN_SAMPLERS, GenerationRequest, Mode, round_to_multiple
from engine.errors import InputError

MODE_WORDS = {
    Mode.TXT2IMG: "make a picture from text",
    Mode.IMG2IMG: "start from an image",
    Mode.INPAINT: "repaint a masked area",
}
MODE_TITLES = {
    Mode.TXT2IMG: "text-to-image",
    Mode.IMG2IMG: "image-to-image",
    Mode.INPAINT: "inpaint",
}

#: how a model uses `init_image`: "image-modes" (img2img and inpaint only, ignored in txt2img),
#: "required" (always: CycleGAN translates pictures), "source" (any mode: a VAE reconstructs or
#: explores from it), "never"
InitUse = str


@dataclass(frozen=True)
class Capabilities:
    """One model's declaration: what the panel offers and what the engine accepts."""

    name: str
    family: str
    #: what the model makes, for messages ("64x64 pictures from text")
    makes: str
    modes: frozenset[Mode] = frozenset(Mode)
    #: samplers it runs; () for models that take no sampler (GANs, VAEs)
    samplers: tuple[str, ...] = SAMPLERS
    default_sampler: str = ""
    #: side of the square pictures it always makes; None: any size (multiples of `size_step`)
    fixed_size: int | None = None
    size_step: int = 8
    loras: bool = True
    #: ControlNet units, image prompts, regional prompts and the hires fix (SD 1.x/2.x/SDXL)
    control: bool = True
    #: the family title when the model reads one control image itself (FLUX.1 Canny / Depth):
    #: one control unit, required, without a ControlNet, weight or range
    reads_control: str = ""
    #: what to say to a request with steering this model cannot use (after "Remove them or")
    steering_hint: str = "choose an SD 1.x or SDXL model"
    reads_prompt: bool = True
    guidance: bool = True
    steps: bool = True
    #: img2img uses `strength` (SDEdit); False where a picture is reconstructed or translated
    strength: bool = True
    init_use: InitUse = "image-modes"
    #: what to choose instead, for refusals
    suggestion: str = "Choose a Stable Diffusion model"
    notes: tuple[str, ...] = field(default_factory=tuple)

    def supports(self, mode: Mode | str) -> bool:
        return Mode(mode) in self.modes

    def unused_fields(self, request: GenerationRequest) -> tuple[str, ...]:
        """Request fields this model did not use for `request` (left out of its metadata)."""
        unused = []
        if not self.samplers:
            unused.append("sampler")
        if not self.steps:
            unused.append("steps")
        if not self.guidance:
            unused.append("guidance_scale")
        if not self.reads_prompt:
            unused.append("negative_prompt")
        if request.mode is Mode.TXT2IMG or not self.strength:
            unused.append("strength")
        if not self.loras:
            unused.append("loras")
        return tuple(unused)


# -- declarations -------------------------------------------------------------------------------
def sd_capabilities(name: str, base: str = "", variant: str = "") -> Capabilities:
    """Stable Diffusion-class models through diffusers. SD 1.x/2.x/SDXL run every mode, sampler
    and LoRA (an inpaint UNet too); SD3 and FLUX declare what their family table says."""
    from engine.sd.modern_families import MODERN_BASES, family_spec

    if base in MODERN_BASES:
        return _modern(name, family_spec(base, variant))
    return Capabilities(
        name=name,
        family="sd",
        makes="pictures of any size (multiples of 8)",
        default_sampler="Euler a",
    )


def _modern(name: str, spec) -> Capabilities:
    notes = []
    if spec.guidance == "distilled":
        notes.append(f"{spec.title} takes guidance as an input (distilled), not as CFG.")
    elif spec.guidance == "none":
        notes.append(f"{spec.title} is distilled to few steps: guidance is not used.")
    if spec.control:
        notes.append(f"{spec.title} reads one control image itself (no ControlNet, no weight).")
    hint = "choose an SD 1.x or SDXL model"
    if spec.base == "flux" and not spec.control:
        hint = (
            "choose a FLUX.1 Canny or Depth model (they read a control image themselves), or "
            "an SD 1.x or SDXL model with a ControlNet"
        )
    return Capabilities(
        name=name,
        family="sd",
        makes=f"pictures of any size (multiples of {spec.size_multiple})",
        modes=frozenset(spec.modes),
        samplers=spec.samplers,
        default_sampler=spec.defaults.sampler,
        size_step=spec.size_multiple,
        loras=spec.lora,
        control=bool(spec.control),
        reads_control=spec.title if spec.control else "",
        steering_hint=hint,
        guidance=spec.guidance != "none",
        strength=not spec.reference_edit,
        suggestion="Choose an SD 1.x or SDXL model",
        notes=tuple(notes),
    )


def native_capabilities(name: str, config: dict) -> Capabilities:
    """Easel's own families, from the model folder's config.json (no torch, no weights)."""
    family = str(config.get("family", "")).lower()
    declare = _NATIVE.get(family)
    if declare is None:
        return Capabilities(
            name=name, family=family or "unknown", makes="pictures", loras=False, control=False
        )
    return declare(name, family, config)


def _side(config: dict) -> int | None:
    try:
        return int(config["resolution"])
    except (KeyError, TypeError, ValueError):
        return None


def _diffusion(name: str, family: str, config: dict) -> Capabilities:
    side = _side(config)
    unet = config.get("unet") if isinstance(config.get("unet"), dict) else {}
    conditioning = str(unet.get("conditioning") or config.get("conditioning") or "none")
    guided = conditioning in ("text", "class")
    source = {"text": "from text", "class": "of a chosen class"}.get(conditioning, "from noise")
    sampler = str(config.get("sampler") or "DDIM").upper()
    return Capabilities(
        name=name,
        family=family,
        makes=f"{side}x{side} pictures {source}",
        samplers=("DDIM", "DDPM"),
        default_sampler=sampler if sampler in ("DDIM", "DDPM") else "DDIM",
        fixed_size=side,
        loras=False,
        control=False,
        reads_prompt=guided,
        guidance=guided,
        suggestion="Choose a Stable Diffusion model",
        notes=(
            "Image-to-image noises the picture to the chosen strength and denoises it (SDEdit).",
            "Inpaint keeps the unmasked area at every step (RePaint); pixels outside the mask "
            "are kept exactly.",
            *(_RERANK_NOTE if family == "ldm" and conditioning == "text" else ()),
        ),
    )


_RERANK_NOTE = (
    "extras: candidates = N makes N pictures from text and keeps the best by image-text "
    "similarity (re-ranking; needs the folder's re-ranking gallery or extras clip_model).",
)


def _gan(name: str, family: str, config: dict) -> Capabilities:
    side = _side(config)
    return Capabilities(
        name=name,
        family=family,
        makes=f"{side}x{side} pictures from noise",
        modes=frozenset({Mode.TXT2IMG}),
        samplers=(),
        fixed_size=side,
        loras=False,
        control=False,
        reads_prompt=False,
        guidance=False,
        steps=False,
        strength=False,
        init_use="never",
        suggestion="Choose a Stable Diffusion or diffusion model",
    )


def _vae(name: str, family: str, config: dict) -> Capabilities:
    side = _side(config)
    return Capabilities(
        name=name,
        family=family,
        makes=f"{side}x{side} pictures from its latent space",
        modes=frozenset({Mode.TXT2IMG, Mode.IMG2IMG}),
        samplers=(),
        fixed_size=side,
        loras=False,
        control=False,
        reads_prompt=False,
        guidance=False,
        steps=False,
        strength=False,
        init_use="source",
        suggestion="Choose a Stable Diffusion or diffusion model",
        notes=("Image-to-image reconstructs the picture through the latent space.",),
    )


def _cyclegan(name: str, family: str, config: dict) -> Capabilities:
    del config
    return Capabilities(
        name=name,
        family=family,
        makes="translations of a picture into its other domain",
        modes=frozenset({Mode.IMG2IMG}),
        samplers=(),
        size_step=1,
        loras=False,
        control=False,
        reads_prompt=False,
        guidance=False,
        steps=False,
        strength=False,
        init_use="required",
        suggestion="Choose a Stable Diffusion model",
    )


def _dalle(name: str, family: str, config: dict) -> Capabilities:
    side = _side(config)
    text = str(config.get("conditioning") or "text") == "text"
    sampler = str(config.get("sampler") or "top-k")
    return Capabilities(
        name=name,
        family=family,
        makes=f"{side}x{side} pictures {'from text' if text else 'from noise'}, token by token",
        modes=frozenset({Mode.TXT2IMG, Mode.INPAINT}),
        samplers=TOKEN_SAMPLERS,
        default_sampler=sampler if sampler in TOKEN_SAMPLERS else "top-k",
        fixed_size=side,
        loras=False,
        control=False,
        reads_prompt=text,
        guidance=text,
        # one transformer step per image token: there is no step count to choose
        steps=False,
        strength=False,
        suggestion="Choose a Stable Diffusion or diffusion model",
        notes=(
            "Inpaint keeps the picture's tokens outside the mask and resamples those inside; "
            "pixels outside the mask are kept exactly.",
            "extras: temperature, top_k, top_p; candidates = N makes N pictures and keeps the "
            "best by image-text similarity (re-ranking).",
        ),
    )


_NATIVE: dict[str, Callable[[str, str, dict], Capabilities]] = {
    "dalle": _dalle,
    "ddpm": _diffusion,
    "ldm": _diffusion,
    "dcgan": _gan,
    "stylegan": _gan,
    "vae": _vae,
    "beta-vae": _vae,
    "nvae": _vae,
    "cyclegan": _cyclegan,
}


# -- the check ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Checked:
    """The request that will run (fallbacks applied) and what the user is told about them."""

    request: GenerationRequest
    notices: tuple[str, ...] = ()


def check_request(request: GenerationRequest, caps: Capabilities) -> Checked:
    """Refuse what `caps` cannot do (InputError), or apply its documented fallbacks."""
    notices: list[str] = []
    if caps.init_use == "required" and request.mode is Mode.TXT2IMG and request.init_image:
        # a translator given a picture in the default mode: it can only mean image-to-image
        request = request.replace(mode=Mode.IMG2IMG)
        notices.append(f"{caps.name} translates pictures: the run was image-to-image.")
    _refuse_unsupported(request, caps)
    changes: dict = {}
    if request.mode is Mode.TXT2IMG and caps.init_use == "image-modes":
        if request.init_image or request.mask_image:
            changes.update(init_image=None, mask_image=None)  # not used: not recorded either
    if request.mode is Mode.IMG2IMG and request.mask_image:
        changes["mask_image"] = None
    if caps.samplers and request.sampler not in caps.samplers:
        chosen = caps.default_sampler or caps.samplers[0]
        notices.append(
            f"{caps.name} samples with {' or '.join(caps.samplers)}; '{request.sampler}' is not "
            f"available for it, so {chosen} ran."
        )
        changes["sampler"] = chosen
    side = caps.fixed_size
    if side and request.mode is Mode.TXT2IMG and (request.width, request.height) != (side, side):
        notices.append(
            f"{caps.name} makes {side}x{side} pictures; the {request.width}x{request.height} "
            "size was not used."
        )
        changes.update(width=side, height=side)
    step = caps.size_step
    if not side and step > 1 and (request.width % step or request.height % step):
        width, height = (round_to_multiple(v, step) for v in (request.width, request.height))
        notices.append(
            f"{caps.name} makes sizes in multiples of {step}: {request.width}x{request.height} "
            f"ran as {width}x{height}."
        )
        changes.update(width=width, height=height)
    if not caps.reads_prompt and request.prompt.strip():
        notices.append(f"{caps.name} takes no text; the prompt only labels the picture.")
    return Checked(request.replace(**changes) if changes else request, tuple(notices))


def _refuse_unsupported(request: GenerationRequest, caps: Capabilities) -> None:
    if request.mode not in caps.modes:
        can = ", ".join(MODE_TITLES[m] for m in Mode if m in caps.modes)
        raise InputError(
            f"{caps.name} makes {caps.makes}; it cannot {MODE_WORDS[request.mode]}. "
            f"{caps.suggestion} for {MODE_TITLES[request.mode]} (this model does: {can})."
        )
    if caps.init_use == "never" and request.init_image:
        raise InputError(
            f"{caps.name} makes {caps.makes}; it cannot start from an image. "
            f"{caps.suggestion} for image-to-image."
        )
    if caps.init_use == "required" and not request.init_image:
        raise InputError(f"{caps.name} makes {caps.makes}: give it a picture to start from.")
    if request.loras and not caps.loras:
        names = ", ".join(lora.path.rsplit("/", 1)[-1] for lora in request.loras)
        if caps.family == "sd":  # an SD3/FLUX model: the family runs, its LoRAs do not yet
            raise InputError(
                f"LoRAs are not applied to {caps.name} yet ({names}); remove them, or choose "
                "an SD 1.x or SDXL model to use them."
            )
        raise InputError(
            f"{caps.name} cannot use LoRAs ({names}): LoRAs adapt Stable Diffusion models. "
            "Remove them or choose a Stable Diffusion model."
        )
    if caps.reads_control:
        from engine.sd.flux_control import check_control_request

        check_control_request(request, caps.reads_control)
        return
    steering = _steering_parts(request)
    if steering and not caps.control:
        raise InputError(
            f"{caps.name} cannot use {' or '.join(steering)}: they steer SD 1.x and SDXL models. "
            f"Remove them or {caps.steering_hint}."
        )


def _steering_parts(request: GenerationRequest) -> list[str]:
    parts = {
        "ControlNet": request.control,
        "image prompts": request.image_prompts,
        "regional prompts": request.regions,
        "the hires fix": request.hires,
    }
    return [name for name, value in parts.items() if value]
