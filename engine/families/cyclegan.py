"""CycleGAN: unpaired picture-to-picture translation (Zhu, Park, Isola & Efros 2017,
"Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks",
arXiv:1703.10593).

Two generators, G: A -> B and F: B -> A, each a ResNet (Johnson et al. 2016): 7x7 conv,
two stride-2 downsamplings, `resnet_blocks` residual blocks (9 at 256x256 in the paper),
two upsamplings, 7x7 conv, tanh; instance norm and reflection padding throughout (appendix 7.2).
Two 70x70 PatchGAN discriminators judge overlapping patches (Isola et al. 2017). Training
(engine.training.cyclegan) adds the cycle loss ||F(G(a)) - a||_1 + ||G(F(b)) - b||_1 and the
identity loss. The generators are fully convolutional, so a picture of any size is translated
in overlapping tiles blended with a feathered mask (no seams, bounded memory).

Generation: needs `init_image`. Extras: `direction` ("a2b" default, or "b2a"), `tile` (pixels,
default 256), `tile_overlap` (default 32), `max_side` (longer side is scaled down to this,
default 1024). The translation is deterministic, so one picture comes back whatever the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from engine.errors import InputError
from engine.families.common import from_image, int_extra, open_picture, to_images

DEFAULTS = {
    "resolution": 128,  # training crop size; inference works at any size
    "channels": 3,
    "g_width": 64,  # ngf
    "d_width": 64,  # ndf
    "resnet_blocks": 6,  # 6 for 128x128 training, 9 for 256x256 (paper, appendix 7.2)
    "d_layers": 3,  # PatchGAN depth: 3 gives the 70x70 receptive field
    "lambda_cycle": 10.0,  # paper, section 4
    "lambda_identity": 0.5,  # times lambda_cycle (paper, section 5.2, used for paintings)
    "pool_size": 50,  # history of generated pictures for D (Shrivastava et al. 2017)
    "learning_rate": 2e-4,
}
DOWNSAMPLINGS = 2  # sizes fed to a generator must be multiples of 2^2


def check_config(config: dict) -> None:
    if int(config["resolution"]) % 4 or int(config["resolution"]) < 16:
        raise InputError("CycleGAN trains on crops of at least 16 pixels, in multiples of 4.")


class ResnetBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3), nn.InstanceNorm2d(width),
            nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3), nn.InstanceNorm2d(width),
        )  # fmt: skip

    def forward(self, x):
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """c7s1-k, d2k, d4k, R4k x blocks, u2k, uk, c7s1-3 (paper, appendix 7.2)."""

    def __init__(self, config: dict):
        super().__init__()
        width, channels = int(config["g_width"]), int(config["channels"])
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(channels, width, 7), nn.InstanceNorm2d(width),
            nn.ReLU(True),
        ]  # fmt: skip
        for i in range(DOWNSAMPLINGS):
            w_in, w_out = width * 2**i, width * 2 ** (i + 1)
            layers += [nn.Conv2d(w_in, w_out, 3, 2, 1), nn.InstanceNorm2d(w_out), nn.ReLU(True)]
        inner = width * 2**DOWNSAMPLINGS
        layers += [ResnetBlock(inner) for _ in range(int(config["resnet_blocks"]))]
        for i in range(DOWNSAMPLINGS, 0, -1):
            w_in, w_out = width * 2**i, width * 2 ** (i - 1)
            layers += [
                nn.ConvTranspose2d(w_in, w_out, 3, 2, 1, output_padding=1),
                nn.InstanceNorm2d(w_out),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, x):
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """C64-C128-C256-C512 then a 1-channel map: one realness score per overlapping patch."""

    def __init__(self, config: dict):
        super().__init__()
        width, layers_count = int(config["d_width"]), int(config["d_layers"])
        layers: list[nn.Module] = [
            nn.Conv2d(int(config["channels"]), width, 4, 2, 1),
            nn.LeakyReLU(0.2, True),
        ]
        w_in = width
        for i in range(1, layers_count + 1):
            w_out = width * min(2**i, 8)
            stride = 2 if i < layers_count else 1
            layers += [nn.Conv2d(w_in, w_out, 4, stride, 1), nn.InstanceNorm2d(w_out)]
            layers += [nn.LeakyReLU(0.2, True)]
            w_in = w_out
        layers += [nn.Conv2d(w_in, 1, 4, 1, 1)]
        self.net = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, x):
        return self.net(x)


def init_weights(module: nn.Module) -> None:
    """Gaussian N(0, 0.02) weights (paper, appendix 7.1)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class CycleGAN(nn.Module):
    """The two generators: what a trained CycleGAN folder holds."""

    def __init__(self, config: dict):
        super().__init__()
        check_config(config)
        self.a_to_b = ResnetGenerator(config)
        self.b_to_a = ResnetGenerator(config)


