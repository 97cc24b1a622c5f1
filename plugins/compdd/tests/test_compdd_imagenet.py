"""The ImageNet subsets on a fake ImageNet tree: loading, class order, the cache, errors, music-hard."""

from __future__ import annotations

import pytest
import torch

from ddcore import ConfigError, DatasetOptions
from ddcore.data.imagefolder import ImageReadError
from ddcore_compdd import cache as cache_module
from ddcore_compdd.imagenet import SubsetDefectWarning, load_subset
from ddcore_compdd.subsets import SUBSETS, resolve_subset


def options(root, tmp_path, size=16):
    return DatasetOptions(root=root, image_size=size, workers=0, cache_dir=tmp_path / "cache")


def test_every_subset_resolves_to_ten_distinct_classes_except_music_hard():
    from ddcore_data import imagenet_class_index

    assert len(SUBSETS) == 16
    table = imagenet_class_index()
    for name in SUBSETS:
        info = resolve_subset(name)
        assert info.wnids == tuple(table[i][0] for i in info.indices)
        assert len(info.indices) == (9 if name == "music-hard" else 10)
        assert bool(info.defects) == (name == "music-hard")
    assert resolve_subset("bird-hard").class_names[:3] == ("indigo_bunting", "chickadee", "coucal")
    assert resolve_subset("fish-hard").wnids[0] == "n01440764"  # tench, index 0


def test_subset_loads_in_published_label_order(fake_imagenet, tmp_path):
    root = fake_imagenet(("bird-hard",), train=3, val=2)
    dataset = load_subset("bird-hard", options(root, tmp_path))
    assert dataset.name == "compdd/bird-hard"
    assert dataset.class_names == list(resolve_subset("bird-hard").class_names)
    assert dataset.extra["imagenet_index"] == list(SUBSETS["bird-hard"])
    assert dataset.extra["wnids"][0] == "n01537544"  # indigo bunting (index 14) is label 0
    assert dataset.train.targets == [k for k in range(10) for _ in range(3)]
    assert dataset.test.targets == [k for k in range(10) for _ in range(2)]
    assert dataset.image_shape == (3, 16, 16)
    # class k was written with red = 20k + 10: the cached, squashed pixels keep it
    image, label = dataset.train[3 * 7]
    red = dataset.denormalize(image.unsqueeze(0))[0, 0].mean().item() * 255
    assert label == 7 and abs(red - 150) < 4


def test_second_load_decodes_nothing(fake_imagenet, tmp_path, monkeypatch):
    root = fake_imagenet(("car-easy",), train=2, val=1)
    first = load_subset("car-easy", options(root, tmp_path))
    images, _ = first.load("train", list(range(len(first.train))))

    def no_decoding(path, size):
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(cache_module, "decode_squashed", no_decoding)
    second = load_subset("car-easy", options(root, tmp_path))
    again, _ = second.load("train", list(range(len(second.train))))
    assert torch.equal(images, again)
    assert second.extra["cache"] == first.extra["cache"]


def test_a_changed_tree_gets_a_new_cache_entry(fake_imagenet, jpeg_writer, tmp_path):
    root = fake_imagenet(("car-easy",), train=2, val=1)
    first = load_subset("car-easy", options(root, tmp_path))
    wnid = first.extra["wnids"][4]
    jpeg_writer(root / "train" / wnid, 3, 200)  # one more image in class 4 (same names + one)
    second = load_subset("car-easy", options(root, tmp_path))
    assert second.extra["cache"] != first.extra["cache"]
    assert second.class_counts("train")[4] == 3


def test_missing_wnid_folders_are_named(fake_imagenet, tmp_path):
    info = resolve_subset("dog-easy")
    root = fake_imagenet(("dog-easy",), skip=(f"train/{info.wnids[3]}", f"val/{info.wnids[8]}"))
    with pytest.raises(ConfigError) as caught:
        load_subset("dog-easy", options(root, tmp_path))
    message = str(caught.value)
    assert f"train/{info.wnids[3]} ({info.class_names[3]})" in message
    assert f"val/{info.wnids[8]} ({info.class_names[8]})" in message
    assert "--data-root" in message and "\n" not in message


def test_root_problems_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="needs your ImageNet folder.*--data-root"):
        load_subset("bird-easy", options(None, tmp_path))
    (tmp_path / "only-train" / "train").mkdir(parents=True)
    with pytest.raises(ConfigError, match="has no val/ folder"):
        load_subset("bird-easy", options(tmp_path / "only-train", tmp_path))


def test_a_corrupt_image_is_named(fake_imagenet, tmp_path):
    root = fake_imagenet(("snake-easy",), train=1, val=1)
    bad = root / "train" / resolve_subset("snake-easy").wnids[2] / "broken.JPEG"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ImageReadError, match="broken.JPEG"):
        load_subset("snake-easy", options(root, tmp_path))
    assert not list((tmp_path / "cache" / "compdd").glob("*/meta.json"))  # no half-built cache is reused


def test_music_hard_loads_nine_distinct_classes_with_a_warning(fake_imagenet, tmp_path):
    root = fake_imagenet(("music-hard",), train=2, val=1)
    with pytest.warns(SubsetDefectWarning, match="banjo \\(420\\) twice"):
        dataset = load_subset("music-hard", options(root, tmp_path))
    assert dataset.num_classes == 9
    assert dataset.class_names.count("banjo") == 1
    assert dataset.class_names[:3] == ["banjo", "harp", "grand_piano"]
    assert dataset.class_counts("train") == [2] * 9  # every label has images
    assert "NOTE" in dataset.description and dataset.extra["compdd_defects"]
