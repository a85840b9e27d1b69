"""Derive the Hugging Face CLIP tokenizer files from the CLIP BPE vocabulary.

Run once by a maintainer (the output is committed under resources/tokenizers/):

    pip download --no-deps open-clip-torch -d /tmp/oc
    python resources/tokenizers/derive_clip_tokenizer.py /tmp/oc/open_clip_torch-*.whl

The wheel (MIT) carries `open_clip/bpe_simple_vocab_16e6.txt.gz`, the vocabulary OpenAI's CLIP
and therefore Stable Diffusion 1.x/2.x/SDXL text encoders use. The Hugging Face layout follows
from it exactly as OpenAI's `simple_tokenizer.py` builds its table: the 256 byte symbols, the
same with `</w>`, one token per merge (48,894 merges), then `<|startoftext|>` and
`<|endoftext|>`: 49,408 ids. Two variants: `clip` (pad = `<|endoftext|>`, SD 1.x and SDXL's
first encoder) and `clip-g` (pad = `!`, id 0, as SDXL's second, OpenCLIP ViT-bigG tokenizer).
"""

from __future__ import annotations

import gzip
import json
import sys
import zipfile
from pathlib import Path

VOCAB_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 49152 - 256 - 2  # the slice OpenAI's tokenizer takes from the file


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode table (same order as OpenAI's)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=True))


def read_merges(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        text = gzip.decompress(archive.read(VOCAB_MEMBER)).decode("utf-8")
    lines = text.split("\n")[1 : N_MERGES + 1]  # line 0 is a version header
    return [line for line in lines if line]


def build_vocab(merges: list[str]) -> dict[str, int]:
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols]
    tokens += ["".join(merge.split()) for merge in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}


def tokenizer_config(pad_token: str) -> dict:
    return {
        "tokenizer_class": "CLIPTokenizer",
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": pad_token,
        "add_prefix_space": False,
        "do_lower_case": True,
        "errors": "replace",
        "model_max_length": 77,
    }


def special_tokens_map(pad_token: str) -> dict:
    return {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": pad_token,
    }


def write_variant(folder: Path, vocab: dict[str, int], merges: list[str], pad: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8"
    )
    dump = dict(indent=2, ensure_ascii=False)
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(pad), **dump))
    (folder / "special_tokens_map.json").write_text(json.dumps(special_tokens_map(pad), **dump))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    merges = read_merges(Path(argv[0]))
    vocab = build_vocab(merges)
    if len(vocab) != 49408:
        print(f"unexpected vocabulary size {len(vocab)} (expected 49408)")
        return 1
    here = Path(__file__).resolve().parent
    write_variant(here / "clip", vocab, merges, "<|endoftext|>")
    write_variant(here / "clip-g", vocab, merges, "!")
    print(f"wrote {len(vocab)} tokens, {len(merges)} merges to {here}/clip and clip-g")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
