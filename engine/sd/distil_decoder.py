"""Easel's own preview decoder, distilled from a model's VAE on the worker (no download).

The teacher is the model's VAE itself: it encodes procedurally drawn images (smooth colour
fields, shapes, stripes, fine texture: no data set is needed, and these cover the colours and
edges a preview must show), and its decoder's output for those latents is what the student (a
decoder in TAESD's layout, about 1.2 M parameters) learns to reproduce. Small images (128 px,
16x16 latents) keep the teacher cheap; the student is fully convolutional, so it decodes any
size afterwards. A few hundred Adam steps take a couple of minutes on two cores; the result is
cached per model (engine/sd/tiny_decoder.py).

`distil_decoder` reports the student's PSNR against the full decode on held-out images and
the PSNR of the naive alternative (a least-squares linear map of the latent channels to RGB,
upsampled bilinearly: what previews did before), so it is visible that distilling paid.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from engine.sd.tiny_decoder import TAESD_BLOCKS, TAESD_CHANNELS, PreviewDecoder, new_decoder


def training_images(count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """`count` RGB images in [-1, 1] (count, 3, size, size), each a random mix of layers."""
    images = []
    for _ in range(count):
        image = _smooth_field(
            size, generator, cells=int(torch.randint(2, 6, (1,), generator=generator))
        )
        for _ in range(int(torch.randint(1, 5, (1,), generator=generator))):
            image = _paste_shape(image, generator)
        if torch.rand(1, generator=generator) < 0.4:
            image = image + 0.25 * _stripes(size, generator)
        image = image + 0.08 * torch.randn(image.shape, generator=generator)
        images.append(image.clamp(-1.0, 1.0))
    return torch.stack(images)


def _smooth_field(size: int, generator: torch.Generator, cells: int) -> torch.Tensor:
    coarse = torch.rand(1, 3, cells, cells, generator=generator) * 2 - 1
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0]


def _paste_shape(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    size = image.shape[-1]
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    cy, cx = (torch.rand(2, generator=generator) * size).tolist()
    radius = float(torch.rand(1, generator=generator)) * size / 3 + 3
    if torch.rand(1, generator=generator) < 0.5:
        inside = (ys - cy) ** 2 + (xs - cx) ** 2 < radius**2
    else:
        inside = ((ys - cy).abs() < radius) & ((xs - cx).abs() < radius * 0.7)
    colour = (torch.rand(3, 1, 1, generator=generator) * 2 - 1).expand_as(image)
    return torch.where(inside, colour, image)


def _stripes(size: int, generator: torch.Generator) -> torch.Tensor:
    period = float(torch.randint(3, 17, (1,), generator=generator))
    angle = float(torch.rand(1, generator=generator)) * math.pi
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    wave = torch.sin((xs * math.cos(angle) + ys * math.sin(angle)) * 2 * math.pi / period)
    return wave.expand(3, size, size)


def teacher_pairs(vae, images: torch.Tensor, batch: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """(scaled latents, the VAE's decode of them in [-1, 1]) for `images`, in float32."""
    scale = float(vae.config.scaling_factor)
    shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
    param = next(vae.parameters())
    latents, targets = [], []
    with torch.no_grad():
        for chunk in images.split(batch):
            encoded = vae.encode(chunk.to(param.device, param.dtype)).latent_dist.mode()
            decoded = vae.decode(encoded).sample.clamp(-1.0, 1.0)
            latents.append(((encoded - shift) * scale).float().cpu())
            targets.append(decoded.float().cpu())
    return torch.cat(latents), torch.cat(targets)


def distil_decoder(
    vae,
    *,
    steps: int = 300,
    images: int = 56,
    held_out: int = 8,
    size: int = 128,
    crop: int = 8,
    batch: int = 8,
    channels: tuple[int, ...] = TAESD_CHANNELS,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[torch.nn.Module, dict]:
    """A TAESD-layout decoder trained to reproduce `vae`'s decoder; (decoder, report)."""
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    latents, targets = teacher_pairs(vae, training_images(images + held_out, size, generator))
    train_z, test_z = latents[:images], latents[images:]
    train_x, test_x = targets[:images], targets[images:]
    torch.manual_seed(seed)
    student = new_decoder(latents.shape[1], channels, TAESD_BLOCKS)
    _fit_to_data(student, train_z, train_x)
    optimiser = torch.optim.Adam(student.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=2e-3, total_steps=steps)
    with torch.inference_mode(False), torch.enable_grad():
        student.train()
        for step in range(steps):
            z, x = _crops(train_z, train_x, batch, crop, generator)
            if step % 2:  # mirrored copies: the decoder must not learn a left/right bias
                z, x = z.flip(-1), x.flip(-1)
            with _autocast():
                out = student(z)
            loss = F.l1_loss(out.float(), x) + F.mse_loss(out.float(), x)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            if progress is not None:
                progress(step + 1, steps)
    student.eval()
    with torch.no_grad():
        psnr = psnr_db(student(test_z).clamp(-1, 1), test_x)
    report = {
        "psnr_db": round(psnr, 2),
        "baseline_psnr_db": round(linear_baseline_psnr(train_z, train_x, test_z, test_x), 2),
        "preview_factors_psnr_db": round(factors_psnr(test_z, test_x), 2),
        "steps": steps,
        "images": images,
        "size": size,
        "channels": list(channels),
        "seconds": round(time.perf_counter() - started, 1),
    }
    return student, report


def _fit_to_data(student, latents: torch.Tensor, targets: torch.Tensor) -> None:
    """Start from the data's scale: the first convolution sees latents of unit spread (scaled
    latents of a given VAE can be far smaller or larger), the last one outputs the targets'
    mean colour. Same layout and interface, only a better starting point."""
    layers = student.layers
    with torch.no_grad():
        spread = float(latents.std()) or 1.0
        layers[0].weight.mul_(1.0 / spread)
        layers[-1].bias.copy_((targets.mean(dim=(0, 2, 3)) + 1.0) / 2.0)  # output is x*2-1


def _crops(latents, targets, batch: int, crop: int, generator: torch.Generator):
    """`batch` random crops of `crop` x `crop` latents and the matching image patches (the
    decoder is convolutional: small patches teach it as well as whole images, far cheaper)."""
    factor = targets.shape[-1] // latents.shape[-1]
    crop = min(crop, latents.shape[-1])
    zs, xs = [], []
    for _ in range(batch):
        i = int(torch.randint(0, latents.shape[0], (1,), generator=generator))
        y, x = (torch.randint(0, latents.shape[-1] - crop + 1, (2,), generator=generator)).tolist()
        zs.append(latents[i, :, y : y + crop, x : x + crop])
        xs.append(targets[i, :, y * factor : (y + crop) * factor, x * factor : (x + crop) * factor])
    return torch.stack(zs), torch.stack(xs)


def _autocast():
    from engine.devices import cpu_has_native_bf16

    # bf16 matmuls where the CPU has them (AMX: several times faster); fp32 master weights
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_has_native_bf16())


def psnr_db(image: torch.Tensor, reference: torch.Tensor) -> float:
    """PSNR of images in [-1, 1] (peak-to-peak 2)."""
    mse = float(((image.float() - reference.float()) ** 2).mean())
    return 10 * math.log10(4.0 / mse) if mse > 0 else math.inf


def linear_baseline_psnr(train_z, train_x, test_z, test_x) -> float:
    """PSNR of the best linear latent->RGB map (least squares, with a bias), upsampled
    bilinearly to full size: the latent-upsampling approximation the tiny decoder must beat."""
    factor = train_x.shape[-1] // train_z.shape[-1]
    small_x = F.avg_pool2d(train_x, factor)
    design = torch.cat([train_z, torch.ones_like(train_z[:, :1])], 1)
    a = design.permute(0, 2, 3, 1).reshape(-1, design.shape[1])
    b = small_x.permute(0, 2, 3, 1).reshape(-1, 3)
    weights = torch.linalg.lstsq(a, b).solution
    test_design = torch.cat([test_z, torch.ones_like(test_z[:, :1])], 1)
    rgb = torch.einsum("bchw,cr->brhw", test_design, weights)
    upsampled = F.interpolate(rgb, scale_factor=factor, mode="bilinear", align_corners=False)
    return psnr_db(upsampled.clamp(-1, 1), test_x)


def factors_psnr(test_z, test_x) -> float:
    """PSNR of the fixed SD 1.x latent->RGB factors (engine/sd/preview.py), upsampled."""
    from engine.sd.preview import LATENT_RGB_FACTORS

    factors = torch.tensor(LATENT_RGB_FACTORS["sd1"], dtype=torch.float32)
    rgb = torch.einsum("bchw,cr->brhw", test_z[:, :4], factors)
    factor = test_x.shape[-1] // test_z.shape[-1]
    upsampled = F.interpolate(rgb, scale_factor=factor, mode="bilinear", align_corners=False)
    return psnr_db(upsampled.clamp(-1, 1), test_x)


# -- the cache ---------------------------------------------------------------------------------
def save_distilled(path: Path, decoder: torch.nn.Module, report: dict) -> None:
    from safetensors.torch import save

    from engine.paths import atomic_write_bytes

    state = {k: v.detach().float().contiguous() for k, v in decoder.state_dict().items()}
    metadata = {"easel_preview_decoder": json.dumps(report), "layout": "DecoderTiny"}
    atomic_write_bytes(path, save(state, metadata=metadata))


def load_distilled(path: Path) -> PreviewDecoder | None:
    """The cached decoder, or None when the file is unreadable (it is then built again)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            report = json.loads((handle.metadata() or {}).get("easel_preview_decoder", "{}"))
            state = {key: handle.get_tensor(key) for key in handle.keys()}
        first = state["layers.0.weight"]  # (channels, latent channels, 3, 3)
        channels = (int(first.shape[0]),) * len(TAESD_BLOCKS)
        decoder = new_decoder(int(first.shape[1]), channels, TAESD_BLOCKS)
        decoder.load_state_dict(state, strict=True)
    except (OSError, SafetensorError, KeyError, RuntimeError, ValueError):
        return None
    return PreviewDecoder(decoder.eval(), source="distilled", psnr_db=report.get("psnr_db"))
