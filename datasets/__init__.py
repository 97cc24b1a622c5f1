"""Dataset definitions that are data, not code (installed as the ``ddcore_data`` package).

- ``imagenet_class_index.json``: ImageNet-1K class index -> ``[wnid, name]``; the index is the wnid's
  position in sorted order (the order of torchvision's ImageFolder over ImageNet's train/).
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files


@cache
def imagenet_class_index() -> dict[int, tuple[str, str]]:
    """``{index: (wnid, human-readable name)}`` for the 1000 ImageNet-1K classes."""
    raw = json.loads(files(__name__).joinpath("imagenet_class_index.json").read_text(encoding="utf-8"))
    return {int(index): (wnid, name) for index, (wnid, name) in raw.items()}
