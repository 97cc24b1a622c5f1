"""The report's PNG chart, drawn with Pillow (no plotting library needed).

One panel per subset and evaluation protocol (rows measured differently are never drawn side by side
as one comparison); in each, one group per (method, IPC) with an easy and a hard bar (accuracy %,
mean, with a ±std whisker) and the gap written below the group.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ddcore.atomic import atomic_path
from ddcore_compdd.report import ReportRow, protocol_tables

EASY, HARD = (70, 130, 180), (214, 96, 77)
PANEL_H, MARGIN_L, MARGIN_B, TOP = 260, 50, 56, 34
BAR_W, GAP_W, GROUP_PAD = 26, 6, 36


def _group_label(row: ReportRow) -> str:
    return f"{row.method} · IPC {row.ipc}"


def draw_chart(report: dict[str, list[ReportRow]], path: str | Path) -> None:
    """Write the chart of ``report`` (as :func:`ddcore_compdd.report.build_report` returns it) to ``path``."""
    font = ImageFont.load_default()
    panels = []
    for subset, subset_rows in report.items():
        tables = protocol_tables(subset_rows)
        for number, (protocol, rows) in enumerate(tables, 1):
            who = f", {protocol.evaluator} evaluator"
            part = f" ({number}/{len(tables)})" if len(tables) > 1 else ""
            panels.append((f"{subset}{part}: test accuracy % (easy vs hard){who}", rows))
    groups = max((len(rows) for _, rows in panels), default=1)
    group_w = 2 * BAR_W + GAP_W + GROUP_PAD
    label_w = max((int(font.getlength(_group_label(r))) + 8 for _, rows in panels for r in rows), default=0)
    group_w = max(group_w, label_w)
    width = MARGIN_L + groups * group_w + 150
    height = len(panels) * (PANEL_H + TOP) + 10
    image = Image.new("RGB", (width, max(height, 60)), "white")
    draw = ImageDraw.Draw(image)
    for panel, (title, rows) in enumerate(panels):
        top = panel * (PANEL_H + TOP) + TOP
        base = top + PANEL_H - MARGIN_B  # y of 0 %
        plot_h = PANEL_H - MARGIN_B - 10

        def y(value: float) -> float:
            return base - plot_h * max(0.0, min(value, 100.0)) / 100.0

        draw.text((MARGIN_L, top - 24), title, fill="black", font=font)
        for tick in range(0, 101, 25):
            draw.line([(MARGIN_L, y(tick)), (MARGIN_L + groups * group_w, y(tick))], fill=(225, 225, 225))
            draw.text((8, y(tick) - 6), f"{tick:>3}", fill="black", font=font)
        draw.line([(MARGIN_L, base), (MARGIN_L + groups * group_w, base)], fill="black")
        for index, row in enumerate(rows):
            left = MARGIN_L + index * group_w + (group_w - 2 * BAR_W - GAP_W) / 2
            for offset, level, colour in ((0, "easy", EASY), (BAR_W + GAP_W, "hard", HARD)):
                stats = row.stats(level)
                if stats is None:
                    continue
                mean, std = stats
                x0 = left + offset
                draw.rectangle([x0, y(mean), x0 + BAR_W, base], fill=colour)
                mid = x0 + BAR_W / 2
                if std is not None:  # one network: no whisker
                    draw.line([(mid, y(mean + std)), (mid, y(mean - std))], fill="black", width=1)
                draw.text((x0, y(mean) - 12), f"{mean:.0f}", fill="black", font=font)
            gap = row.gap()
            label = _group_label(row)
            centre = MARGIN_L + index * group_w + group_w / 2
            draw.text((centre - font.getlength(label) / 2, base + 6), label, fill="black", font=font)
            if gap is not None:
                text = f"gap {gap:+.1f}"
                draw.text((centre - font.getlength(text) / 2, base + 22), text, fill=(90, 90, 90), font=font)
        legend_x = MARGIN_L + groups * group_w + 20
        for offset, (name, colour) in enumerate((("easy", EASY), ("hard", HARD))):
            ly = top + 10 + offset * 18
            draw.rectangle([legend_x, ly, legend_x + 12, ly + 12], fill=colour)
            draw.text((legend_x + 18, ly), name, fill="black", font=font)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
