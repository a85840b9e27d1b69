"""Loading a causal language model folder and sampling a bounded, seeded continuation.

Our own loop instead of `model.generate`: it uses a private `torch.Generator` (the same seed
gives the same text and global random state is untouched), checks the cancel token before every
token, reports progress per token and stops at the end-of-text token or a newline (a prompt is
one line).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import torch

from engine.errors import InputError
from engine.vision.folders import (
    ModelBundle,
    load_pretrained,
    read_model_config,
    require_model_type,
)

WHAT = "causal language model"
EXAMPLES = "e.g. GPT-2, a GPT-2 prompt expander, or a small instruction model"


def load_causal_lm(folder: str | Path, device: torch.device | str = "cpu") -> ModelBundle:
    """Model and tokenizer from a local `AutoModelForCausalLM` folder, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    path, config = read_model_config(folder, what=WHAT)
    require_model_type(
        config, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, folder=path, what=WHAT, examples=EXAMPLES
    )
    tokenizer = load_pretrained(AutoTokenizer.from_pretrained, path, what=f"{WHAT} tokenizer")
    model = load_pretrained(AutoModelForCausalLM.from_pretrained, path, what=WHAT)
    return ModelBundle(model.eval().to(device), {"tokenizer": tokenizer}, kind="causal-lm")


def nucleus_sample(
    logits: torch.Tensor, *, temperature: float, top_p: float, generator: torch.Generator
) -> int:
    """One token id from the smallest set of tokens whose probability reaches `top_p`."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    sorted_probs, order = probs.sort(descending=True)
    before = sorted_probs.cumsum(-1) - sorted_probs  # mass of the tokens ranked above each
    sorted_probs[before >= top_p] = 0.0  # the first token is always kept
    choice = torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=generator)
    return int(order[choice])


def _context_limit(model) -> int:
    config = model.config
    for name in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1024


@torch.inference_mode()
def sample_continuation(
    model,
    tokenizer,
    text: str,
    *,
    seed: int,
    max_new_tokens: int,
    temperature: float = 0.8,
    top_p: float = 0.95,
    check_cancelled: Callable[[], None] = lambda: None,
    on_token: Callable[[int], None] | None = None,
) -> str:
    """Up to `max_new_tokens` tokens continuing `text`, decoded (without `text` itself)."""
    device = next(model.parameters()).device
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    room = _context_limit(model) - max_new_tokens
    if room < 1:
        raise InputError(f"This model reads at most {room + max_new_tokens} tokens; ask for fewer.")
    ids = ids[:, -room:]
    if ids.shape[1] == 0:
        raise InputError("The prompt is empty after tokenizing; type a few words.")
    generator = torch.Generator().manual_seed(seed)
    stop_ids = _stop_ids(tokenizer, model)
    new_tokens: list[int] = []
    inputs, past = ids.to(device), None
    cache_name = _cache_argument(model)
    for step in range(max_new_tokens):
        check_cancelled()
        output = model(input_ids=inputs, use_cache=True, **{cache_name: past})
        past = output.get(cache_name)
        token = nucleus_sample(
            output.logits[0, -1].cpu(), temperature=temperature, top_p=top_p, generator=generator
        )
        if token in stop_ids:
            break
        new_tokens.append(token)
        if on_token is not None:
            on_token(step + 1)
        if "\n" in tokenizer.decode([token]):
            break
        inputs = torch.tensor([[token]], device=device)
    return tokenizer.decode(new_tokens, skip_special_tokens=True)


def _cache_argument(model) -> str:
    """The key/value cache's name: `cache` in transformers 5, `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _stop_ids(tokenizer, model) -> set[int]:
    ids = {tokenizer.eos_token_id, getattr(model.config, "eos_token_id", None)}
    flat: set[int] = set()
    for value in ids:
        if isinstance(value, int):
            flat.add(value)
        elif isinstance(value, (list, tuple)):
            flat.update(v for v in value if isinstance(v, int))
    return flat  # may be empty: then the token bound and the newline stop the text
