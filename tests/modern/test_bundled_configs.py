"""The bundled SD3 / SD3.5 / FLUX.1 configs build the published architectures (on the meta
device: no memory, seconds), their tensors are what the probe reads in real files, and the
bundled T5 tokenizer is T5's."""

from __future__ import annotations

import functools
import json

import pytest
import torch

from engine.library.probe import classify
from engine.paths import resource
from engine.sd.modern_families import family_spec
from engine.sd.modern_parts import BUNDLED_CONFIGS, bundled_config, config_slots

# Published sizes in millions of tensors the released files hold (a transformer's positional
# table included): FLUX.1 11.9 B (23.8 GB in bf16), SD3 Medium 2.08 B (its 4.17 GB MMDiT),
# SD3.5 Medium 2.47 B, SD3.5 Large 8.15 B, T5-XXL encoder 4.76 B, CLIP-G 694.7 M,
# CLIP-L 123.1 M (123.7 M with SD3's projection), the 16-channel VAE 83.8 M.
T5, CLIP_G, CLIP_L, CLIP_L_PROJ, VAE = 4762.3, 694.7, 123.1, 123.7, 83.8
EXPECTED_MILLIONS = {
    "sd3-medium": {"transformer": 2084.9},
    "sd3.5-medium": {"transformer": 2469.7},
    "sd3.5-large": {"transformer": 8146.3},
    "sd3.5-large-turbo": {"transformer": 8146.3},
    "flux-dev": {"transformer": 11901.4},
    "flux-schnell": {"transformer": 11891.2},  # no guidance embedder
}
SD3_ENCODERS = {"text_encoder": CLIP_L_PROJ, "text_encoder_2": CLIP_G, "text_encoder_3": T5}
FLUX_ENCODERS = {"text_encoder": CLIP_L, "text_encoder_2": T5}
#: what the probe must say of each config's transformer, text encoders and VAE
PROBED = {
    "sd3-medium": ("sd3", "medium"),
    "sd3.5-medium": ("sd3", "3.5-medium"),
    "sd3.5-large": ("sd3", "large"),
    "sd3.5-large-turbo": ("sd3", "large-turbo"),
    "flux-dev": ("flux", "dev"),
    "flux-schnell": ("flux", "schnell"),
}
SD3_TOKENIZERS = {"tokenizer": "clip", "tokenizer_2": "clip-g", "tokenizer_3": "t5"}
ENCODER_VARIANTS = {CLIP_L: "clip-l", CLIP_L_PROJ: "clip-l", CLIP_G: "clip-g", T5: "t5-xxl"}


@functools.cache
def _meta_model(config_text: str, library: str, class_name: str):
    """A model built on the meta device from a config (cached: the configs share encoders)."""
    import diffusers
    import transformers

    values = json.loads(config_text)
    with torch.device("meta"):
        if library == "diffusers":
            cls = getattr(diffusers, class_name)
            return cls.from_config(values)
        cls = getattr(transformers, class_name)
        return cls(cls.config_class.from_dict(values))


def _component(folder, component):
    index = json.loads((folder / "model_index.json").read_text())
    library, class_name = index[component]
    name = "config.json"
    return _meta_model((folder / component / name).read_text(), library, class_name)


def _stored_millions(model) -> float:
    """Parameters (tied ones once) plus persistent buffers: the tensors a released file holds."""
    persistent = set(model.state_dict())
    total = sum(p.numel() for p in model.parameters())
    total += sum(b.numel() for name, b in model.named_buffers() if name in persistent)
    return round(total / 1e6, 1)


def _shapes(model) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", sorted(EXPECTED_MILLIONS))
def test_bundled_config_builds_the_published_sizes(name):
    folder = resource("configs", name)
    expected = dict(EXPECTED_MILLIONS[name], vae=VAE)
    expected.update(SD3_ENCODERS if name.startswith("sd3") else FLUX_ENCODERS)
    sizes = {component: _stored_millions(_component(folder, component)) for component in expected}
    assert sizes == pytest.approx(expected, abs=0.15)


@pytest.mark.parametrize("name", sorted(PROBED))
def test_the_probe_reads_the_bundled_architectures_as_real_files(name):
    """The transformer's tensors (diffusers names) probe as the family and variant the config is
    bundled for, each text encoder as its variant, and every slot accepts that file."""
    folder = resource("configs", name)
    base, variant = PROBED[name]
    metadata = {"modelspec.title": "Stable Diffusion 3.5 Large Turbo"} if "turbo" in name else {}
    transformer = classify(_shapes(_component(folder, "transformer")), metadata)
    assert (transformer.kind, transformer.base) == ("checkpoint", base)
    assert transformer.variant == variant
    assert bundled_config(family_spec(base, transformer.variant)) == folder
    expected = SD3_ENCODERS if base == "sd3" else FLUX_ENCODERS
    for slot in config_slots(folder):
        if slot.architecture == "vae":
            vae_shapes = _shapes(_component(folder, "vae"))
            probed = classify(vae_shapes, {})
            assert (probed.kind, probed.details["latent_channels"]) == ("vae", 16)
        else:
            probed = classify(_shapes(_component(folder, slot.component)), {})
            assert probed.kind == "text_encoder"
            assert probed.variant == ENCODER_VARIANTS[expected[slot.component]]
        assert slot.fits(probed), (slot, probed)


def test_every_family_variant_has_a_bundled_config():
    for base, variant in BUNDLED_CONFIGS:
        assert bundled_config(family_spec(base, variant)) is not None, (base, variant)
    turbo = json.loads((resource("configs", "sd3.5-large-turbo") / "easel.json").read_text())
    assert turbo["tokenizers"] == SD3_TOKENIZERS


def test_bundled_t5_tokenizer_is_t5s(no_network):
    from transformers import T5TokenizerFast

    tokenizer = T5TokenizerFast.from_pretrained(
        str(resource("tokenizers", "t5")), local_files_only=True
    )
    assert tokenizer("a photo of a cat").input_ids == [3, 9, 1202, 13, 3, 9, 1712, 1]
    assert len(tokenizer) == 32100 and tokenizer.convert_tokens_to_ids("<extra_id_0>") == 32099
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    # SD3 pads T5's input to max_sequence_length with <pad>, ending the prompt with </s>
    padded = tokenizer("a cat", padding="max_length", max_length=8).input_ids
    assert padded == [3, 9, 1712, 1, 0, 0, 0, 0]


def test_the_shared_cache_gives_the_tiny_folders_the_bundled_t5(modern_models):
    from engine.sd import tokenizers

    bundled = tokenizers.bundled("t5")
    assert tokenizers.bundled("t5") is bundled  # built once
    from_folder = tokenizers.folder_tokenizers(modern_models["flux"])["tokenizer_2"]
    prompt = "an astronaut riding a horse, oil painting"
    assert from_folder(prompt).input_ids == bundled(prompt).input_ids
    assert set(tokenizers.folder_tokenizers(modern_models["sd3"])) == {
        "tokenizer",
        "tokenizer_2",
        "tokenizer_3",
    }
