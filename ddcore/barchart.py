"""A small bar chart with error bars, drawn with Pillow (no plotting library): ``dd compare --png``.

One panel per :class:`Panel` (stacked top to bottom), one bar per :class:`Bar`: its height is ``value`` on
a ``0 .. y_max`` axis (gridlines at quarters), a whisker of ``± error`` with caps, the value written above,
the label and a grey caption below. Pillow's default font covers Latin text, digits and ``±``; other
symbols (``Δ``) may show as boxes. Values outside the axis are drawn clipped to it (the written number
is the true one). Text uses Pillow's default font.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageFont

from ddcore.atomic import atomic_path

BAR, BASE_BAR = (70, 130, 180), (160, 160, 160)
FONT_SIZE = 12
PLOT_H, TITLE_H, LABELS_H, MARGIN_L, MARGIN_R, BAR_W = 240, 52, 44, 40, 16, 36


@dataclass
class Bar:
    """One bar: ``value`` (axis units) ``± error`` (``None``: no whisker), ``label`` and ``caption`` below it;
    ``muted`` draws it grey (a baseline)."""

    label: str
    value: float
    error: float | None = None
    caption: str = ""
    muted: bool = False


@dataclass
class Panel:
    """A titled row of bars (``subtitle``: a second, grey title line)."""

    title: str
    bars: list[Bar] = field(default_factory=list)
    subtitle: str = ""


def draw_bar_chart(panels: list[Panel], path: str | os.PathLike, *, y_max: float = 100.0) -> None:
    """Write the chart of ``panels`` as a PNG (RGB) at ``path``, atomically (the axis' unit belongs in the titles).

    Raises ``ValueError`` for no panels, a panel without bars, a non-positive ``y_max`` or a non-finite value.
    """
    if not panels or any(not p.bars for p in panels) or not y_max > 0:
        raise ValueError("draw_bar_chart: needs panels with bars and a positive y_max")
    if any(not math.isfinite(b.value) or (b.error is not None and not math.isfinite(b.error)) for p in panels for b in p.bars):
        raise ValueError("draw_bar_chart: values and errors must be finite")
    font = ImageFont.load_default(size=FONT_SIZE)

    def text_w(text: str) -> int:
        return math.ceil(font.getlength(text)) if text else 0

    slots = [max(BAR_W + 24, max(text_w(b.label), text_w(b.caption)) + 16) for p in panels for b in p.bars]
    slot = max(slots)
    width = max(max(MARGIN_L + len(p.bars) * slot + MARGIN_R, text_w(p.title) + 16, text_w(p.subtitle) + 16) for p in panels)
    panel_h = TITLE_H + PLOT_H + LABELS_H
    image = Image.new("RGB", (width, panel_h * len(panels) + 8), "white")
    draw = ImageDraw.Draw(image)
    for index, panel in enumerate(panels):
        top = index * panel_h
        base = top + TITLE_H + PLOT_H  # y of 0

        def y(value: float) -> float:
            return base - PLOT_H * max(0.0, min(value, y_max)) / y_max

        draw.text((8, top + 4), panel.title, fill="black", font=font)
        if panel.subtitle:
            draw.text((8, top + 4 + FONT_SIZE + 3), panel.subtitle, fill=(100, 100, 100), font=font)
        right = MARGIN_L + len(panel.bars) * slot
        for quarter in range(5):
            tick = y_max * quarter / 4
            draw.line([(MARGIN_L, y(tick)), (right, y(tick))], fill=(225, 225, 225))
            draw.text((MARGIN_L - 6, y(tick)), f"{tick:g}", fill="black", font=font, anchor="rm")
        draw.line([(MARGIN_L, base), (right, base)], fill="black")
        for j, bar in enumerate(panel.bars):
            centre = MARGIN_L + j * slot + slot / 2
            draw.rectangle([centre - BAR_W / 2, y(bar.value), centre + BAR_W / 2, base], fill=BASE_BAR if bar.muted else BAR)
            top_of_bar = y(bar.value)
            if bar.error:
                high, low = y(bar.value + bar.error), y(bar.value - bar.error)
                draw.line([(centre, high), (centre, low)], fill="black")
                for cap in (high, low):
                    draw.line([(centre - 6, cap), (centre + 6, cap)], fill="black")
                top_of_bar = min(top_of_bar, high)
            draw.text((centre, top_of_bar - 3), f"{bar.value:.1f}", fill="black", font=font, anchor="ms")
            draw.text((centre, base + 6), bar.label, fill="black", font=font, anchor="ma")
            if bar.caption:
                draw.text((centre, base + 8 + FONT_SIZE + 2), bar.caption, fill=(90, 90, 90), font=font, anchor="ma")
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
