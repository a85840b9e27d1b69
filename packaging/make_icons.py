"""Draw Easel's app icon and write it in every format the bundles need.

Run once when the design changes: `python packaging/make_icons.py`. Writes
resources/icons/easel.png (512 px), easel.ico (Windows) and easel.icns (macOS). Drawn in code so
the repository holds no opaque binary we could not regenerate.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

ICONS = Path(__file__).resolve().parent.parent / "resources" / "icons"


def draw_icon(size: int = 1024) -> Image.Image:
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    s = size / 1024
    # rounded canvas tile
    draw.rounded_rectangle((64 * s, 64 * s, 960 * s, 960 * s), radius=200 * s, fill=(37, 40, 54))
    # an easel: three legs and a canvas
    leg = (214, 170, 120)
    draw.line((512 * s, 220 * s, 300 * s, 860 * s), fill=leg, width=int(44 * s))
    draw.line((512 * s, 220 * s, 724 * s, 860 * s), fill=leg, width=int(44 * s))
    draw.line((512 * s, 220 * s, 512 * s, 880 * s), fill=leg, width=int(36 * s))
    draw.rounded_rectangle(
        (250 * s, 270 * s, 774 * s, 650 * s), radius=36 * s, fill=(250, 248, 240)
    )
    # the picture on it: a sun over hills, in the app's accent colours
    draw.ellipse((560 * s, 320 * s, 680 * s, 440 * s), fill=(255, 184, 76))
    draw.polygon([(270 * s, 630 * s), (420 * s, 430 * s), (560 * s, 630 * s)], fill=(88, 166, 255))
    draw.polygon([(450 * s, 630 * s), (600 * s, 480 * s), (754 * s, 630 * s)], fill=(61, 201, 140))
    return image


def main() -> None:
    ICONS.mkdir(parents=True, exist_ok=True)
    icon = draw_icon()
    icon.resize((512, 512), Image.LANCZOS).save(ICONS / "easel.png")
    icon.save(ICONS / "easel.ico", sizes=[(16, 16), (32, 32), (48, 48), (64, 64), (256, 256)])
    icon.save(ICONS / "easel.icns")
    print(f"icons written to {ICONS}")


if __name__ == "__main__":
    main()
