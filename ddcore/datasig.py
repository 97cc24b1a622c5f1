"""What a dataset is, in a form that can be saved and checked later: its *signature* and *fingerprint*.

Everything ddcore saves and later reuses against real data (a distilled set, cached experts, teachers,
plugin caches) records :func:`data_signature` of the dataset it was made from; whoever reuses it calls
:func:`check_signature` against the dataset it is about to be used with, and caches put
:func:`dataset_fingerprint` in their key, so that they miss when the data's *content* changes.

The fingerprint (16 hex digits) hashes how pixels are produced (``image_shape``, ``mean``, ``std``,
``extra["version"]`` and ``extra["decode_version"]`` when declared) and each split (``train``, ``val``
when the run carved one, ``test``) with the cheapest method that still sees a change of content:

* **own**: a split with a ``fingerprint() -> str`` method (a carved validation split, a plugin's
  cached split) is asked.
* **in memory** (:class:`~ddcore.data.base.TensorSplit`, any split with ``images``/``labels`` tensors):
  sha256 of the image and label tensors' bytes (about 1 s per GB).
* **files** (``imagefolder``'s splits, any split with a ``paths`` list, one per image): sha256 of
  the labels and, for every file, its path relative to the split's common folder, size, modification
  time, change time and inode (``os.stat`` only, no pixel is read). Rewriting, replacing, moving or
  swapping files under the same names changes it (the change time moves even when a tool restores
  the modification time); so does copying the tree elsewhere, ``chmod``, ``touch``, or a file system
  that renumbers inodes on every mount (the caches then miss and retrain: slower, never wrong). A file
  system with coarse timestamps (FAT: 2 s) can miss a same-size rewrite made within one tick of the
  previous fingerprint.
* **fallback** (a plugin split that is none of these): sha256 of every label plus the decoded pixels
  of up to :data:`SAMPLE_IMAGES` images at evenly spaced positions. Weaker: a change to an image that
  is not sampled goes unseen; declare ``ImageDataset.fingerprint``, expose ``paths`` or define
  ``fingerprint()`` to do better.

A factory that knows its content (a hash of a downloaded archive, a generator's version) sets
``ImageDataset.fingerprint``; it then stands for the pixels, and only the splits' labels (and the
``fingerprint()`` of splits that have one) are hashed with it. The splits' part is computed once per
dataset object (memoised on it, keyed on the split objects, so replacing a split recomputes it).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any, Mapping, Sequence

import torch

from ddcore.errors import ConfigError

#: Images decoded by the fallback fingerprint of a split that is neither in memory nor file-backed.
SAMPLE_IMAGES = 32

#: Relative tolerance when comparing saved and current normalisation constants.
NORM_RTOL = 1e-5

#: Split names covered by the fingerprint, in this order (``val`` only when the dataset has one).
SPLITS = ("train", "val", "test")

_MEMO = "_datasig_memo"


# ----------------------------------------------------------------------------------------------
# Fingerprint
# ----------------------------------------------------------------------------------------------


def dataset_fingerprint(dataset: Any) -> str:
    """16 hex digits that change when the content of ``dataset``'s splits changes (module docstring).

    ``dataset`` is a :class:`ddcore.data.ImageDataset`. Besides the splits it covers how their pixels
    are produced: ``image_shape``, ``mean``, ``std`` and ``extra["version"]`` / ``extra["decode_version"]``
    when the dataset declares them. Cheap: tensors are hashed, files only ``os.stat``-ed, and the
    splits' part is memoised on the dataset object (recomputed when a split object is replaced).
    """
    extra = getattr(dataset, "extra", None) or {}
    header = json.dumps(
        {
            "image_shape": [int(v) for v in dataset.image_shape],
            "mean": [float(v) for v in dataset.mean],
            "std": [float(v) for v in dataset.std],
            "version": _jsonable(extra.get("version")),
            "decode_version": _jsonable(extra.get("decode_version")),
        },
        sort_keys=True,
    )
    declared = getattr(dataset, "fingerprint", None)
    declared = declared if isinstance(declared, str) and declared else None
    splits = _splits(dataset)
    identity = (declared, tuple((name, id(split)) for name, split in splits))
    memo = getattr(dataset, _MEMO, None)
    if memo is not None and memo[0] == identity:
        content = memo[1]
    else:
        digest = hashlib.sha256()
        if declared is not None:
            digest.update(f"declared:{declared};".encode())
        for name, split in splits:
            if declared is not None and not callable(getattr(split, "fingerprint", None)):
                part = "labels:" + labels_fingerprint(split)  # the declared value covers the pixels
            else:
                part = split_fingerprint(split)
            digest.update(f"{name}:{part};".encode())
        content = digest.hexdigest()
        try:
            setattr(dataset, _MEMO, (identity, content))
        except (AttributeError, TypeError):  # a frozen or slotted stand-in: just do not memoise
            pass
    return _short(hashlib.sha256(f"{header};{content}".encode()).hexdigest())


def labels_fingerprint(split: Any) -> str:
    """sha256 hex of a split's length and labels (no image is read)."""
    targets = _targets(split)
    return hashlib.sha256(f"{len(targets)};".encode() + ",".join(map(str, targets)).encode()).hexdigest()


