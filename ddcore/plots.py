"""``tm_log.png``: the matching loss and ``syn_lr`` over iterations, drawn with Pillow (no plotting library).

Two panels, one above the other, sharing the x axis (the 0-based ``iteration`` of ``tm_log.json``): the
matching loss (updates skipped by ``tm.skip_threshold`` drawn as grey dots) and the learned student lr
``syn_lr`` after each iteration. Each series is a line through a dot per row; the y axis spans the series'
range with 5 % padding, labelled at its ends with enough digits to tell them apart. Where each value
lands is :meth:`Axes.pixel` of :func:`tm_log_axes`, so a test can check a picture against its log.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping, Sequence

from ddcore.atomic import atomic_path

if TYPE_CHECKING:
    from PIL import Image

    from ddcore.context import RunContext

#: The picture's size in pixels (width, height).
SIZE = (720, 520)
#: The file written next to ``tm_log.json``.
TM_LOG_PLOT = "tm_log.png"
LOSS_COLOUR, LR_COLOUR, SKIPPED_COLOUR = (31, 119, 180), (214, 96, 77), (150, 150, 150)
GRID, AXIS, BACKGROUND = (228, 228, 228), (0, 0, 0), (255, 255, 255)
MARGIN_L, MARGIN_R, TITLE_H, X_LABELS_H = 80, 20, 26, 30
DOT = 2  # radius of a row's dot, px


@dataclass(frozen=True)
class Axes:
    """One panel's plot area ``box = (left, top, right, bottom)`` (px, inclusive) and the data ranges it shows."""

    box: tuple[int, int, int, int]
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    def pixel(self, x: float, y: float) -> tuple[int, int]:
        """The pixel ``(column, row)`` where the data point ``(x, y)`` is drawn.

        >>> Axes((10, 0, 110, 100), (0, 10), (0, 1)).pixel(5, 0.25)
        (60, 75)
        """
        left, top, right, bottom = self.box
        (x0, x1), (y0, y1) = self.x_range, self.y_range
        column = left + (x - x0) / (x1 - x0) * (right - left)
        row = bottom - (y - y0) / (y1 - y0) * (bottom - top)
        return round(column), round(row)


def padded_range(values: Sequence[float]) -> tuple[float, float]:
    """``(low, high)`` around the finite ``values`` with 5 % padding; a constant series gets +-5 % of its value
    (+-1 around 0); no finite value: ``(0, 1)``.

    >>> padded_range([1.0, 3.0])
    (0.9, 3.1)
    >>> padded_range([2.0, 2.0])
    (1.9, 2.1)
    """
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    low, high = min(finite), max(finite)
    pad = (high - low) * 0.05 if high > low else (abs(low) * 0.05 or 1.0)
    return low - pad, high + pad


def tick_labels(low: float, high: float) -> tuple[str, str]:
    """Labels for the two ends of an axis, with the fewest significant digits (3 to 10) that tell them apart.

    >>> tick_labels(0.01, 0.0100002)
    ('0.01', '0.0100002')
    """
    for digits in range(3, 11):
        a, b = f"{low:.{digits}g}", f"{high:.{digits}g}"
        if a != b:
            return a, b
    return a, b


def tm_log_axes(rows: Sequence[Mapping]) -> tuple[Axes, Axes]:
    """The loss panel's and the ``syn_lr`` panel's :class:`Axes` for ``rows`` (``tm_log.json``'s rows)."""
    width, height = SIZE
    panel_h = height // 2
    last = max((int(row["iteration"]) for row in rows), default=0)
    x_range = (0.0, float(max(last, 1)))
    axes = []
    for index, key in enumerate(("loss", "syn_lr")):
        top = index * panel_h + TITLE_H
        box = (MARGIN_L, top, width - MARGIN_R, (index + 1) * panel_h - X_LABELS_H)
        axes.append(Axes(box, x_range, padded_range([float(row[key]) for row in rows])))
    return axes[0], axes[1]


