"""The sixteen Comp-DD subsets: ImageNet-1K class indices per subset, in label order.

The lists are the benchmark's definition (EDF paper, arXiv 2410.17193, and its release). Index ``i``
is the ``i``-th wnid in sorted order, which is also torchvision ImageFolder's label on a standard
ImageNet ``train/`` folder; :func:`resolve_subset` maps indices to wnids and names with the class
index shipped as ``ddcore_data``.

One published list is defective: ``music-hard`` names banjo (420) twice, so it has 9 distinct classes
(the published 11,700 training images = 9 x 1300 confirm the statistics used that list). A label with
no images breaks training and per-class initialisation, so :func:`resolve_subset` drops the repeat,
keeps the 9 distinct classes in first-seen order and reports it in ``SubsetInfo.defects``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: subset name -> ImageNet-1K indices as published (list order = label order).
SUBSETS: dict[str, tuple[int, ...]] = {
    "bird-hard": (14, 19, 91, 15, 13, 95, 10, 16, 20, 12),
    "bird-easy": (130, 140, 83, 142, 134, 139, 88, 90, 144, 21),
    "car-hard": (802, 660, 829, 627, 609, 575, 573, 867, 734, 408),
    "car-easy": (581, 535, 717, 817, 511, 436, 656, 757, 661, 751),
    "dog-hard": (239, 238, 247, 195, 151, 266, 157, 181, 154, 217),
    "dog-easy": (193, 180, 227, 167, 246, 248, 224, 177, 269, 252),
    "fish-hard": (0, 391, 389, 395, 4, 396, 2, 394, 50, 103),
    "fish-easy": (5, 1, 6, 397, 390, 3, 392, 393, 148, 147),
    "snake-hard": (46, 42, 41, 40, 43, 58, 65, 59, 53, 52),
    "snake-easy": (64, 57, 55, 56, 61, 62, 68, 67, 54, 60),
    "insect-hard": (301, 326, 324, 305, 325, 300, 318, 320, 70, 322),
    "insect-easy": (323, 314, 310, 309, 306, 308, 302, 313, 303, 315),
    "round-hard": (852, 805, 736, 892, 429, 574, 722, 522, 752, 971),
    "round-easy": (417, 560, 953, 826, 426, 981, 430, 890, 746, 768),
    "music-hard": (420, 594, 420, 579, 402, 776, 486, 401, 546, 558),
    "music-easy": (542, 687, 494, 566, 642, 513, 875, 683, 889, 881),
}

CATEGORIES: tuple[str, ...] = ("bird", "car", "dog", "fish", "snake", "insect", "round", "music")

#: Published complexity (percent, easy -> hard) per category, for the docs and sanity checks.
PUBLISHED_COMPLEXITY: dict[str, tuple[float, float]] = {
    "bird": (66.0, 74.5), "car": (57.4, 64.4), "snake": (64.3, 70.8), "dog": (64.8, 70.8),
    "fish": (60.4, 66.4), "insect": (67.9, 73.0), "round": (64.6, 69.3), "music": (64.1, 68.7),
}  # fmt: skip


@dataclass(frozen=True)
class SubsetInfo:
    """One subset resolved against the ImageNet class index.

    Attributes:
        name: ``bird-hard`` (without the ``compdd/`` prefix).
        indices: the distinct ImageNet-1K indices in label order.
        wnids / class_names: one per label.
        defects: human-readable notes on how the published list was changed (empty when it was not).
    """

    name: str
    indices: tuple[int, ...]
    wnids: tuple[str, ...]
    class_names: tuple[str, ...]
    defects: tuple[str, ...] = field(default=())


def split_name(subset: str) -> tuple[str, str]:
    """``"bird-hard"`` -> ``("bird", "hard")``; any name without an easy/hard suffix -> ``(name, "")``.

    >>> split_name("compdd/music-easy"), split_name("digits")
    (('compdd/music', 'easy'), ('digits', ''))
    """
    for level in ("easy", "hard"):
        if subset.endswith(f"-{level}"):
            return subset[: -len(level) - 1], level
    return subset, ""


def distinct_in_order(indices: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(distinct indices in first-seen order, the repeated ones)``.

    >>> distinct_in_order((420, 594, 420, 579))
    ((420, 594, 579), (420,))
    """
    seen: list[int] = []
    repeated: list[int] = []
    for index in indices:
        (repeated if index in seen else seen).append(index)
    return tuple(seen), tuple(repeated)


def resolve_subset(name: str) -> SubsetInfo:
    """The subset ``name`` (``bird-hard``) with wnids and names from ``ddcore_data``; repeats dropped.

    Raises ``KeyError`` for an unknown name (callers turn it into a user-facing error).
    """
    from ddcore_data import imagenet_class_index

    published = SUBSETS[name]
    indices, repeated = distinct_in_order(published)
    table = imagenet_class_index()
    defects: tuple[str, ...] = ()
    if repeated:
        names = ", ".join(f"{table[i][1]} ({i})" for i in repeated)
        defects = (
            f"the published {name} list names {names} twice; loaded as {len(indices)} distinct classes "
            f"(the tenth class of the benchmark is unknown)",
        )
    return SubsetInfo(
        name=name,
        indices=indices,
        wnids=tuple(table[i][0] for i in indices),
        class_names=tuple(table[i][1] for i in indices),
        defects=defects,
    )
