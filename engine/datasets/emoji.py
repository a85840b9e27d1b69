"""The Microsoft Fluent Emoji Flat set (MIT) as a training set: pictures, captions, categories.

The emoji come as SVG bodies from the npm package `@iconify-json/fluent-emoji-flat`; Easel ships
them compactly (`resources/datasets/fluent-emoji-flat.json.xz`, 0.7 MB: the bodies and categories
only), so a user install needs neither npm nor a network. Rasterising SVG needs QtSvg, and the
engine never imports Qt, so the desktop renders the pictures on first use
(`desktop/emoji_render.py`: the Train dialog and the `easel` command) into one `.npz` file in the
data folder that this module reads back. Everything else lives here:
fetching and reading the package, captions from names ("red-apple" -> "red apple"), categories as
class labels, and a fixed held-out split that keeps skin-tone variants of one emoji together.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import InputError
from engine.paths import resource, user_data_dir

PACKAGE = "@iconify-json/fluent-emoji-flat"
ATTRIBUTION = (
    "Fluent Emoji Flat by Microsoft Corporation (https://github.com/microsoft/fluentui-emoji), "
    f"MIT licence; SVGs from the npm package {PACKAGE}."
)
#: 1 in HELD_OUT_BUCKETS emoji groups is held out (never trained on) for FID and faithfulness.
HELD_OUT_BUCKETS = 10
SKIN_TONES = ("-medium-light", "-medium-dark", "-light", "-medium", "-dark")
CAPTION_TEMPLATES = ("{}", "an emoji of {}", "a {}")


@dataclass(frozen=True)
class EmojiSet:
    """Rendered emoji: `images` is uint8 (N, H, W, 3) on white; the rest are length-N arrays."""

    images: np.ndarray
    names: np.ndarray  # "red-apple"
    categories: np.ndarray  # "Food & Drink"
    held_out: np.ndarray  # bool

    @property
    def captions(self) -> list[str]:
        return [caption(n) for n in self.names]

    @property
    def category_names(self) -> list[str]:
        return sorted(set(self.categories.tolist()))

    @property
    def labels(self) -> np.ndarray:
        index = {name: i for i, name in enumerate(self.category_names)}
        return np.array([index[c] for c in self.categories], dtype=np.int64)

    def subset(self, mask: np.ndarray) -> EmojiSet:
        return EmojiSet(
            self.images[mask], self.names[mask], self.categories[mask], self.held_out[mask]
        )

    def train(self) -> EmojiSet:
        return self.subset(~self.held_out)

    def test(self) -> EmojiSet:
        return self.subset(self.held_out)


def caption(name: str) -> str:
    """'red-apple' -> 'red apple' (the package keys are English names joined by dashes)."""
    return name.replace("-", " ").strip()


def base_name(name: str) -> str:
    """The emoji without its skin-tone suffix, so its variants share one split bucket."""
    for tone in SKIN_TONES:
        if name.endswith(tone):
            return name[: -len(tone)]
    return name


def is_held_out(name: str) -> bool:
    digest = hashlib.sha1(base_name(name).encode("utf-8")).digest()
    return digest[0] % HELD_OUT_BUCKETS == 0


def default_cache_dir() -> Path:
    path = user_data_dir() / "datasets" / "fluent-emoji-flat"
    path.mkdir(parents=True, exist_ok=True)
    return path


def fetch_package(cache_dir: Path | None = None) -> Path:
    """`npm pack` the emoji package into `cache_dir` (once) and return the unpacked folder."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    package_dir = cache_dir / "package"
    if (package_dir / "icons.json").is_file():
        return package_dir
    npm = shutil.which("npm")
    if npm is None:
        raise InputError(
            "npm is needed to fetch the emoji package; install Node.js (npm), or unpack "
            f"'{PACKAGE}' into {package_dir} by hand."
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [npm, "pack", PACKAGE, "--pack-destination", str(cache_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    tarballs = sorted(cache_dir.glob("iconify-json-fluent-emoji-flat-*.tgz"))
    if done.returncode != 0 or not tarballs:
        raise InputError(f"'npm pack {PACKAGE}' failed: {done.stderr.strip()[-400:]}")
    with tarfile.open(tarballs[-1]) as archive:
        archive.extractall(cache_dir, filter="data")
    return package_dir


def bundled_path() -> Path:
    """The emoji bodies Easel ships (written from the npm package by
    `scripts/build_builtin_models.py bundle`)."""
    return resource("datasets", "fluent-emoji-flat.json.xz")


def read_bundled(path: Path | None = None) -> tuple[dict[str, str], dict[str, str], int]:
    """SVG bodies by name, category by name and the icon size, from the shipped file."""
    path = Path(path) if path else bundled_path()
    try:
        data = json.loads(lzma.decompress(path.read_bytes()).decode("utf-8"))
        bodies = dict(data["icons"])
        categories = data.get("categories", {})
    except (OSError, lzma.LZMAError, ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"The built-in emoji set that comes with Easel ({path}) is missing or damaged "
            f"({exc}). Reinstall Easel to restore it."
        ) from exc
    category_of = {name: category for category, names in categories.items() for name in names}
    return bodies, category_of, int(data.get("width", 32))


def write_bundled(package_dir: Path, path: Path | None = None) -> Path:
    """Pack an unpacked npm package's bodies and categories into the shipped file."""
    bodies, category_of, size = read_package(package_dir)
    info = json.loads((Path(package_dir) / "package.json").read_text(encoding="utf-8"))
    categories: dict[str, list[str]] = {}
    for name in sorted(bodies):
        categories.setdefault(category_of.get(name, "Other"), []).append(name)
    data = {
        "package": PACKAGE,
        "version": info.get("version", ""),
        "licence": "MIT",
        "width": size,
        "icons": dict(sorted(bodies.items())),
        "categories": categories,
    }
    raw = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    target = Path(path) if path else bundled_path()
    target.write_bytes(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME))
    return target


def read_source(cache_dir: Path | None = None) -> tuple[dict[str, str], dict[str, str], int]:
    """The shipped bodies; a checkout without them falls back to `npm pack`."""
    if bundled_path().is_file():
        return read_bundled()
    return read_package(fetch_package(cache_dir))


def is_rendered(resolution: int, cache_dir: Path | None = None) -> bool:
    return npz_path(cache_dir, resolution).is_file()


def read_package(package_dir: Path) -> tuple[dict[str, str], dict[str, str], int]:
    """SVG bodies by name, category by name, and the icons' square size (32) from the package."""
    icons_file = Path(package_dir) / "icons.json"
    try:
        icons = json.loads(icons_file.read_text(encoding="utf-8"))
        metadata = json.loads((Path(package_dir) / "metadata.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"The emoji package in {package_dir} is unreadable ({exc}).") from exc
    bodies = {name: icon["body"] for name, icon in icons["icons"].items()}
    category_of = {}
    for category, names in metadata.get("categories", {}).items():
        for name in names:
            category_of[name] = category
    return bodies, category_of, int(icons.get("width", 32))


def svg_document(body: str, size: int = 32) -> str:
    return f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}">{body}</svg>'


def npz_path(cache_dir: Path | None, resolution: int) -> Path:
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    return cache_dir / f"emoji-{resolution}.npz"


def save_rendered(path: Path, images: np.ndarray, names: list[str], categories: list[str]):
    held = np.array([is_held_out(n) for n in names], dtype=bool)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp, images=images, names=np.array(names), categories=np.array(categories), held_out=held
    )
    tmp.replace(path)


def load_rendered(cache_dir: Path | None = None, resolution: int = 64) -> EmojiSet:
    """Read the rendered emoji written by the build script's `data` step."""
    path = npz_path(cache_dir, resolution)
    if not path.is_file():
        # the desktop renders the set on first use; only a bare engine (no Qt) gets here
        raise InputError(
            f"The built-in emoji set at {resolution}x{resolution} is not rendered yet. Start "
            "the training from Easel's Train dialog or with the `easel train` command: both "
            f"render it first (about 2 s, once, into {path.parent})."
        )
    with np.load(path, allow_pickle=False) as data:
        return EmojiSet(
            images=data["images"],
            names=data["names"],
            categories=data["categories"],
            held_out=data["held_out"],
        )


def training_data(resolution: int, cache_dir: Path | None = None):
    """`builtin:emoji` for the training runner: the training split, captions, categories."""
    import torch

    from engine.training.data import TrainingData

    train = load_rendered(cache_dir, resolution).train()
    return TrainingData(
        images=torch.from_numpy(train.images).permute(0, 3, 1, 2).contiguous(),
        source=f"builtin:emoji ({PACKAGE}, training split)",
        labels=torch.from_numpy(train.labels),
        classes=train.category_names,
        captions=train.captions,
        licence=ATTRIBUTION,
    )
