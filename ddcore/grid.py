"""The picture of a distilled set (``grid.png``): one block of rows per class, its name on the left.

Layout (:func:`grid_layout`), chosen so that the picture is readable for any IPC and class count:

- every image is enlarged by an integer factor (nearest neighbour, no blur) until its longer side is at
  least ``min_cell`` pixels (64 by default): a 32 px digit becomes a 64 px cell, an 8 px one 64 px too;
- a class shows at most ``max_cols`` images (10) per row and wraps onto further rows (IPC 50: 5 rows of
  10), with a wider gap between classes than inside one;
- the class name (first :data:`LABEL_CHARS` characters) is written with Pillow's default font left of the
  class's first row;
- the picture stays within ``max_side`` x ``max_side`` pixels (4096): when the classes do not fit in one
  column of blocks, the blocks are set in several columns side by side ("panels", the squarest count
  that fits); when they still do not fit, each class shows only its first images (whole rows of
  ``max_cols``), and as a last resort only the first classes; a note at the bottom then says what is left
  out. Nothing is ever scaled down.

Importing this module imports torch and Pillow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

#: Longest class name written as a row label (longer names end in "...").
LABEL_CHARS = 20
#: Pixel size of the default font for labels and the note.
FONT_SIZE = 13


def label_font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's default font (its bundled FreeType face at :data:`FONT_SIZE` px when FreeType is available)."""
    return ImageFont.load_default(size=FONT_SIZE)


def short_label(name: str) -> str:
    """``name`` cut to :data:`LABEL_CHARS` characters.

    >>> short_label("airplane"), len(short_label("n01440764 tench Tinca tinca")), short_label("x" * 30)[-4:]
    ('airplane', 20, 'x...')
    """
    name = str(name)
    return name if len(name) <= LABEL_CHARS else name[: LABEL_CHARS - 3] + "..."


@dataclass
class GridLayout:
    """Where everything of a grid goes (pixels; ``top, left`` of each item).

    Attributes:
        scale: the integer enlargement of every image (nearest neighbour).
        cell: ``(height, width)`` of one enlarged image.
        cols: images per row (``<= max_cols``).
        shown: per class, how many of its images are drawn (its first ones).
        cells: ``(class, index within class, top, left)`` of every drawn image.
        labels: ``(class, top, left)`` of every drawn class name.
        size: ``(height, width)`` of the whole picture.
        note: what is left out, written at the bottom (``""`` when everything is shown).
        note_top: ``top`` of the note.
        panels: how many columns of class blocks.
    """

    scale: int
    cell: tuple[int, int]
    cols: int
    shown: list[int]
    cells: list[tuple[int, int, int, int]] = field(default_factory=list)
    labels: list[tuple[int, int, int]] = field(default_factory=list)
    size: tuple[int, int] = (0, 0)
    note: str = ""
    note_top: int = 0
    panels: int = 1


def _caps(largest: int, max_cols: int) -> list[int]:
    """Images per class to try, most first: all, then whole rows of ``max_cols``, then fewer than a row."""
    caps = {largest, *range(max_cols, largest, max_cols), *range(1, min(max_cols, largest))}
    return sorted((c for c in caps if c >= 1), reverse=True) or [1]


