"""Control models in the user's library: ControlNets, IP-Adapters, CLIP image encoders and depth
models, as the library scan recorded them (kind and base come from the probe, never names)."""

from __future__ import annotations

from pathlib import Path

from engine.errors import ModelError

KIND_WORDS = {
    "controlnet": "ControlNet",
    "ip_adapter": "IP-Adapter",
    "image_encoder": "CLIP image encoder",
    "depth": "depth model",
}


def library_models(kind: str, base: str = "") -> list[Path]:
    """Paths of the library's usable models of `kind` (for `base` when given, or of unknown
    base, which the job checks against the model itself)."""
    from engine.library.records import ModelLibrary
    from engine.paths import database_path

    if not database_path().exists():
        return []
    found = []
    for record in ModelLibrary().list_models(kind=kind, include_missing=False):
        if record.status != "ok" or (base and record.base and record.base != base):
            continue
        path = Path(record.path)
        if path.exists():
            found.append(path)
    return found


def only_suitable(kind: str, base: str, flag: str = "") -> Path:
    """The one library model of `kind` for `base`; a clear message when there is none or several."""
    from engine.sd.control_models import base_label

    found = library_models(kind, base)
    what = KIND_WORDS.get(kind, kind)
    for_base = f" for {base_label(base)}" if base else ""
    if not found:
        raise ModelError(
            f"No {what}{for_base} in the library. Put one in the models folder (Easel finds it "
            "on the next scan: `easel models scan`)"
            + (f", or name it with {flag}." if flag else ".")
        )
    if len(found) > 1:
        names = ", ".join(p.name for p in found[:6])
        raise ModelError(
            f"Several {what}s{for_base} are in the library ({names}); choose one"
            + (f" with {flag}." if flag else ".")
        )
    return found[0]