def split_fingerprint(split: Any) -> str:
    """The fingerprint of one split (full sha256 hex), by the first method that applies (module docstring)."""
    own = getattr(split, "fingerprint", None)
    if callable(own):
        return "own:" + str(own())
    images, labels = getattr(split, "images", None), getattr(split, "labels", None)
    if isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor):
        return "tensors:" + tensors_fingerprint(images, labels)
    paths = getattr(split, "paths", None)
    if isinstance(paths, Sequence) and not isinstance(paths, (str, bytes)) and len(paths) == len(split):
        return "files:" + files_fingerprint([str(p) for p in paths], _targets(split))
    return "sampled:" + sampled_fingerprint(split)


def tensors_fingerprint(*tensors: torch.Tensor) -> str:
    """sha256 hex of the tensors' dtypes, shapes and bytes (moved to the CPU, made contiguous)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{data.dtype}{tuple(data.shape)};".encode())
        if data.numel():
            digest.update(memoryview(data.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def files_fingerprint(paths: Sequence[str], targets: Sequence[int]) -> str:
    """sha256 hex of ``targets`` and of each file's (path relative to the common folder, size,
    ``st_mtime_ns``, ``st_ctime_ns``, ``st_ino``), in the given order. Reads no file content.

    Raises :class:`ConfigError` naming a file that cannot be ``stat``-ed (deleted since listing).
    """
    digest = hashlib.sha256()
    digest.update(",".join(str(int(t)) for t in targets).encode() + b";")
    base = os.path.commonpath(paths) if len(paths) > 1 else (os.path.dirname(paths[0]) if paths else "")
    for path in paths:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc} (check the files under --data-root)") from None
        rel = os.path.relpath(path, base) if base else path
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\n".encode())
    return digest.hexdigest()


def sampled_fingerprint(split: Any, samples: int = SAMPLE_IMAGES) -> str:
    """sha256 hex of every label and of ``samples`` decoded images at evenly spaced positions (weaker)."""
    digest = hashlib.sha256()
    n = len(split)
    targets = _targets(split)
    digest.update(f"{n};".encode() + ",".join(str(int(t)) for t in targets).encode() + b";")
    if n <= samples:
        positions = list(range(n))
    else:  # evenly spaced, first and last included
        positions = sorted({round(i * (n - 1) / (samples - 1)) for i in range(samples)})
    for index in positions:
        image, label = split[index]
        digest.update(f"{index}:{int(label)};".encode())
        digest.update(tensors_fingerprint(torch.as_tensor(image)).encode())
    return digest.hexdigest()


def _targets(split: Any) -> list[int]:
    targets = getattr(split, "targets", None)
    if targets is None:
        return [int(split[i][1]) for i in range(len(split))]
    return [int(t) for t in targets]


def _splits(dataset: Any) -> list[tuple[str, Any]]:
    found = []
    for name in SPLITS:
        try:
            split = dataset.split(name)
        except (ValueError, KeyError, AttributeError):
            continue
        if split is not None:
            found.append((name, split))
    return found


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def _short(hexdigest: str) -> str:
    return hexdigest[:16]


# ----------------------------------------------------------------------------------------------
# Signature
# ----------------------------------------------------------------------------------------------


def data_signature(dataset: Any) -> dict[str, Any]:
    """What a saved artefact records about the data it was made from (JSON-able)::

        {"dataset": name, "class_names": [str, ...], "image_shape": [C, H, W],
         "mean": [float] * C, "std": [float] * C, "fingerprint": dataset_fingerprint(dataset),
         "whitening": the dataset's whitening record (ZCA: {"method": "zca", "eps": 0.1, ...}), only when it has one}

    A set made from whitened images holds whitened pixels: whoever draws or exports it must undo the
    whitening first (:meth:`ddcore.data.ImageDataset.denormalize` of the same dataset).
    """
    signature = {
        "dataset": str(dataset.name),
        "class_names": [str(c) for c in dataset.class_names],
        "image_shape": [int(v) for v in dataset.image_shape],
        "mean": [float(v) for v in dataset.mean],
        "std": [float(v) for v in dataset.std],
        "fingerprint": dataset_fingerprint(dataset),
    }
    whitening = getattr(dataset, "whitening", None)
    if whitening is not None:
        signature["whitening"] = _jsonable(whitening.record())
    return signature


def check_signature(saved: Mapping[str, Any], dataset: Any, *, what: str, fix: str) -> list[int] | None:
    """Check that something saved from the data ``saved`` describes can be used with ``dataset``.

    ``saved`` is a (possibly partial, e.g. from an older file) :func:`data_signature`; keys it lacks
    are not compared. The dataset's name and fingerprint are not compared either (evaluating on
    other or changed data with the same classes and preprocessing is legitimate; caches put the
    fingerprint in their key instead).

    Returns ``None`` when classes, image shape and normalisation agree; a list ``perm`` with
    ``perm[saved_label] = current_label`` when the class names are the same but in another order.
    Raises :class:`ConfigError`, one line naming ``what``, the first difference and ``fix``.
    """
    problem = _shape_or_norm_problem(saved, dataset)
    if problem is None and "class_names" in saved:
        old = [str(c) for c in saved["class_names"]]
        new = [str(c) for c in dataset.class_names]
        if old != new:
            if sorted(old) == sorted(new) and len(set(old)) == len(old):
                position = {name: i for i, name in enumerate(new)}
                return [position[name] for name in old]
            problem = "class names differ: " + _class_difference(old, new)
    if problem is not None:
        raise ConfigError(f"{what} does not fit dataset {dataset.name!r}: {problem} ({fix})")
    return None


def _shape_or_norm_problem(saved: Mapping[str, Any], dataset: Any) -> str | None:
    if "image_shape" in saved:
        old = [int(v) for v in saved["image_shape"]]
        new = [int(v) for v in dataset.image_shape]
        if old[:1] != new[:1]:
            return f"saved with {old[0]} channel(s), the data has {new[0]}"
        if old != new:
            return f"saved at {old[1]}x{old[2]} px, the data is {new[1]}x{new[2]} px"
    for key in ("mean", "std"):
        if key in saved:
            old_v = [float(v) for v in saved[key]]
            new_v = [float(v) for v in getattr(dataset, key)]
            if len(old_v) != len(new_v) or not all(
                math.isclose(a, b, rel_tol=NORM_RTOL, abs_tol=1e-7) for a, b in zip(old_v, new_v)
            ):
                return f"normalisation {key} {_floats(old_v)} saved, the data uses {_floats(new_v)}"
    return None


def _class_difference(old: list[str], new: list[str]) -> str:
    gone = [c for c in old if c not in set(new)]
    added = [c for c in new if c not in set(old)]
    parts = []
    if gone:
        parts.append(f"saved classes missing from the data: {_names(gone)}")
    if added:
        parts.append(f"data classes not in the saved set: {_names(added)}")
    if not parts:
        parts.append(f"{len(old)} saved vs {len(new)} current (repeated names)")
    return "; ".join(parts)


def _names(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _floats(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def require_same_data(saved: Mapping[str, Any], dataset: Any, *, what: str, fix: str) -> None:
    """Stricter :func:`check_signature` for state that cannot be relabelled (a run being resumed):
    the class order must be the same too, and the content fingerprint, when ``saved`` has one, must
    equal the dataset's. Raises :class:`ConfigError` (one line: ``what``, the difference, ``fix``)."""
    perm = check_signature(saved, dataset, what=what, fix=fix)
    if perm is not None:
        raise ConfigError(
            f"{what} does not fit dataset {dataset.name!r}: the same classes in another order "
            f"(saved: {_names([str(c) for c in saved['class_names']])}) ({fix})"
        )
    old = saved.get("fingerprint")
    if old and old != dataset_fingerprint(dataset):
        raise ConfigError(
            f"{what} does not fit dataset {dataset.name!r}: its content changed since (fingerprint {old}, "
            f"now {dataset_fingerprint(dataset)}: images rewritten, added, removed or moved) ({fix})"
        )


def data_check_record(saved: Mapping[str, Any], dataset: Any, perm: Sequence[int] | None) -> dict[str, Any]:
    """What a reuse of saved state found, for the manifest (``ctx.record("data_check", ...)``)::

        {"saved_dataset", "saved_fingerprint", "fingerprint", "same_content" (None: not recorded),
         "class_remap": {"from", "to", "perm"} or None}
    """
    old = saved.get("fingerprint")
    now = dataset_fingerprint(dataset)
    remap = None
    if perm is not None:
        remap = {"from": [str(c) for c in saved["class_names"]], "to": [str(c) for c in dataset.class_names],
                 "perm": [int(p) for p in perm]}  # fmt: skip
    return {
        "saved_dataset": saved.get("dataset"),
        "saved_fingerprint": old,
        "fingerprint": now,
        "same_content": None if not old else old == now,
        "class_remap": remap,
    }
