"""The proxy pair: deterministic, boxes that hold the digit, the digits split's labels, in the registry."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from ddcore import ConfigError, DatasetOptions
from ddcore_compdd.minidata import digits_split
from ddcore_compdd.proxy import LEVELS, ink_boxes, render, sample_photos
from ddcore_compdd.proxydata import build_proxy, load_proxy


@pytest.fixture(scope="module")
def sources():
    """24 real digits of the training split and the two real photos."""
    pixels, labels, train_idx, _ = digits_split()
    return pixels[train_idx[:24]], sample_photos()


@pytest.mark.parametrize("level", ["easy", "hard"])
def test_one_seed_gives_identical_bytes_another_seed_other_images(level, sources):
    digits, photos = sources
    first, first_boxes = render(digits, LEVELS[level], 32, seed=5, photos=photos)
    again, again_boxes = render(digits, LEVELS[level], 32, seed=5, photos=photos)
    other, other_boxes = render(digits, LEVELS[level], 32, seed=6, photos=photos)
    assert first.numpy().tobytes() == again.numpy().tobytes() and torch.equal(first_boxes, again_boxes)
    assert (first - other).abs().amax(dim=(1, 2, 3)).min() > 0.05  # every image changed, not just some
    assert not torch.equal(first_boxes, other_boxes)
    assert first.shape == (24, 1, 32, 32) and first.dtype == torch.float32 and 0 <= first.min() and first.max() <= 1


@pytest.mark.parametrize("level", ["easy", "hard"])
def test_every_ink_pixel_lies_in_its_box(level, sources):
    """On black photos the image is the digit's ink alone: its non-zero pixels must all lie in the box, and the
    box is tight (each edge within 2 px of an ink pixel). The boxes do not depend on the photos' content."""
    digits, photos = sources
    ink, boxes = render(digits, LEVELS[level], 32, seed=9, photos=torch.zeros(2, 1, 40, 60))
    _, real_boxes = render(digits, LEVELS[level], 32, seed=9, photos=photos)
    assert torch.equal(boxes, real_boxes)
    for image, (x0, y0, x1, y1) in zip(ink[:, 0], boxes.tolist()):
        ys, xs = torch.nonzero(image > 0, as_tuple=True)
        assert len(xs) > 0 and 0 <= x0 < x1 <= 32 and 0 <= y0 < y1 <= 32
        assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1
        assert xs.min() - x0 <= 2 and x1 - 1 - xs.max() <= 2 and ys.min() - y0 <= 2 and y1 - 1 - ys.max() <= 2


def test_ink_box_known_answer_for_a_one_pixel_digit():
    """Source pixel (row 2, col 5) of an 8x8 cell drawn 16 px wide at the centre of 32 px: the cell spans
    8..24 px, 2 px per source pixel; bilinear reach is half a source pixel either side of its 2 px."""
    digit = torch.zeros(1, 1, 8, 8)
    digit[0, 0, 2, 5] = 1.0
    assert ink_boxes(digit, torch.tensor([0.5]), torch.zeros(1, 2), 32).tolist() == [[17, 11, 21, 15]]


def test_the_hard_digit_is_smaller(sources):
    digits, photos = sources
    _, easy = render(digits, LEVELS["easy"], 32, seed=1, photos=photos)
    _, hard = render(digits, LEVELS["hard"], 32, seed=1, photos=photos)
    height = lambda b: (b[:, 3] - b[:, 1]).float()  # noqa: E731  (digits' ink spans nearly all 8 rows)
    assert height(hard).median() < 0.75 * height(easy).median()
    assert (hard[:, :2] > 0).all() and (hard[:, 2:] < 32).all()  # the hard digit never touches the frame


def test_the_easy_digit_sits_nearer_the_centre(sources):
    digits, photos = sources
    _, easy = render(digits, LEVELS["easy"], 32, seed=2, photos=photos)
    _, hard = render(digits, LEVELS["hard"], 32, seed=2, photos=photos)
    # the box's centre moves with the digit's centre (the 8x8 cell's ink is roughly centred in it)
    offset = lambda b: ((b[:, :2] + b[:, 2:]).float() / 2 - 16).abs().amax(dim=1)  # noqa: E731  px from the centre
    assert offset(easy).median() < 0.5 * offset(hard).median()


def test_the_easy_background_is_plainer(sources):
    """With blank digits the image is the background alone: easy's is dimmer and flatter than hard's (a far crop
    mapped into 0-0.15 against a close-up crop mapped into 0-0.5): weaker edges for the network to attend to."""
    digits, photos = sources
    blank = torch.zeros_like(digits)
    easy, _ = render(blank, LEVELS["easy"], 32, seed=3, photos=photos)
    hard, _ = render(blank, LEVELS["hard"], 32, seed=3, photos=photos)
    assert easy.amax() <= LEVELS["easy"].background[1] + 1e-6 < 0.5 * hard.amax()
    spread = lambda x: x.flatten(1).std(dim=1)  # noqa: E731
    assert spread(easy).median() < 0.5 * spread(hard).median()
    edges = lambda x: (x[..., 1:] - x[..., :-1]).abs().mean(dim=(1, 2, 3))  # noqa: E731  mean step between neighbours
    assert edges(easy).median() < 0.6 * edges(hard).median()


def test_dataset_has_the_digits_split_labels_boxes_and_normalisation():
    _, labels, train_idx, test_idx = digits_split()
    dataset = load_proxy("hard", DatasetOptions())
    assert dataset.name == "compdd/proxy-hard" and dataset.image_shape == (1, 32, 32)
    assert (len(dataset.train), len(dataset.test)) == (1437, 360)
    assert dataset.train.targets == labels[train_idx].tolist() and dataset.test.targets == labels[test_idx].tolist()
    boxes = dataset.extra["boxes"]
    assert boxes["train"].shape == (1437, 4) and boxes["test"].shape == (360, 4)
    images = dataset.train.images
    assert abs(images.mean().item()) < 1e-4 and abs(images.std().item() - 1) < 1e-4
    raw = build_proxy("hard")
    torch.testing.assert_close(dataset.denormalize(images), raw["train"], atol=1e-5, rtol=0)
    assert torch.equal(raw["train_boxes"], boxes["train"])


def test_train_and_test_draw_different_placements():
    raw = build_proxy("hard")
    first = raw["train_boxes"][:360]
    assert (first != raw["test_boxes"]).any(dim=1).float().mean() > 0.9


def test_too_small_an_image_size_is_refused():
    with pytest.raises(ConfigError, match="at least 32 px.*--image-size"):
        load_proxy("easy", DatasetOptions(image_size=16))


def test_the_registry_lists_and_builds_both():
    from ddcore_cli.app import cli

    result = CliRunner().invoke(cli, ["datasets", "--plugin", "compdd"])
    assert result.exit_code == 0, result.output
    assert "compdd/proxy-easy" in result.output and "compdd/proxy-hard" in result.output


def test_docstring_examples_of_the_generator():
    import doctest

    import ddcore_compdd.proxy as module

    failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert tried >= 2 and failures == 0
