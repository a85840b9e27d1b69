"""Sample grids: tile pictures into one, and find the picture under a point of a grid.

Pillow only (no torch), so the desktop app can cut a clicked picture out of a grid without
loading the model stack on the GUI thread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image


def make_grid(images: Sequence[Image.Image], columns: int | None = None, pad: int = 2):
    """Tile pictures into one grid picture (row-major), white gutters between them."""
    if not images:
        raise ValueError("make_grid needs at least one image")
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    width, height = images[0].size
    grid = Image.new(
        "RGB", (columns * (width + pad) + pad, rows * (height + pad) + pad), (255, 255, 255)
    )
    for index, image in enumerate(images):
        row, col = divmod(index, columns)
        grid.paste(image.convert("RGB"), (pad + col * (width + pad), pad + row * (height + pad)))
    # the layout rides along (in memory) so a viewer can cut out the cell the user clicks
    grid.info["easel_grid"] = {
        "columns": columns,
        "rows": rows,
        "count": len(images),
        "cell_width": width,
        "cell_height": height,
        "pad": pad,
    }
    return grid


def grid_cell(grid: Image.Image, x: int, y: int) -> Image.Image | None:
    """The picture under pixel (x, y) of a `make_grid` grid, or None (gutter, unknown layout)."""
    layout = grid.info.get("easel_grid")
    if not layout:
        return None
    pad, width, height = layout["pad"], layout["cell_width"], layout["cell_height"]
    col, col_offset = divmod(x - pad, width + pad)
    row, row_offset = divmod(y - pad, height + pad)
    index = row * layout["columns"] + col
    inside = 0 <= col < layout["columns"] and 0 <= row < layout["rows"]
    if not inside or col_offset >= width or row_offset >= height or index >= layout["count"]:
        return None
    left, top = pad + col * (width + pad), pad + row * (height + pad)
    return grid.crop((left, top, left + width, top + height))
