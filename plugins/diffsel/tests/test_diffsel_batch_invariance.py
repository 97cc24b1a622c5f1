"""A patch does not depend on the other boxes cut with it (issue 19, kind 5, the part in windows.py).

``crop_resize`` used one sampling ratio for a whole batch (from its largest box), so the same box
came out differently (up to 0.33 on digits) depending on which crops shared its Stage-I batch or its
assembly call. The ratio is now counted per box.
"""

from __future__ import annotations

import torch

from ddcore_diffsel.windows import crop_resize

BOXES = torch.tensor([[0, 0, 16, 16], [3, 4, 20, 10], [1, 1, 5, 5], [0, 0, 32, 32], [2, 2, 8, 30], [5, 7, 17, 17]])


def test_each_patch_is_bit_identical_alone_and_in_any_batch():
    images = torch.rand(len(BOXES), 3, 32, 32, generator=torch.Generator().manual_seed(0))
    batched = crop_resize(images, BOXES, 16)
    for i in range(len(BOXES)):
        assert torch.equal(batched[i : i + 1], crop_resize(images[i : i + 1], BOXES[i : i + 1], 16)), i
    for chunk in (2, 4):  # Stage-I batches of other sizes
        parts = [crop_resize(images[s : s + chunk], BOXES[s : s + chunk], 16) for s in range(0, len(BOXES), chunk)]
        assert torch.equal(torch.cat(parts), batched), chunk


def test_the_per_box_ratio_is_the_area_average_of_its_own_box():
    """A 32 px box into 16 px averages 2x2 bilinear samples at pixel centres: the mean of each 2x2 block,
    whatever larger box is in the batch (a 64 px one would have asked for 4x4 samples before)."""
    image = torch.arange(64.0 * 64).view(1, 1, 64, 64)
    images = image.repeat(2, 1, 1, 1)
    out = crop_resize(images, torch.tensor([[0, 0, 32, 32], [0, 0, 64, 64]]), 16)
    want = torch.nn.functional.avg_pool2d(image[:, :, :32, :32], 2)
    assert torch.equal(out[0:1], want)
    assert torch.equal(crop_resize(image[:, :, :16, :16], torch.tensor([[0, 0, 16, 16]]), 16), image[:, :, :16, :16])