def build(config: dict) -> nn.Module:
    return CycleGAN(config)


# -- tiled inference ------------------------------------------------------------------------
def feather(height: int, width: int, overlap: int) -> torch.Tensor:
    """Weights rising linearly over `overlap` pixels from each edge: neighbouring tiles blend."""

    def ramp(size):
        i = torch.arange(size, dtype=torch.float32)
        return torch.minimum(i + 1, size - i).div(max(1, overlap)).clamp(max=1.0)

    return ramp(height)[:, None] * ramp(width)[None, :]


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    return starts + [size - tile]


def translate_padded(generator: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run on a tile whose sides may not be multiples of 4: reflect-pad, translate, crop."""
    multiple = 2**DOWNSAMPLINGS
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect" if min(h, w) > multiple else "replicate")
    return generator(x)[..., :h, :w]


def translate_tiled(generator: nn.Module, x: torch.Tensor, tile: int, overlap: int, ctx):
    """Translate (1, C, H, W) tile by tile with progress and cancel between tiles."""
    _, channels, height, width = x.shape
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    out = torch.zeros(1, channels, height, width, device=x.device)
    weight = torch.zeros(1, 1, height, width, device=x.device)
    total, done = len(ys) * len(xs), 0
    for y in ys:
        for x0 in xs:
            ctx.check_cancelled()
            patch = x[..., y : y + tile, x0 : x0 + tile]
            mask = feather(patch.shape[-2], patch.shape[-1], overlap).to(x.device)
            out[..., y : y + tile, x0 : x0 + tile] += translate_padded(generator, patch) * mask
            weight[..., y : y + tile, x0 : x0 + tile] += mask
            done += 1
            ctx.progress(done, total)
    return out / weight


def working_picture(path: str, max_side: int) -> Image.Image:
    picture = open_picture(path)
    longest = max(picture.size)
    if longest > max_side:
        scale = max_side / longest
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    return picture


def generate(model: CycleGAN, config: dict, request, ctx) -> list:
    if not request.init_image:
        raise InputError(
            "CycleGAN translates a picture: drop one onto the canvas (or pass --init-image)."
        )
    direction = str(request.extras.get("direction", "a2b")).lower()
    if direction not in ("a2b", "b2a"):
        raise InputError(f"CycleGAN direction must be 'a2b' or 'b2a' (got '{direction}').")
    tile = int_extra(request.extras, "tile", 256, low=32, high=2048)
    overlap = int_extra(request.extras, "tile_overlap", 32, low=0, high=tile // 2)
    max_side = int_extra(request.extras, "max_side", 1024, low=16, high=8192)
    generator = model.a_to_b if direction == "a2b" else model.b_to_a
    device = next(model.parameters()).device
    picture = working_picture(request.init_image, max_side)
    x = from_image(picture, int(config["channels"])).to(device)
    return to_images(translate_tiled(generator, x, tile, overlap, ctx).clamp(-1, 1))
