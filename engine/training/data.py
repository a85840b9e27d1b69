"""Training data: a folder of pictures (or a built-in set) as one in-memory uint8 tensor.

Small image sets fit in memory at training resolution (10,000 pictures at 64x64 are 120 MB), so
pictures are decoded, resized and centre-cropped once up front; each step then draws a random
batch by index, which keeps the loop as fast as a plain tensor loop (bench/training_throughput).
Subfolders name classes (`data/cat/*.png`, `data/dog/*.png`); a `captions.txt` or a `.txt` file
beside a picture gives its caption. Unreadable files are skipped and counted, never fatal.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.errors import InputError
from engine.images import PictureError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}

#: decoded pictures are kept in memory; beyond this a run is refused with advice
MAX_DATA_BYTES = 4 * 1024**3

#: `builtin:NAME` data sets -> "module:function"; the function takes the resolution and returns
#: TrainingData. The emoji set is written by the diffusion side (engine.datasets.emoji).
BUILTIN_DATASETS: dict[str, str] = {
    "emoji": "engine.datasets.emoji:training_data",
}


@dataclass
class TrainingData:
    """Decoded pictures: `images` uint8 (N, C, R, R); optional labels and captions per picture."""

    images: torch.Tensor
    source: str
    labels: torch.Tensor | None = None  # int64 (N,), indexes `classes`
    classes: list[str] = field(default_factory=list)
    captions: list[str] | None = None
    skipped: list[str] = field(default_factory=list)  # "name: why" per unreadable file
    #: each picture's path in the folder without its suffix ("fruit/red-apple"): a caption
    #: source for families that read text when a picture has no caption file
    names: list[str] = field(default_factory=list)
    licence: str = ""  # goes into the model card (built-in sets know theirs)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])


@dataclass
class Batch:
    """One training step's input: images as float in [-1, 1] on the training device."""

    images: torch.Tensor
    labels: torch.Tensor | None = None
    captions: list[str] | None = None
    images_b: torch.Tensor | None = None  # second domain (CycleGAN)
    #: which pictures of the data set these are, and which were flipped (a family that
    #: precomputes something per picture, e.g. the DALL-E family's image tokens, reads them)
    indices: torch.Tensor | None = None
    flipped: torch.Tensor | None = None


def load_training_data(
    source: str, resolution: int, *, channels: int = 3, check: Callable[[], None] | None = None
) -> TrainingData:
    """A folder of pictures or `builtin:NAME`, decoded at `resolution`. `check` is called every
    few pictures (a job passes its cancel check: a big folder takes a while to decode)."""
    if source.startswith("builtin:"):
        return _load_builtin(source.split(":", 1)[1], resolution)
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise InputError(f"The training folder '{folder}' does not exist. Pick a folder of images.")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and _looks_like_image(p))
    if not files:
        raise InputError(
            f"'{folder}' holds no pictures (looked for {', '.join(sorted(IMAGE_SUFFIXES))}). "
            "Pick a folder with images in it."
        )
    _check_fits_in_memory(len(files), resolution, channels, folder)
    class_names = _class_names(folder, files)
    pictures, labels, captions, skipped, names = [], [], [], [], []
    for index, path in enumerate(files):
        if check is not None and index % 32 == 0:
            check()
        try:
            pictures.append(_decode(path, resolution, channels))
        except PictureError as exc:
            skipped.append(f"{path.relative_to(folder)}: {exc.reason}")
            continue
        labels.append(class_names.index(_class_of(folder, path)) if class_names else 0)
        caption, problem = _caption_for(path)
        if problem:
            skipped.append(f"{path.with_suffix('.txt').relative_to(folder)}: {problem}")
        captions.append(caption)
        names.append(str(path.relative_to(folder).with_suffix("")))
    if not pictures:
        raise InputError(
            f"None of the {len(files)} pictures in '{folder}' could be read "
            f"(e.g. {skipped[0]}). Check that the files are real images."
        )
    images = torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).contiguous()
    return TrainingData(
        images=images,
        source=str(folder),
        labels=torch.tensor(labels, dtype=torch.int64) if class_names else None,
        classes=class_names,
        captions=captions if any(captions) else None,
        skipped=skipped,
        names=names,
    )


def _check_fits_in_memory(count: int, resolution: int, channels: int, folder: Path) -> None:
    """Refuse up front a set that would not fit the in-memory design (see the module doc)."""
    needed = count * resolution * resolution * channels
    if needed > MAX_DATA_BYTES:
        fitting = MAX_DATA_BYTES // (resolution * resolution * channels)
        raise InputError(
            f"'{folder}' holds {count} pictures: at {resolution}x{resolution} they need "
            f"{needed / 1024**3:.1f} GB of memory. Use at most {fitting} pictures at this "
            "resolution, or a lower resolution."
        )


