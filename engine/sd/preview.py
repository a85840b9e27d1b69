"""Live previews: a linear projection of the 4 latent channels to RGB, no VAE decode.

The factors are least-squares fits of each base model's VAE decoder (the values InvokeAI ships);
a preview costs one tiny matmul per step, so it never slows sampling down.
"""

from __future__ import annotations

import torch
from PIL import Image

# rows: latent channels 1-4; columns: R, G, B
_SD1_FACTORS = (
    (0.3444, 0.1385, 0.0670),
    (0.1247, 0.4027, 0.1494),
    (-0.3192, 0.2513, 0.2103),
    (-0.1307, -0.1874, -0.7445),
)
_SDXL_FACTORS = (
    (0.3816, 0.4930, 0.5320),
    (-0.3753, 0.1631, 0.1739),
    (0.1770, 0.3588, -0.2048),
    (-0.4350, -0.2644, -0.4289),
)

#: base model -> factors; SD 2.x shares SD 1.x's VAE
LATENT_RGB_FACTORS = {"sd1": _SD1_FACTORS, "sd2": _SD1_FACTORS, "sdxl": _SDXL_FACTORS}


def latents_to_preview(latents: torch.Tensor, base: str, *, index: int = 0) -> Image.Image:
    """An RGB image (latent resolution, 1/8 of the output) of batch item `index`."""
    factors = torch.tensor(LATENT_RGB_FACTORS.get(base, _SD1_FACTORS), dtype=torch.float32)
    sample = latents[index, :4].detach().to("cpu", torch.float32)
    rgb = torch.einsum("chw,cr->hwr", sample, factors)
    pixels = ((rgb + 1.0) / 2.0).clamp(0.0, 1.0).mul(255).round().to(torch.uint8)
    return Image.fromarray(pixels.numpy(), mode="RGB")
