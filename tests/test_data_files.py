"""Data shipped in the ``ddcore_data`` package."""

from ddcore_data import imagenet_class_index


def test_imagenet_class_index_is_sorted_by_wnid():
    index = imagenet_class_index()
    assert len(index) == 1000
    assert index[0] == ("n01440764", "tench")
    wnids = [index[i][0] for i in range(1000)]
    assert wnids == sorted(wnids) and len(set(wnids)) == 1000
