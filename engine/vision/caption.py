"""The `CaptionRequest` job: describe an image in words with a local image-to-text model.

Two folder kinds, told apart by `config.json`'s `model_type`:
- `vision-encoder-decoder` (e.g. a ViT encoder with a GPT-2 decoder, "vit-gpt2-image-captioning"):
  `VisionEncoderDecoderModel` with the folder's image processor and tokenizer;
- `blip` (BLIP captioning): `BlipForConditionalGeneration` with its `BlipProcessor`.
Decoding is deterministic (greedy or beam search): the same image always gets the same caption.
The cancel token and progress run inside `generate` through a stopping criterion, checked after
every generated token.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from engine.api import CaptionRequest
from engine.context import JobContext
from engine.errors import ModelError, OutputError
from engine.events import Result
from engine.metrics.images import open_rgb
from engine.prompting.styles import printable_text
from engine.vision.folders import (
    ModelBundle,
    load_pretrained,
    read_model_config,
    require_model_type,
)

WHAT = "image-to-text (captioning)"
EXAMPLES = "a vision-encoder-decoder model such as vit-gpt2-image-captioning, or a BLIP captioner"
KINDS = ("vision-encoder-decoder", "blip")


def load_captioner(folder: str | Path, device: torch.device | str = "cpu") -> ModelBundle:
    path, config = read_model_config(folder, what=WHAT)
    kind = require_model_type(config, KINDS, folder=path, what=WHAT, examples=EXAMPLES)
    if kind == "blip":
        from transformers import BlipForConditionalGeneration, BlipProcessor

        processor = load_pretrained(BlipProcessor.from_pretrained, path, what="BLIP processor")
        model = load_pretrained(BlipForConditionalGeneration.from_pretrained, path, what=WHAT)
        processors = {"image": processor.image_processor, "tokenizer": processor.tokenizer}
    else:
        from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel

        processors = {
            "image": load_pretrained(AutoImageProcessor.from_pretrained, path, what=WHAT),
            "tokenizer": load_pretrained(AutoTokenizer.from_pretrained, path, what=WHAT),
        }
        model = load_pretrained(VisionEncoderDecoderModel.from_pretrained, path, what=WHAT)
    return ModelBundle(model.eval().to(device), processors, kind=kind)


class _TokenWatch:
    """A `generate` stopping criterion that never stops by itself: it checks the cancel token
    and reports how many tokens were generated so far."""

    def __init__(self, start_length: int, check_cancelled, on_token):
        self.start_length = start_length
        self.check_cancelled = check_cancelled
        self.on_token = on_token

    def __call__(self, input_ids, scores, **kwargs):
        self.check_cancelled()
        if self.on_token is not None:
            self.on_token(input_ids.shape[-1] - self.start_length)
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


@torch.inference_mode()
def caption_image(
    bundle: ModelBundle,
    image,
    *,
    max_new_tokens: int = 40,
    num_beams: int = 3,
    prefix: str = "",
    check_cancelled: Callable[[], None] = lambda: None,
    on_token: Callable[[int], None] | None = None,
) -> str:
    """The caption for one PIL image (starting with `prefix` when one is given)."""
    from transformers import StoppingCriteriaList

    model, tokenizer = bundle.model, bundle.processors["tokenizer"]
    device = next(model.parameters()).device
    pixels = bundle.processors["image"](images=[image], return_tensors="pt")["pixel_values"]
    inputs = {"pixel_values": pixels.to(device)}
    start = _prompt_ids(bundle, prefix)
    if start is not None:
        key = "input_ids" if bundle.kind == "blip" else "decoder_input_ids"
        inputs[key] = start.to(device)
    start_length = 1 if start is None else start.shape[-1]
    watch = _TokenWatch(start_length, check_cancelled, on_token)
    output = model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        min_new_tokens=1,  # an end token straight away would be an empty caption
        num_beams=num_beams,
        do_sample=False,
        stopping_criteria=StoppingCriteriaList([watch]),
    )
    caption = printable_text(tokenizer.decode(output[0], skip_special_tokens=True))
    if not caption or caption == prefix.strip():
        raise OutputError(
            "The captioning model wrote nothing readable for this image. Try more beams, a "
            "longer caption, or another model."
        )
    return caption


def _prompt_ids(bundle: ModelBundle, prefix: str) -> torch.Tensor | None:
    """Token ids the caption must start with, in the layout each model kind expects."""
    prefix = prefix.strip()
    if not prefix:
        return None
    tokenizer = bundle.processors["tokenizer"]
    if bundle.kind == "blip":
        # BLIP's processor format: [CLS] prefix [SEP]; the model swaps in its BOS and drops SEP
        return tokenizer(prefix, return_tensors="pt")["input_ids"]
    start_id = bundle.model.config.decoder_start_token_id
    if start_id is None:
        raise ModelError("This captioning model has no decoder start token; it cannot caption.")
    ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    return torch.tensor([[start_id, *ids]])


def run_caption(request: CaptionRequest, ctx: JobContext) -> Result:
    from engine.devices import prepare

    image = open_rgb(request.image)
    device, _ = prepare(request.runtime)
    ctx.progress(0, request.max_new_tokens, stage="Loading the captioning model")
    key = f"vision:caption:{request.model}:{device}"
    with ctx.cache.use(key, lambda: load_captioner(request.model, device)) as bundle:
        caption = caption_image(
            bundle,
            image,
            max_new_tokens=request.max_new_tokens,
            num_beams=request.num_beams,
            prefix=request.prefix,
            check_cancelled=ctx.check_cancelled,
            on_token=lambda n: ctx.progress(
                min(n, request.max_new_tokens), request.max_new_tokens, stage="Describing"
            ),
        )
    return Result(ctx.job_id, info={"caption": caption, "model_kind": bundle.kind})