def grid_layout(counts: Sequence[int], image_size: tuple[int, int], label_width: int, *, pad: int = 2, min_cell: int = 64,
                max_cols: int = 10, max_side: int = 4096, text_height: int = FONT_SIZE + 4) -> GridLayout:  # fmt: skip
    """Place ``counts[k]`` images of class ``k`` (each ``image_size = (h, w)`` before enlargement).

    ``label_width``: pixels reserved left of each class for its name (0: no labels). Returns a
    :class:`GridLayout`; see the module docstring for the rules. Raises ``ValueError`` for a
    non-positive ``min_cell``, ``max_cols`` or image size.

    >>> layout = grid_layout([1] * 10, (32, 32), label_width=40)
    >>> layout.scale, layout.cell, layout.cols, layout.size, layout.panels
    (2, (64, 64), 1, (662, 108), 1)
    >>> grid_layout([50] * 10, (32, 32), 40).shown[0], grid_layout([50] * 100, (32, 32), 40).shown[0]
    (50, 20)
    """
    h, w = image_size
    if min(h, w) < 1 or min_cell < 1 or max_cols < 1:
        raise ValueError(f"grid_layout: image size {image_size}, min_cell {min_cell} and max_cols {max_cols} must be positive")
    scale = max(1, math.ceil(min_cell / max(h, w)))
    ch, cw = h * scale, w * scale
    largest = max(counts, default=0)
    for cap in _caps(max(largest, 1), max_cols):
        cols = max(1, min(max_cols, cap, largest))
        lines = [max(1, math.ceil(min(n, cap) / cols)) for n in counts]
        class_gap = ch // 4 if max(lines, default=1) > 1 else 0
        block_w = label_width + cols * (cw + pad) + pad
        heights = [n_lines * (ch + pad) + class_gap for n_lines in lines]
        best = _best_panels(heights, block_w, pad, max_side)
        if best is not None:
            cut = cap < largest
            note = f"showing the first {cap} images of each class (picture capped at {max_side} px)" if cut else ""
            return _place(counts, cap, cols, scale, (ch, cw), pad, label_width, block_w, heights, best, note, text_height)
    # even one image per class does not fit: only the first classes
    cols, heights = 1, [ch + pad] * len(counts)
    block_w = label_width + cw + 2 * pad
    per_panel = max(1, (max_side - pad) // (ch + pad))
    panels = max(1, max_side // block_w)
    kept = min(len(counts), per_panel * panels)
    note = f"showing the first image of the first {kept} of {len(counts)} classes (picture capped at {max_side} px)"
    columns = [list(range(start, min(start + per_panel, kept))) for start in range(0, kept, per_panel)]
    return _place(counts, 1, cols, scale, (ch, cw), pad, label_width, block_w, heights, columns, note, text_height)


def _best_panels(heights: list[int], block_w: int, pad: int, max_side: int) -> list[list[int]] | None:
    """Classes cut into consecutive columns: one column when it fits, else the squarest count that fits."""
    best, best_ratio = None, math.inf
    for panels in range(1, len(heights) + 1):
        if panels * block_w > max_side:
            break
        columns = _split(heights, panels)
        tallest = max(sum(heights[k] for k in column) for column in columns) + pad
        if tallest > max_side:
            continue
        if panels == 1:
            return columns
        ratio = max(tallest, panels * block_w) / min(tallest, panels * block_w)
        if ratio < best_ratio:
            best, best_ratio = columns, ratio
    return best


def _split(heights: list[int], panels: int) -> list[list[int]]:
    """Consecutive classes into ``panels`` columns of about equal height (greedy on the running total)."""
    target = sum(heights) / panels
    columns: list[list[int]] = [[]]
    total = 0.0
    for k, height in enumerate(heights):
        if columns[-1] and total + height > target * len(columns) + 1e-9 and len(columns) < panels:
            columns.append([])
        columns[-1].append(k)
        total += height
    return [c for c in columns if c]


def _place(counts, cap, cols, scale, cell, pad, label_width, block_w, heights, columns, note, text_height) -> GridLayout:
    ch, cw = cell
    shown = [min(n, cap) for n in counts]
    layout = GridLayout(scale, cell, cols, [0] * len(counts), panels=len(columns))
    drawn = {k for column in columns for k in column}
    for k in range(len(counts)):
        layout.shown[k] = shown[k] if k in drawn else 0
    bottom = 0
    for p, column in enumerate(columns):
        top = pad
        left0 = p * block_w
        for k in column:
            layout.labels.append((k, top, left0))
            for j in range(shown[k]):
                row, col = divmod(j, cols)
                layout.cells.append((k, j, top + row * (ch + pad), left0 + label_width + pad + col * (cw + pad)))
            top += heights[k]
        bottom = max(bottom, top)
    width = len(columns) * block_w
    if note:
        layout.note, layout.note_top = note, bottom + pad
        bottom += text_height + 2 * pad
    layout.size = (bottom, width)
    return layout


def plan_grid(labels: torch.Tensor, class_names: Sequence[str], image_size: tuple[int, int], *, pad: int = 2,
              min_cell: int = 64, max_cols: int = 10, max_side: int = 4096, show_labels: bool = True) -> GridLayout:  # fmt: skip
    """The :class:`GridLayout` :func:`draw_grid` uses for ``labels [N]`` (class ids) of images ``(h, w)``:
    the label margin fits the longest (cut) class name in :func:`label_font`, plus 8 px."""
    font = label_font()
    names = [short_label(name) for name in class_names]
    label_width = (max((math.ceil(font.getlength(name)) for name in names), default=0) + 8) if show_labels else 0
    labels = labels.cpu()
    counts = [int((labels == k).sum()) for k in range(len(class_names))]
    return grid_layout(counts, image_size, label_width, pad=pad, min_cell=min_cell, max_cols=max_cols, max_side=max_side)


def draw_grid(images: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str], *, pad: int = 2, min_cell: int = 64,
              max_cols: int = 10, max_side: int = 4096, show_labels: bool = True) -> torch.Tensor:  # fmt: skip
    """The grid picture of ``images`` grouped by ``labels``, on white (layout: :func:`plan_grid`).

    Shape: ``images [N, C, H, W]`` in ``[0, 1]`` (de-normalised), ``labels [N]`` int64 class ids
    ``< len(class_names)``; returns ``[C, height, width]`` float32 in ``[0, 1]``. Images of one class keep
    their order. Class names and the note are black text (Pillow's default font) in the label margin and
    below the grid; image pixels are copied exactly (enlarged by repetition).
    """
    images = images.detach().float().cpu()
    labels = labels.cpu()
    n, c, h, w = images.shape
    layout = plan_grid(labels, class_names, (h, w), pad=pad, min_cell=min_cell, max_cols=max_cols, max_side=max_side,
                       show_labels=show_labels)  # fmt: skip
    font = label_font()
    note_width = math.ceil(font.getlength(layout.note)) + 2 * pad if layout.note else 0
    height, width = layout.size[0], max(layout.size[1], note_width)
    canvas = torch.ones(c, height, width)
    by_class = [torch.nonzero(labels == k).flatten().tolist() for k in range(len(class_names))]
    drawn = images[[by_class[k][j] for k, j, _, _ in layout.cells]]  # only what is drawn is enlarged
    if layout.scale > 1:
        drawn = drawn.repeat_interleave(layout.scale, dim=2).repeat_interleave(layout.scale, dim=3)
    ch, cw = layout.cell
    for image, (k, j, top, left) in zip(drawn, layout.cells):
        canvas[:, top : top + ch, left : left + cw] = image
    text = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(text)
    if show_labels:
        for k, top, left in layout.labels:
            draw.text((left + 4, top + (ch - FONT_SIZE) // 2), short_label(class_names[k]), fill=255, font=font)
    if layout.note:
        draw.text((pad, layout.note_top), layout.note, fill=255, font=font)
    ink = torch.from_numpy(np.asarray(text, dtype=np.float32) / 255.0)
    return canvas * (1 - ink)