def _looks_like_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _decode(path: Path, resolution: int, channels: int) -> np.ndarray:
    from engine.families.common import fit_square
    from engine.images import open_user_image

    # transparent pictures (emoji, icons) go on white: the loader flattens alpha for RGB
    image = open_user_image(path, "training picture", mode="RGB")
    if channels == 1:
        image = image.convert("L")
    array = np.asarray(fit_square(image, resolution), dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def _class_of(folder: Path, path: Path) -> str:
    relative = path.relative_to(folder)
    return relative.parts[0] if len(relative.parts) > 1 else ""


def _class_names(folder: Path, files: list[Path]) -> list[str]:
    """Class names from first-level subfolders, only when every picture sits in one."""
    names = {_class_of(folder, p) for p in files}
    if "" in names or len(names) < 2:
        return []
    return sorted(names)


def _caption_for(path: Path) -> tuple[str, str]:
    """(caption, problem): the sidecar .txt's text, or "" and why it could not be used."""
    text_file = path.with_suffix(".txt")
    if text_file.is_file():
        try:
            return text_file.read_text(encoding="utf-8").strip(), ""
        except (OSError, UnicodeDecodeError) as exc:
            why = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
            return "", f"caption file skipped ({why}); the picture is used without it"
    return "", ""


def _load_builtin(name: str, resolution: int) -> TrainingData:
    target = BUILTIN_DATASETS.get(name)
    if target is None:
        raise InputError(
            f"Unknown built-in data set '{name}'. Built-in sets: {', '.join(BUILTIN_DATASETS)}."
        )
    module_name, func_name = target.split(":")
    try:
        loader = getattr(importlib.import_module(module_name), func_name)
    except (ModuleNotFoundError, AttributeError) as exc:
        raise InputError(f"The built-in data set '{name}' is not available in this build.") from exc
    return loader(resolution)


class BatchSampler:
    """Random batches drawn by index with its own generator (resumable: `state`/`set_state`).

    Sampling with replacement across steps but without replacement inside an epoch: a shuffled
    permutation is walked through and redrawn when used up, as a DataLoader with shuffle does.
    """

    def __init__(
        self,
        data: TrainingData,
        batch_size: int,
        *,
        seed: int,
        device: torch.device,
        flip: bool = True,
        data_b: TrainingData | None = None,
    ):
        self.data, self.data_b = data, data_b
        self.batch_size = batch_size
        self.device = device
        self.flip = flip
        self.generator = torch.Generator().manual_seed(int(seed))
        self._order = {
            "a": torch.empty(0, dtype=torch.int64),
            "b": torch.empty(0, dtype=torch.int64),
        }
        self._position = {"a": 0, "b": 0}

    def next(self) -> Batch:
        index = self._take("a", len(self.data))
        images, flipped = self._prepare(self.data.images[index])
        batch = Batch(images=images, indices=index, flipped=flipped)
        if self.data.labels is not None:
            batch.labels = self.data.labels[index].to(self.device)
        if self.data.captions is not None:
            batch.captions = [self.data.captions[i] for i in index.tolist()]
        if self.data_b is not None:
            batch.images_b = self._prepare(self.data_b.images[self._take("b", len(self.data_b))])[0]
        return batch

    def _take(self, which: str, size: int) -> torch.Tensor:
        picked = []
        needed = self.batch_size
        while needed:
            order, position = self._order[which], self._position[which]
            if position >= len(order):
                order = torch.randperm(size, generator=self.generator)
                self._order[which], position = order, 0
            chunk = order[position : position + needed]
            picked.append(chunk)
            self._position[which] = position + len(chunk)
            needed -= len(chunk)
        return torch.cat(picked)

    def _prepare(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pictures as floats in [-1, 1], and which of them were flipped."""
        images = pixels.to(self.device, non_blocking=True).float().div_(127.5).sub_(1.0)
        mask = torch.zeros(images.shape[0], dtype=torch.bool)
        if self.flip:
            # Horizontal flips double a small data set for free (Radford et al. 2015 used them).
            mask = torch.rand(images.shape[0], generator=self.generator) < 0.5
            if mask.any():
                images[mask.to(self.device)] = images[mask.to(self.device)].flip(-1)
        return images, mask

    def state(self) -> dict[str, torch.Tensor]:
        return {
            "sampler.rng": self.generator.get_state(),
            "sampler.order_a": self._order["a"],
            "sampler.order_b": self._order["b"],
            "sampler.position": torch.tensor([self._position["a"], self._position["b"]]),
        }

    def set_state(self, tensors: dict[str, torch.Tensor]) -> None:
        if "sampler.rng" not in tensors:
            return
        self.generator.set_state(tensors["sampler.rng"].to(torch.uint8))
        self._order = {
            "a": tensors["sampler.order_a"].long(),
            "b": tensors["sampler.order_b"].long(),
        }
        position = tensors["sampler.position"].tolist()
        self._position = {"a": int(position[0]), "b": int(position[1])}
