"""Build a Comp-DD-style benchmark of your own data: rank each category's classes by complexity.

A *categories file* groups a dataset's classes into categories of visually similar classes::

    # categories.toml: category = [class, ...]; a class is its name, its wnid or its label number
    bird = ["indigo_bunting", "n01530575", 13, ...]
    dog = [...]

Within each category the ``size`` most complex classes form the hard subset and the ``size`` least
complex ones the easy subset (Comp-DD: 10 of each). A category needs at least ``2 * size`` classes, so
that the two never share a class.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from ddcore import ConfigError, ImageDataset
from ddcore_compdd.complexity import easy_hard_split

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

OPTION = "option --categories"


def read_categories(path: str | Path) -> dict[str, list[Any]]:
    """``{category: [class reference, ...]}`` from a TOML or JSON file; problems are one-line ConfigErrors."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"categories file {path} cannot be read: {exc.strerror or exc} ({OPTION})") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"categories file {path} is not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'}: {exc} ({OPTION})") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"categories file {path} must map category names to lists of classes ({OPTION})")
    for category, classes in data.items():
        if not isinstance(classes, list) or not all(isinstance(c, (str, int)) and not isinstance(c, bool) for c in classes):
            raise ConfigError(f"categories file {path}: category {category!r} must be a list of class names, wnids or label numbers ({OPTION})")
    return data


def resolve_categories(categories: dict[str, list[Any]], dataset: ImageDataset) -> dict[str, list[int]]:
    """Class references -> labels of ``dataset`` (by name, wnid or number). Unknown or repeated classes are errors."""
    by_name = {name: label for label, name in enumerate(dataset.class_names)}
    by_wnid = {wnid: label for label, wnid in enumerate(dataset.extra.get("wnids") or [])}
    resolved: dict[str, list[int]] = {}
    owner: dict[int, str] = {}
    unknown: list[str] = []
    for category, classes in categories.items():
        labels = []
        for ref in classes:
            if isinstance(ref, int):
                label = ref if 0 <= ref < dataset.num_classes else None
            else:
                label = by_name.get(ref, by_wnid.get(ref))
            if label is None:
                unknown.append(f"{category}: {ref!r}")
                continue
            if label in owner:
                raise ConfigError(
                    f"class {dataset.class_names[label]!r} is listed in {owner[label]!r} and again in {category!r} ({OPTION})"
                )
            owner[label] = category
            labels.append(label)
        resolved[category] = labels
    if unknown:
        shown = ", ".join(unknown[:5]) + (f", ... ({len(unknown) - 5} more)" if len(unknown) > 5 else "")
        raise ConfigError(f"classes not in {dataset.name}: {shown} ({OPTION}; see the dataset's class names)")
    return resolved


def build_subsets(categories: dict[str, list[int]], class_scores: list[float], class_names: list[str], size: int) -> list[dict]:
    """One easy and one hard subset per category, as dicts.

    Each dict: ``name`` (``<category>-easy``), ``category``, ``level``, ``labels`` (dataset labels,
    easy from least complex, hard from most complex), ``classes`` (names), ``complexity`` (per class)
    and ``mean_complexity``.

    >>> subsets = build_subsets({"c": [0, 1, 2, 3]}, [0.6, 0.9, 0.5, 0.7], list("abcd"), 2)
    >>> [(s["name"], s["classes"]) for s in subsets]
    [('c-easy', ['c', 'a']), ('c-hard', ['b', 'd'])]
    """
    subsets = []
    for category, labels in categories.items():
        if len(labels) < 2 * size:
            raise ConfigError(
                f"category {category!r} has {len(labels)} classes; {size} easy + {size} hard need at least {2 * size} "
                "(option --size)"
            )
        scores = [class_scores[label] for label in labels]
        easy, hard = easy_hard_split(scores, size)
        for level, positions in (("easy", easy), ("hard", hard)):
            chosen = [labels[p] for p in positions]
            values = [class_scores[label] for label in chosen]
            subsets.append({
                "name": f"{category}-{level}", "category": category, "level": level, "labels": chosen,
                "classes": [class_names[label] for label in chosen], "complexity": values,
                "mean_complexity": sum(values) / len(values),
            })  # fmt: skip
    return subsets


def class_folders(dataset: ImageDataset) -> tuple[Path, list[str]]:
    """``(data root, one folder name per label)`` of a folder-backed dataset; else a ConfigError."""
    root = dataset.extra.get("root")
    if not root:
        raise ConfigError(
            f"{dataset.name} is not read from class folders, so its subsets cannot be written as folders; "
            "drop --materialize (subsets.json still lists them)"
        )
    return Path(root), list(dataset.extra.get("wnids") or dataset.class_names)


def materialize(subsets: list[dict], dataset: ImageDataset, out: Path) -> list[Path]:
    """Write each subset as an ``imagefolder`` tree of symbolic links: ``out/<name>/{train,val}/<class folder>``.

    Returns the subset roots; each is usable as ``dd run --dataset imagefolder --data-root <root>``.
    """
    root, folders = class_folders(dataset)
    made = []
    for subset in subsets:
        target = out / subset["name"]
        for split in ("train", "val"):
            (target / split).mkdir(parents=True, exist_ok=True)
            for label in subset["labels"]:
                link = target / split / folders[label]
                if link.is_symlink() or link.exists():
                    link.unlink()
                os.symlink(root / split / folders[label], link, target_is_directory=True)
        made.append(target)
    return made
