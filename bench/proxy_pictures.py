"""Grid pictures of the proxy pair for the docs: one row per class, test images, optionally each digit's box.

    OMP_NUM_THREADS=1 .venv/bin/python bench/proxy_pictures.py --out docs/img [--columns 8] [--zoom 2]

Writes ``proxy-easy.png``, ``proxy-hard.png`` and ``proxy-hard-boxes.png`` (the hard grid with the generator's
box of every digit, ``extra["boxes"]``, drawn in red). The first ``--columns`` test images of each class.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def grid(images: torch.Tensor, labels: torch.Tensor, boxes: torch.Tensor | None, columns: int, zoom: int):
    """A PIL RGB image: row ``c`` holds the first ``columns`` images of class ``c``, 1 px white gaps."""
    from PIL import Image, ImageDraw

    side = images.shape[-1] * zoom
    canvas = Image.new("RGB", (columns * (side + 1) + 1, 10 * (side + 1) + 1), "white")
    draw = ImageDraw.Draw(canvas)
    for c in range(10):
        for k, i in enumerate((labels == c).nonzero().flatten()[:columns].tolist()):
            pixels = (images[i, 0] * 255).round().byte().numpy()
            tile = Image.fromarray(pixels, mode="L").resize((side, side), Image.NEAREST).convert("RGB")
            left, top = 1 + k * (side + 1), 1 + c * (side + 1)
            canvas.paste(tile, (left, top))
            if boxes is not None:
                x0, y0, x1, y1 = (v * zoom for v in boxes[i].tolist())
                draw.rectangle((left + x0, top + y0, left + x1 - 1, top + y1 - 1), outline=(230, 30, 30))
    return canvas


def main() -> None:
    from ddcore.atomic import atomic_path
    from ddcore_compdd.proxydata import build_proxy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--columns", type=int, default=8)
    parser.add_argument("--zoom", type=int, default=2)
    args = parser.parse_args()
    pictures = {}
    for level in ("easy", "hard"):
        raw = build_proxy(level)
        pictures[f"proxy-{level}.png"] = grid(raw["test"], raw["test_labels"], None, args.columns, args.zoom)
        if level == "hard":
            pictures["proxy-hard-boxes.png"] = grid(raw["test"], raw["test_labels"], raw["test_boxes"], args.columns, args.zoom)
    for name, picture in pictures.items():
        with atomic_path(args.out / name) as tmp:
            picture.save(tmp, format="PNG", optimize=True)
        print(f"written: {args.out / name} ({(args.out / name).stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