def tm_log_figure(rows: Sequence[Mapping]) -> "Image.Image":
    """The picture of ``rows`` (each with ``iteration``, ``loss``, ``syn_lr``, ``skipped``): RGB, :data:`SIZE`."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", SIZE, BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    panels = zip(tm_log_axes(rows), ("loss", "syn_lr"), (LOSS_COLOUR, LR_COLOUR),
                 ("matching loss", "syn_lr (learned student lr)"))  # fmt: skip
    for axes, key, colour, name in panels:
        left, top, right, bottom = axes.box
        points = [(float(row["iteration"]), float(row[key]), bool(row.get("skipped"))) for row in rows]
        drawn = [p for p in points if math.isfinite(p[1])]
        missing = len(points) - len(drawn)
        title = f"{name}: {len(points)} iteration{'s' if len(points) != 1 else ''}"
        if missing:
            title += f" ({missing} non-finite not drawn)"
        if any(skipped for _, _, skipped in points):
            title += "; grey dots: updates skipped (tm.skip_threshold)"
        draw.text((left, top - TITLE_H + 6), title, fill=AXIS, font=font)
        for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
            y = round(bottom - fraction * (bottom - top))
            draw.line([(left, y), (right, y)], fill=GRID)
        low_text, high_text = tick_labels(*axes.y_range)
        draw.text((left - 6 - font.getlength(high_text), top - 5), high_text, fill=AXIS, font=font)
        draw.text((left - 6 - font.getlength(low_text), bottom - 6), low_text, fill=AXIS, font=font)
        draw.rectangle([left, top, right, bottom], outline=AXIS)
        for value in _x_ticks(axes.x_range[1]):
            x, _ = axes.pixel(value, axes.y_range[0])
            draw.line([(x, bottom), (x, bottom + 4)], fill=AXIS)
            text = str(value)
            draw.text((x - font.getlength(text) / 2, bottom + 6), text, fill=AXIS, font=font)
        pixels = [axes.pixel(x, y) for x, y, _ in drawn]
        if len(pixels) > 1:
            draw.line(pixels, fill=colour, width=1)
        for (x, y), (_, _, skipped) in zip(pixels, drawn):
            draw.ellipse([x - DOT, y - DOT, x + DOT, y + DOT], fill=SKIPPED_COLOUR if skipped else colour)
    draw.text((SIZE[0] // 2 - 20, SIZE[1] - 14), "iteration", fill=AXIS, font=font)
    return image


def _x_ticks(last: float) -> list[int]:
    """Up to 6 whole iterations from 0 to ``last``, evenly spaced."""
    last = int(last)
    step = max(1, math.ceil(last / 5))
    return sorted({*range(0, last + 1, step), last})


def save_tm_log_plot(rows: Sequence[Mapping], path: str | Path) -> Path:
    """Write :func:`tm_log_figure` of ``rows`` to ``path`` as a PNG, atomically; returns ``path``."""
    path = Path(path)
    image = tm_log_figure(rows)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path


@contextmanager
def tm_log_picture(ctx: "RunContext", rows: Sequence[Mapping]) -> Iterator[None]:
    """Around a matching loop: on leaving, the main process writes ``RUN/tm_log.png`` from ``rows`` (the live
    log). After a failure it is still drawn, up to the failure, but a failure to draw it never replaces the
    run's own error. Nothing is written without a run directory."""
    try:
        yield
    except BaseException:
        if ctx.out_dir is not None and ctx.is_main_process:
            try:
                save_tm_log_plot(rows, ctx.out_dir / TM_LOG_PLOT)
            except Exception:  # noqa: BLE001 - the run's own error is the one to report
                pass
        raise
    if ctx.out_dir is not None and ctx.is_main_process:
        save_tm_log_plot(rows, ctx.out_dir / TM_LOG_PLOT)
