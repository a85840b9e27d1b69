"""The bundled CLIP tokenizer is the real one, derived from the CLIP BPE vocabulary."""

from __future__ import annotations

import pytest

from engine.paths import resource

CAT_IDS = [49406, 320, 1125, 539, 320, 2368, 49407]


@pytest.mark.parametrize("variant, pad_id", [("clip", 49407), ("clip-g", 0)])
def test_bundled_tokenizer_gives_known_ids(variant, pad_id, no_network):
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(resource("tokenizers", variant))
    assert tokenizer("a photo of a cat").input_ids == CAT_IDS
    assert len(tokenizer) == 49408
    assert tokenizer.pad_token_id == pad_id
    assert tokenizer.model_max_length == 77
    padded = tokenizer("a photo", padding="max_length", max_length=8).input_ids
    assert padded == [49406, 320, 1125, 49407] + [pad_id] * 4
