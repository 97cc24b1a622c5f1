"""The offline miniature: ``compdd/mini-easy`` and ``compdd/mini-hard`` from scikit-learn's real digits.

Both use the 1797 handwritten 8x8 digits and exactly the train/test split of ddcore's ``digits``
dataset (the same stratified 80/20 split and seed). Images are grey, ``[1, S, S]`` with ``S = 32`` by
default, each split normalised with its training split's mean and standard deviation.

- **mini-easy**: the digit fills the frame (bilinear upsampling of the 8x8 image, as ``digits`` does).
- **mini-hard**: the same digit small (40-55% of the side, brightest pixel 1) at a random position, on a cluttered
  background made of fragments of other digits (random crops, scaled, rotated, dimmed) and random
  strokes; the digit is composited on top with a pixelwise maximum.

The clutter is drawn from a fixed seed (:data:`MINI_SEED`), never from the run's seed, so the dataset is
the same in every run and process (expert and teacher caches key on it). Everything is generated in
memory with batched ``grid_sample`` calls (well under a second on a laptop CPU).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MINI_SEED = 20241022
#: Bumped whenever the generation changes (caches keyed on the dataset should include it).
MINI_VERSION = 2
DIGIT_SCALE = (0.40, 0.55)  # digit side as a fraction of the image side
FRAGMENTS = 4  # fragments of other digits per image
FRAGMENT_SCALE = (0.35, 0.75)  # fragment (whole 8x8 source) side as a fraction of the image side
FRAGMENT_CROP = (3, 6)  # crop side, in source pixels, kept of each 8x8 fragment source
CLUTTER_INTENSITY = (0.15, 0.40)
STROKES = 3
STROKE_WIDTH = 0.04  # fraction of the image side


def place(sources: torch.Tensor, scale: torch.Tensor, centre: torch.Tensor, angle: torch.Tensor, size: int) -> torch.Tensor:
    """Draw each source image into an empty ``size x size`` canvas, scaled, rotated and moved.

    ``scale`` is the drawn side as a fraction of the canvas side, ``centre`` the drawn centre in
    normalised canvas coordinates (``[-1, 1]``, x then y), ``angle`` a rotation in radians. Pixels
    outside the source are zero.

    Shape: ``sources [B, 1, h, w]``, ``scale [B]``, ``centre [B, 2]``, ``angle [B]`` -> ``[B, 1, size, size]``.

    >>> place(torch.ones(1, 1, 8, 8), torch.tensor([0.5]), torch.zeros(1, 2), torch.zeros(1), 8)[0, 0].sum().item()
    16.0
    """
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # output (canvas) coords -> input (source) coords: R(-angle) / scale applied to (out - centre)
    theta = torch.stack(
        [
            torch.stack([cos, sin, -(cos * centre[:, 0] + sin * centre[:, 1])], dim=1),
            torch.stack([-sin, cos, -(-sin * centre[:, 0] + cos * centre[:, 1])], dim=1),
        ],
        dim=1,
    )  # [B, 2, 3]
    grid = F.affine_grid(theta, [sources.shape[0], 1, size, size], align_corners=False)
    return F.grid_sample(sources, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def strokes(count: int, lines: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Random straight strokes with soft edges, each at a random intensity; the max over ``lines``.

    Shape: ``-> [count, 1, size, size]`` float32 in ``[0, 1]``.
    """
    ends = torch.rand(count, lines, 2, 2, generator=generator) * 2 - 1  # [count, lines, end, xy]
    level = _uniform(CLUTTER_INTENSITY, (count, lines, 1, 1), generator)
    axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    points = torch.stack([xs, ys], dim=-1).view(1, 1, size, size, 2)
    a, b = ends[:, :, 0].view(count, lines, 1, 1, 2), ends[:, :, 1].view(count, lines, 1, 1, 2)
    ab = b - a
    t = (((points - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-6)).clamp(0, 1)
    distance = (points - (a + t.unsqueeze(-1) * ab)).norm(dim=-1)  # [count, lines, size, size]
    width = 2 * STROKE_WIDTH
    return ((1 - distance / width).clamp(0, 1) * level).amax(dim=1, keepdim=True)


def make_hard(digits: torch.Tensor, size: int, seed: int = MINI_SEED) -> torch.Tensor:
    """The mini-hard images: each digit small, at a random place, on clutter from the other digits.

    Shape: ``digits [N, 1, 8, 8]`` in ``[0, 1]`` -> ``[N, 1, size, size]`` in ``[0, 1]``.
    Deterministic given ``seed``.
    """
    n = digits.shape[0]
    generator = torch.Generator().manual_seed(seed)
    # the digit itself: small, upright, fully inside the frame
    scale = _uniform(DIGIT_SCALE, (n,), generator)
    room = 1 - scale
    centre = (torch.rand(n, 2, generator=generator) * 2 - 1) * room.unsqueeze(1)
    bright = digits / digits.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)  # every digit peaks at 1
    digit = place(bright, scale, centre, torch.zeros(n), size)
    # fragments: random crops of other digits, dimmed, anywhere (possibly cut by the frame)
    k = FRAGMENTS
    other = torch.randint(0, n - 1, (n, k), generator=generator)
    other = other + (other >= torch.arange(n).unsqueeze(1)).long()  # never the image itself
    side = torch.randint(FRAGMENT_CROP[0], FRAGMENT_CROP[1] + 1, (n * k, 2), generator=generator)
    start = (torch.rand(n * k, 2, generator=generator) * (9 - side)).floor().long()
    cells = torch.arange(8)
    rows = (cells >= start[:, :1]) & (cells < (start + side)[:, :1])  # [n*k, 8]
    cols = (cells >= start[:, 1:]) & (cells < (start + side)[:, 1:])
    mask = (rows.unsqueeze(2) & cols.unsqueeze(1)).float().unsqueeze(1)  # [n*k, 1, 8, 8]
    sources = digits[other.reshape(-1)] * mask
    pieces = place(
        sources,
        _uniform(FRAGMENT_SCALE, (n * k,), generator),
        torch.rand(n * k, 2, generator=generator) * 2.4 - 1.2,
        torch.rand(n * k, generator=generator) * 2 * math.pi,
        size,
    )
    level = _uniform(CLUTTER_INTENSITY, (n * k, 1, 1, 1), generator)
    clutter = (pieces * level).view(n, k, size, size).amax(dim=1, keepdim=True)
    clutter = torch.maximum(clutter, strokes(n, STROKES, size, generator))
    return torch.maximum(clutter, digit).clamp(0, 1)


def make_easy(digits: torch.Tensor, size: int) -> torch.Tensor:
    """The mini-easy images: the digit upsampled to fill the frame (as ddcore's ``digits``).

    Shape: ``[N, 1, 8, 8]`` -> ``[N, 1, size, size]``.
    """
    return F.interpolate(digits, size=(size, size), mode="bilinear", align_corners=False)


def _uniform(bounds: tuple[float, float], shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(shape, generator=generator)
