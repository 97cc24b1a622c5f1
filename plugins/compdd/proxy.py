"""The complex-scenario proxy pair's generator: real digits on crops of real photographs.

``compdd/proxy-easy`` and ``compdd/proxy-hard`` (issue 17) measure what the EDF paper measures on Comp-DD: the
same classes, easy where the discriminative region is large, hard where it is small and surrounded by
clutter. Both are made of two kinds of real, shipped data:

- the *object*: one of scikit-learn's 1797 handwritten 8x8 digits (``sklearn.datasets.load_digits``),
  rescaled to peak at 1 and drawn upright with bilinear sampling, as bright ink (alpha compositing);
- the *background*: a random square crop of one of scikit-learn's two sample photographs
  (``sklearn.datasets.load_sample_images``: ``china.jpg``, ``flower.jpg``, 427 x 640 px), made grey,
  maybe mirrored, min-max stretched and mapped into the level's intensity range. Natural clutter: edges,
  textures and shapes at every scale, none of them a digit.

The two levels differ only in numbers (:class:`LevelSpec`): on **easy** the digit fills the frame, near the
centre, over a dim, low-contrast view of the whole photo (weak edges: the teacher's Grad-CAM spreads over the
digit, which lowers easy's Comp-DD complexity); on **hard** it is about half the side, off-centre, over a
brighter, higher-contrast crop taken closer up (stronger edges competing with the digit).

Everything comes from one ``torch.Generator`` seeded with the given seed, in a fixed order, so one seed gives
identical bytes on any machine and thread count (all sampling is ``grid_sample`` on float32 CPU tensors).
The generator knows where each digit went: :func:`render` returns each image's ink box in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ddcore_compdd.mini import place

#: Bumped whenever the generated pixels change for the same seed (caches key on ``extra["version"]``).
PROXY_VERSION = 2
PROXY_SEED = 20261130


@dataclass(frozen=True)
class LevelSpec:
    """What makes one level easy or hard (every range is ``(low, high)``, drawn uniformly per image).

    Attributes:
        digit_scale: side of the digit's 8x8 cell as a fraction of the image side.
        jitter: how far the digit's centre may move from the image centre, as a fraction of the room left
            by the cell (0: centred; 1: anywhere the cell fits inside the frame).
        crop: side of the photo crop as a fraction of the photo's height (smaller: closer up).
        background: intensity range the stretched crop is mapped into (``low`` black, ``high`` white).
        ink: opacity of the digit's ink (1 at the digit's brightest pixel, drawn towards white).
    """

    digit_scale: tuple[float, float]
    jitter: float
    crop: tuple[float, float]
    background: tuple[float, float]
    ink: tuple[float, float]


LEVELS: dict[str, LevelSpec] = {
    "easy": LevelSpec(digit_scale=(0.90, 1.00), jitter=0.2, crop=(0.8, 1.0), background=(0.0, 0.15), ink=(0.9, 1.0)),
    "hard": LevelSpec(digit_scale=(0.50, 0.60), jitter=0.5, crop=(0.15, 0.40), background=(0.0, 0.50), ink=(1.0, 1.0)),
}


def sample_photos() -> torch.Tensor:
    """scikit-learn's two sample photographs, grey (ITU-R 601 luma).

    Shape: ``-> [2, 1, 427, 640]`` float32 in ``[0, 1]`` (``china.jpg``, ``flower.jpg``).
    """
    import numpy as np
    from sklearn.datasets import load_sample_images

    rgb = torch.from_numpy(np.stack(load_sample_images().images)).float() / 255.0  # [2, H, W, 3]
    luma = rgb @ torch.tensor([0.299, 0.587, 0.114])
    return luma.unsqueeze(1).contiguous()


def crops(photos: torch.Tensor, which: torch.Tensor, side: torch.Tensor, corner: torch.Tensor, flip: torch.Tensor,
          size: int) -> torch.Tensor:  # fmt: skip
    """Square crops of ``photos`` resampled to ``size`` px (bilinear), each min-max stretched to ``[0, 1]``.

    ``side``: the crop's side as a fraction of the photo height; ``corner``: where the crop sits, in
    ``[0, 1]`` of the room left in each direction (x then y); ``flip``: mirror left-right.

    Shape: ``photos [P, 1, H, W]``, ``which [N]`` int64 in ``[0, P)``, ``side [N]``, ``corner [N, 2]``,
    ``flip [N]`` bool -> ``[N, 1, size, size]`` float32 in ``[0, 1]``.

    >>> ramp = torch.linspace(0, 1, 8).repeat(4, 1).view(1, 1, 4, 8)
    >>> c = crops(ramp, torch.tensor([0]), torch.tensor([1.0]), torch.zeros(1, 2), torch.tensor([False]), 4)
    >>> c[0, 0, 0].tolist() == sorted(c[0, 0, 0].tolist()), c.min().item(), c.max().item()
    (True, 0.0, 1.0)
    """
    _, _, height, width = photos.shape
    n = which.shape[0]
    half_w, half_h = side * height / width, side  # half extents in normalised coords ([-1, 1] spans the photo)
    cx = -1 + half_w + corner[:, 0] * (2 - 2 * half_w)
    cy = -1 + half_h + corner[:, 1] * (2 - 2 * half_h)
    sx = torch.where(flip, -half_w, half_w)
    zero = torch.zeros(n)
    theta = torch.stack([torch.stack([sx, zero, cx], 1), torch.stack([zero, half_h, cy], 1)], 1)  # [N, 2, 3]
    grid = F.affine_grid(theta, [n, 1, size, size], align_corners=False)
    out = torch.empty(n, 1, size, size)
    for p in range(photos.shape[0]):  # one grid_sample per photo: no [N, 1, H, W] copy of the photos
        rows = (which == p).nonzero().flatten()
        if rows.numel():
            out[rows] = F.grid_sample(photos[p : p + 1].expand(rows.numel(), -1, -1, -1), grid[rows],
                                      mode="bilinear", padding_mode="border", align_corners=False)  # fmt: skip
    flat = out.flatten(1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - low) / (high - low).clamp_min(1e-6)).view(n, 1, size, size)


def ink_boxes(digits: torch.Tensor, scale: torch.Tensor, centre: torch.Tensor, size: int) -> torch.Tensor:
    """Each drawn digit's box: every pixel :func:`~ddcore_compdd.mini.place` makes non-zero lies inside it.

    The box bounds the source's non-zero pixels plus the one source pixel of reach of bilinear sampling,
    mapped to the canvas, floored/ceiled to whole pixels and clipped to the frame.

    Shape: ``digits [N, 1, 8, 8]``, ``scale [N]``, ``centre [N, 2]`` (normalised, x then y) -> ``[N, 4]``
    int64 ``(x0, y0, x1, y1)`` in pixels, ``x1``/``y1`` exclusive.

    >>> ink_boxes(torch.ones(1, 1, 8, 8), torch.tensor([0.5]), torch.zeros(1, 2), 32).tolist()
    [[7, 7, 25, 25]]
    """
    h, w = digits.shape[-2:]
    ink = digits[:, 0] > 0
    cols, rows = ink.any(1), ink.any(2)  # [N, w], [N, h]

    def extent(mask: torch.Tensor, n_src: int, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.arange(n_src, dtype=torch.float32)
        first = torch.where(mask, index, torch.full_like(index, n_src)).amin(1)
        last = torch.where(mask, index, torch.full_like(index, -1.0)).amax(1)
        cell = scale * size  # the 8x8 cell's side in canvas pixels
        origin = (c + 1) / 2 * size - cell / 2
        lo = origin + (first - 0.5) / n_src * cell  # bilinear reach: half a source pixel beyond each centre
        hi = origin + (last + 1.5) / n_src * cell
        return lo.floor().clamp(0, size), hi.ceil().clamp(0, size)

    x0, x1 = extent(cols, w, centre[:, 0])
    y0, y1 = extent(rows, h, centre[:, 1])
    return torch.stack([x0, y0, x1, y1], 1).long()


def render(digits: torch.Tensor, spec: LevelSpec, size: int, seed: int, photos: torch.Tensor | None = None,
           ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Draw each digit on a photo crop as ``spec`` says; deterministic given ``seed``.

    Returns ``(images, boxes)``: ``images [N, 1, size, size]`` float32 in ``[0, 1]`` (not normalised) and
    ``boxes [N, 4]`` int64 ``(x0, y0, x1, y1)`` px, exclusive ends (:func:`ink_boxes`).

    Shape: ``digits [N, 1, 8, 8]`` in ``[0, 1]``; ``photos [P, 1, H, W]`` (default :func:`sample_photos`).
    """
    photos = sample_photos() if photos is None else photos
    n = digits.shape[0]
    g = torch.Generator().manual_seed(seed)
    # the digit: upright, the whole 8x8 cell inside the frame
    scale = _uniform(spec.digit_scale, (n,), g)
    room = (1 - scale).unsqueeze(1)
    centre = (torch.rand(n, 2, generator=g) * 2 - 1) * room * spec.jitter
    peak = digits / digits.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    digit = place(peak, scale, centre, torch.zeros(n), size).clamp(0, 1)
    alpha = digit * _uniform(spec.ink, (n, 1, 1, 1), g)
    # the background: a crop of a photo
    which = torch.randint(0, photos.shape[0], (n,), generator=g)
    side = _uniform(spec.crop, (n,), g)
    corner = torch.rand(n, 2, generator=g)
    flip = torch.rand(n, generator=g) < 0.5
    low, high = spec.background
    background = low + (high - low) * crops(photos, which, side, corner, flip, size)
    images = background * (1 - alpha) + alpha  # white ink over the crop
    return images.clamp(0, 1), ink_boxes(peak, scale, centre, size)


def _uniform(bounds: tuple[float, float], shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(shape, generator=generator)
