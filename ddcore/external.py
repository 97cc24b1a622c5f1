"""Distilled sets made elsewhere (MTT, DATM, DD-Ranking, RDED, SRe2L, ...), read and checked for ``dd eval --distilled``.

What :func:`read_external` accepts at ``PATH``:

* **a folder of tensor files** (MTT/DATM/DD-Ranking, and ``dd export --format pt``): images from the first of
  :data:`TENSOR_FILES` ``["images"]`` that exists (``images.pt``, ``images_best.pt``), labels likewise
  (``labels.pt``, ``labels_best.pt``), and an optional learned lr (``lr.pt``, ``lr_best.pt``,
  ``synthetic_lr_best.pt``, ``syn_lr.pt``). A ``meta.json`` written by ``dd export`` is read for the class
  names and the normalisation of the tensors.
* **a ddcore run directory** (its ``distilled.pt``).
* **one ``.pt`` file** holding a dict with ``images`` and ``labels`` (aliases ``image_syn``/``label_syn``,
  ``image``/``label``, ``x``/``y``) and optionally ``lr`` (``syn_lr``); a tuple/list ``(images, labels[, lr])``; a DC/DSA-style
  ``{"data": [[images, labels]]}`` with one experiment; or a ddcore ``distilled.pt``.
* **an ImageFolder of images** (RDED/SRe2L style): ``PATH/<class>/<image>``, class folders named by class
  name (matched to the dataset's names, in any order) or by index (``00000``, ``00001``, ...: the dataset's
  label order); files as :mod:`ddcore.data.imagefolder` lists them (same suffixes, hidden names skipped),
  decoded by :func:`ddcore.data.decode.decode_image`. Labels are hard (the folder), except in a ``dd export
  --format imagefolder`` folder of a soft-labelled set, whose ``labels.pt`` logits are read with its
  ``meta.json`` (which also maps the folders to the class names). A class folder without an image is refused
  (a hard-labelled set needs every class).

Tensor files are read with ``torch.load(weights_only=True)`` (no code in a pickle runs). Images are
``[N, C, H, W]``; labels hard ``[N]`` (integers, any dtype) or soft ``[N, K]`` logits (rows that are probabilities,
in [0, 1] summing to 1, are refused: softmax would flatten them).

Normalisation (recorded in the run's manifest as ``records["external"]`` and printed by ``dd eval``):
tensors are taken as already normalised with the dataset's mean/std (what MTT/DATM save), unless ``meta.json``
names another normalisation (then converted), or ``input_range`` says they are pixel values: ``"01"`` (in
[0, 1]) or ``"255"`` (in [0, 255]); pixel values are normalised with the dataset's mean/std. Images decoded
from files are pixel values in [0, 1], normalised with the dataset's mean/std.

:func:`to_distilled` checks the set against the dataset before anything is written: class count, channels
and image size must agree (one-line :class:`~ddcore.errors.ConfigError` naming the option to change);
class names, when the set has them, are matched by name (another order is relabelled, other names are refused).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ddcore.errors import ConfigError

#: The file names of a folder of tensors, first found wins.
TENSOR_FILES: dict[str, tuple[str, ...]] = {
    "images": ("images.pt", "images_best.pt"),
    "labels": ("labels.pt", "labels_best.pt"),
    "lr": ("lr.pt", "lr_best.pt", "synthetic_lr_best.pt", "syn_lr.pt"),
}
#: Keys of a single ``.pt`` dict, first found wins.
DICT_KEYS: dict[str, tuple[str, ...]] = {
    "images": ("images", "image_syn", "image", "x"),
    "labels": ("labels", "label_syn", "label", "y"),
    "lr": ("lr", "syn_lr"),
}
#: ``--input-range``: what the values of a tensor set are.
INPUT_RANGES = ("normalized", "01", "255")
PATH_OPTION = "--distilled"
#: Below this many images the "are these pixel values?" hint is not given (too few to judge).
_HINT_MIN_VALUES = 64


@dataclass
class ExternalSet:
    """A set as read from disk, before it meets a dataset.

    Attributes:
        images: ``[N, C, H, W]`` float32, in the value range ``pixel_range`` says.
        labels: ``[N]`` int64 or ``[N, K]`` float32 logits.
        lr: the learned lr when the source has one.
        class_names: the class names in label order when the source names them, else ``None``.
        class_indices: ImageFolder with index folders: the label of each folder (already applied).
        mean / std: the normalisation of ``images`` when the source records it (``meta.json``, ``distilled.pt``).
        pixel_range: ``"normalized"``, ``"01"`` or ``"255"``.
        rgb_from_grey: the source says its 3 channels repeat one grey channel (``dd export --rgb``).
        source: what was read (layout, files), for the manifest.
    """

    images: torch.Tensor
    labels: torch.Tensor
    lr: float | None = None
    class_names: list[str] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    pixel_range: str = "normalized"
    rgb_from_grey: bool = False
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def soft(self) -> bool:
        return self.labels.ndim == 2

    def num_classes(self) -> int:
        """The classes the set is for: its names (or class folders), its soft labels' width, else the largest
        hard label + 1."""
        if self.source.get("folders") is not None:
            return len(self.source["folders"])
        if self.class_names is not None:
            return len(self.class_names)
        if self.soft:
            return int(self.labels.shape[1])
        return int(self.labels.max()) + 1 if self.labels.numel() else 0

    def per_class(self) -> list[int]:
        """Images per class (of the hard labels, argmax for soft ones), ``num_classes()`` entries."""
        hard = self.labels.argmax(dim=1) if self.soft else self.labels
        return torch.bincount(hard, minlength=self.num_classes()).tolist()


def _error(path: Path, problem: str, fix: str = "") -> ConfigError:
    return ConfigError(f"{PATH_OPTION} {path}: {problem}" + (f"; {fix}" if fix else ""))


def read_external(path: str | os.PathLike, input_range: str | None = None) -> ExternalSet:
    """Read the set at ``path`` (module docstring for the layouts); no dataset is needed yet.

    ``input_range`` (``None``: the source's own, else ``"normalized"``) applies to tensor sets only; a
    folder of images is always pixel values. Raises :class:`ConfigError`, one line naming ``--distilled``
    and what to change: no such path, an unknown layout, an unreadable file, shapes that do not fit.
    """
    path = Path(path).expanduser()
    if input_range is not None and input_range not in INPUT_RANGES:
        raise ConfigError(f"--input-range {input_range!r}: choose one of {', '.join(INPUT_RANGES)}")
    if not path.exists():
        raise _error(path, "no such file or folder")
    if path.is_file():
        found = _read_tensor_file(path)
    elif any((path / name).is_file() for name in TENSOR_FILES["images"]):
        found = _read_tensor_folder(path)
    elif (path / "distilled.pt").is_file():  # a ddcore run directory
        found = _read_tensor_file(path / "distilled.pt")
    else:
        found = _read_image_folder(path)
        if input_range not in (None, "01"):
            raise ConfigError(f"--input-range {input_range} is for tensor sets; images read from files are pixel values in [0, 1] (drop it)")
    if input_range is not None and found.source["layout"] != "imagefolder":
        if input_range != "normalized" and found.mean is not None:
            raise _error(path, f"its {found.source.get('meta') or 'file'} records the normalisation of the tensors, "
                               f"so --input-range {input_range} contradicts it", "drop --input-range")  # fmt: skip
        found.pixel_range = input_range
    if input_range == "normalized" and isinstance(found.images, torch.Tensor) and found.images.dtype == torch.uint8:
        raise _error(path, "--input-range normalized, but the images are uint8, which can only be pixel values 0..255",
                     "drop --input-range (uint8 is read as 255) or pass --input-range 255")  # fmt: skip
    _check_shapes(path, found)
    return found


def _load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt, not a torch file, or a pickle of objects
        raise _error(path, f"not a readable tensor file ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})",
                     "save plain tensors with torch.save (objects other than tensors, lists and dicts are not loaded)") from None  # fmt: skip


def _tensor(path: Path, value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.nn.Parameter) or isinstance(value, torch.Tensor):
        return value.detach().cpu()
    try:
        return torch.as_tensor(value).cpu()
    except (TypeError, ValueError, RuntimeError):
        raise _error(path, f"{what} is a {type(value).__name__}, not a tensor") from None


def _lr_value(path: Path, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):  # a plain number: no float32 rounding
        value = torch.tensor(float(value), dtype=torch.float64)
    tensor = _tensor(path, value, "the learned lr")
    if tensor.numel() != 1:
        raise _error(path, f"the learned lr holds {tensor.numel()} values, expected one")
    lr = float(tensor.reshape(-1)[0])
    if not math.isfinite(lr) or lr <= 0:
        raise _error(path, f"the learned lr is {lr}, not a positive number", "remove the lr file, or fix it")
    return lr


def _read_tensor_folder(folder: Path) -> ExternalSet:
    def first(kind: str) -> Path | None:
        return next((folder / name for name in TENSOR_FILES[kind] if (folder / name).is_file()), None)

    images_path, labels_path, lr_path = first("images"), first("labels"), first("lr")
    if labels_path is None:
        raise _error(folder, f"{images_path.name} has no labels file next to it", f"add one of {', '.join(TENSOR_FILES['labels'])}")
    found = ExternalSet(images=_tensor(images_path, _load(images_path), "the images"),
                        labels=_tensor(labels_path, _load(labels_path), "the labels"),
                        lr=_lr_value(lr_path, _load(lr_path)) if lr_path else None)  # fmt: skip
    found.source = {"layout": "tensor-folder", "path": str(folder),
                    "files": [p.name for p in (images_path, labels_path, lr_path) if p is not None]}  # fmt: skip
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        _apply_export_meta(meta_path, found)
    return found


def _apply_export_meta(meta_path: Path, found: ExternalSet) -> None:
    """Class names and normalisation from a ``dd export`` ``meta.json`` (other JSON files are ignored)."""
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _error(meta_path, f"not readable JSON ({type(exc).__name__})", "fix or remove it") from None
    if not isinstance(meta, dict) or "ddcore_export" not in meta:
        return
    found.source["meta"] = meta_path.name
    if isinstance(meta.get("class_names"), list):
        found.class_names = [str(c) for c in meta["class_names"]]
    if isinstance(meta.get("mean"), list) and isinstance(meta.get("std"), list):
        found.mean = tuple(float(v) for v in meta["mean"])
        found.std = tuple(float(v) for v in meta["std"])
    found.rgb_from_grey = bool(meta.get("rgb_from_grey"))
    if meta.get("whitening"):
        found.source["whitening"] = meta["whitening"]


def _read_tensor_file(path: Path) -> ExternalSet:
    data = _load(path)
    source = {"layout": "tensor-file", "path": str(path)}
    if isinstance(data, dict) and data.get("format") == 1 and "class_names" in data and "mean" in data:
        from ddcore.distilled import DistilledSet

        saved = DistilledSet.load(path)  # a ddcore distilled.pt: names, normalisation and lr included
        return ExternalSet(images=saved.images.detach().float(), labels=saved.labels, lr=saved.lr,
                           class_names=list(saved.class_names), mean=tuple(saved.mean), std=tuple(saved.std),
                           source={**source, "layout": "ddcore-distilled",
                                   **({"whitening": saved.data["whitening"]} if (saved.data or {}).get("whitening") else {})})  # fmt: skip
    if isinstance(data, dict) and "data" in data and not any(k in data for k in DICT_KEYS["images"]):
        experiments = data["data"]
        if not isinstance(experiments, (list, tuple)) or not experiments:
            raise _error(path, "its 'data' entry is not a list of [images, labels] experiments")
        if len(experiments) > 1:
            raise _error(path, f"its 'data' holds {len(experiments)} experiments (DC/DSA style)",
                         "save the one to evaluate as {'images': ..., 'labels': ...}")  # fmt: skip
        data = experiments[0]
        source["layout"] = "tensor-file (DC/DSA 'data')"
    if isinstance(data, dict):
        def get(kind: str) -> Any:
            return next((data[k] for k in DICT_KEYS[kind] if k in data), None)

        images, labels, lr = get("images"), get("labels"), get("lr")
        if images is None or labels is None:
            raise _error(path, f"a dict without {'images' if images is None else 'labels'} (keys: {', '.join(map(str, list(data)[:8]))})",
                         f"name them {DICT_KEYS['images'][0]!r} and {DICT_KEYS['labels'][0]!r}")  # fmt: skip
    elif isinstance(data, (list, tuple)) and len(data) in (2, 3):
        images, labels, lr = data[0], data[1], data[2] if len(data) == 3 else None
    else:
        raise _error(path, f"holds a {type(data).__name__}; expected a dict with 'images' and 'labels', or a tuple (images, labels[, lr])")
    return ExternalSet(images=_tensor(path, images, "the images"), labels=_tensor(path, labels, "the labels"),
                       lr=_lr_value(path, lr), source=source)  # fmt: skip


def _read_image_folder(folder: Path) -> ExternalSet:
    from ddcore.data.decode import GREY_MODES, decode_image
    from ddcore.data.imagefolder import IMAGE_SUFFIXES

    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise _error(folder, "neither tensor files (images.pt + labels.pt) nor class folders of images",
                     "pass a .pt file, a folder with images.pt and labels.pt, or a folder of <class>/<image> folders")  # fmt: skip
    files: list[tuple[int, Path]] = []
    for index, name in enumerate(classes):
        images = sorted(p for p in (folder / name).iterdir()
                        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)  # fmt: skip
        files += [(index, p) for p in images]
    if not files:
        raise _error(folder, f"its {len(classes)} class folders hold no images ({', '.join(IMAGE_SUFFIXES[:5])}, ...)")
    from PIL import Image

    modes, sizes = set(), set()
    for _, file in files:
        try:
            with Image.open(file) as image:
                modes.add(1 if image.mode in GREY_MODES else 3)
                sizes.add(image.size)
        except OSError as exc:
            raise _error(file, f"not a readable image ({exc})", "fix or remove the file") from None
    if len(modes) > 1:
        raise _error(folder, "holds both grey and colour images", "convert them all to one kind")
    if len(sizes) > 1:
        shown = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)[:3])
        raise _error(folder, f"its images differ in size ({shown})", "resize them all to the dataset's size")
    channels = modes.pop()
    images = torch.stack([decode_image(str(file), channels) for _, file in files])
    labels = torch.tensor([label for label, _ in files], dtype=torch.long)
    by_index = all(len(name) == 5 and name.isdigit() for name in classes)
    found = ExternalSet(images=images, labels=labels, pixel_range="01")
    found.source = {"layout": "imagefolder", "path": str(folder), "class_folders": "index" if by_index else "names",
                    "folders": classes, "files": len(files)}  # fmt: skip
    if _apply_imagefolder_meta(folder, found, classes, [file for _, file in files]):
        return found
    if by_index:  # 00000, 00001, ...: the folder is the label; gaps are refused by the class-count check
        folder_labels = [int(name) for name in classes]
        found.labels = torch.tensor(folder_labels, dtype=torch.long)[labels]
        found.source["index_labels"] = folder_labels
    else:
        found.class_names = classes
    return found


def _apply_imagefolder_meta(folder: Path, found: ExternalSet, classes: list[str], files: list[Path]) -> bool:
    """A ``dd export --format imagefolder`` folder: labels from its ``meta.json`` (folder -> class, in the
    export's class order) and, for a soft-labelled set, the logits of its ``labels.pt`` (one row per PNG, in
    ``meta["labels_rows"]`` order, else the export's order: class by class, files by name), and the learned lr
    (``meta["lr"]``), and whether its PNGs repeat a grey channel (``--rgb``). Returns whether
    ``folder`` was such an export (other folders, and other ``meta.json`` files, are left to the caller)."""
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _error(meta_path, f"not readable JSON ({type(exc).__name__})", "fix or remove it") from None
    if not (isinstance(meta, dict) and "ddcore_export" in meta and meta.get("format") == "imagefolder"):
        return False
    folders, names = meta.get("folders"), meta.get("class_names")
    if not (isinstance(folders, list) and isinstance(names, list) and len(folders) == len(names)):
        raise _error(meta_path, "a dd export meta.json without matching 'folders' and 'class_names'", "fix or remove it")
    stray = [name for name in classes if name not in folders]
    if stray:
        raise _error(folder, f"class folder {stray[0]!r} is not one of the export's ({meta_path.name} lists "
                             f"{', '.join(map(str, folders[:5]))}{', ...' if len(folders) > 5 else ''})",
                     "remove it, or remove meta.json to read the folders as they are")  # fmt: skip
    index = {str(name): k for k, name in enumerate(folders)}
    labels = torch.tensor([index[file.parent.name] for file in files], dtype=torch.long)
    found.labels = labels
    found.class_names = [str(c) for c in names]
    found.source.update({"meta": meta_path.name, "folders": [str(f) for f in folders], "class_folders": meta.get("class_folders")})
    found.lr = _lr_value(meta_path, meta.get("lr"))  # the learned lr: an imagefolder export keeps it in meta.json
    found.rgb_from_grey = bool(meta.get("rgb_from_grey"))  # dd export --rgb: three copies of one grey channel
    if meta.get("labels") == "soft":
        labels_path = folder / "labels.pt"
        if not labels_path.is_file():
            raise _error(folder, f"{meta_path.name} says the set has soft labels, but labels.pt is missing",
                         "restore labels.pt from the export")  # fmt: skip
        logits = _tensor(labels_path, _load(labels_path), "the labels")
        relative = [f"{file.parent.name}/{file.name}" for file in files]
        rows = meta.get("labels_rows")
        if not isinstance(rows, list):  # the export's own order: class by class, files by name
            rows = sorted(relative, key=lambda r: (index[r.split("/")[0]], r))
        where = {str(r): k for k, r in enumerate(rows)}
        missing = [r for r in relative if r not in where]
        if missing or logits.ndim != 2 or logits.shape[0] != len(rows):
            problem = (f"image {missing[0]} has no row in labels.pt" if missing
                       else f"labels.pt is {tuple(logits.shape)}, expected [{len(rows)}, K] (one row per exported PNG)")
            raise _error(folder, problem, "restore the export's PNGs and labels.pt together")
        found.labels = logits[torch.tensor([where[r] for r in relative], dtype=torch.long)]
        found.source["labels_file"] = labels_path.name
    return True


def _check_shapes(path: Path, found: ExternalSet) -> None:
    images, labels = found.images, found.labels
    if images.ndim == 3:
        raise _error(path, f"images are {tuple(images.shape)}, expected [N, C, H, W] (a grey set needs its channel axis)")
    if images.ndim != 4:
        raise _error(path, f"images are {tuple(images.shape)}, expected [N, C, H, W]")
    if not images.is_floating_point():
        if found.pixel_range == "normalized" and images.dtype == torch.uint8:
            found.pixel_range = "255"  # uint8 tensors can only be pixel values
        images = images.float()
    found.images = images.float()
    if images.shape[0] == 0:
        raise _error(path, "holds no images")
    if not torch.isfinite(found.images).all():
        raise _error(path, "images hold NaN or infinite values")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim not in (1, 2) or labels.shape[0] != images.shape[0]:
        raise _error(path, f"{images.shape[0]} images but labels of shape {tuple(labels.shape)}; expected [N] or [N, K]")
    if labels.ndim == 1:
        if labels.is_floating_point() and not torch.equal(labels, labels.round()):
            raise _error(path, "labels [N] are not whole numbers; hard labels are class ids (soft labels are [N, K])")
        labels = labels.long()
        if labels.numel() and int(labels.min()) < 0:
            raise _error(path, f"label {int(labels.min())} is negative; labels are class ids from 0")
    else:
        labels = labels.float()
        if not torch.isfinite(labels).all():
            raise _error(path, "soft labels hold NaN or infinite values")
        if labels.numel() and float(labels.min()) >= 0.0 and torch.allclose(labels.sum(dim=1), torch.ones(len(labels)), atol=1e-4):
            # softmax of probabilities is a much flatter target than the probabilities: never train on that silently
            raise _error(path, "soft labels [N, K] are probabilities (each row in [0, 1], summing to 1), but they are "
                               "taken as logits (softmax is applied)", "save their log, torch.log(p.clamp_min(1e-8))")  # fmt: skip
    found.labels = labels


# ----------------------------------------------------------------------------------------------
# Against a dataset
# ----------------------------------------------------------------------------------------------


def to_distilled(found: ExternalSet, dataset: Any, *, labels_mode: str = "auto", image_size_set: bool = False,
                 baselines: Sequence[str] = ()):
    """``found`` as a :class:`~ddcore.distilled.DistilledSet` for ``dataset`` (normalised with its mean/std,
    labels in its order), and the record of what was assumed (for ``records["external"]``).

    Raises :class:`ConfigError` (one line, before anything is written) when the class count, channels or
    image size differ from the dataset's, when class names do not match, when ``labels_mode`` is
    ``"soft"`` for a set with hard labels, or when ``baselines`` has ``"random"`` and a class of the set has
    more images than the training split (the baseline draws as many real ones).
    """
    from ddcore.data.base import denormalize
    from ddcore.datasig import check_signature, tensors_fingerprint
    from ddcore.distilled import DistilledSet

    path = Path(found.source.get("path", "?"))
    where = f"{PATH_OPTION} {path}"
    k = found.num_classes()
    index_labels = found.source.get("index_labels")
    if index_labels is not None and max(index_labels) >= dataset.num_classes:
        raise ConfigError(f"{where}: class folder {max(index_labels):05d} is label {max(index_labels)}, but dataset "
                          f"{dataset.name!r} has {dataset.num_classes} classes ({0:05d}..{dataset.num_classes - 1:05d}); "
                          "rename the folders, or pass the --dataset the set was made for")  # fmt: skip
    if k != dataset.num_classes:
        if found.source.get("layout") == "imagefolder":
            counted = f"{k} classes (its class folders)"
        elif found.class_names is None and not found.soft:
            counted = f"{k} class{'es' if k != 1 else ''} (hard labels up to {k - 1})"
        else:
            counted = f"{k} classes"
        raise ConfigError(f"{where} has {counted}, dataset {dataset.name!r} has {dataset.num_classes}; "
                          "pass the --dataset (and --data-root) the set was made for")  # fmt: skip
    if not found.soft:
        empty = next((c for c, n in enumerate(found.per_class()) if n == 0), None)
        if empty is not None:
            folders = found.source.get("folders") if found.source.get("layout") == "imagefolder" else None
            what = f"class folder {folders[empty]!r}" if folders else f"class {empty}"
            raise ConfigError(f"{where}: {what} has no image; a hard-labelled set needs every class of dataset "
                              f"{dataset.name!r} (add its images, or pass the --dataset the set was made for)")  # fmt: skip
    channels, height, width = (int(v) for v in dataset.image_shape)
    c, h, w = (int(v) for v in found.images.shape[1:])
    from_grey = found.rgb_from_grey and c == 3 and channels == 1
    if c != channels and not from_grey:
        raise ConfigError(f"{where} has {c}-channel images, dataset {dataset.name!r} has {channels}-channel images; "
                          "pass the --dataset the set was made for (a grey set is not turned into colour, nor back)")  # fmt: skip
    if (h, w) != (height, width):
        fix = "pass --image-size to match" if not image_size_set else "change --image-size"
        raise ConfigError(f"{where} holds {h}x{w} px images, dataset {dataset.name!r} is {height}x{width} px; {fix} "
                          "(sets are never resized)")  # fmt: skip
    _check_whitening(found, dataset, where)
    if labels_mode == "soft" and not found.soft:
        raise ConfigError(f"--labels soft needs soft labels [N, K], but {where} has hard labels; pass --labels auto or hard")
    if found.class_names is not None and len(set(found.class_names)) != len(found.class_names):
        raise ConfigError(f"{where} names a class twice; fix its class names")

    ds_mean = tuple(float(v) for v in dataset.mean)
    ds_std = tuple(float(v) for v in dataset.std)
    images = found.images
    if found.pixel_range == "normalized":
        src_mean, src_std = (found.mean, found.std) if found.mean is not None else (ds_mean * (c // channels), ds_std * (c // channels))
        same = len(src_mean) == channels and all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
                                                 for a, b in zip((*src_mean, *src_std), (*ds_mean, *ds_std)))  # fmt: skip
        if not same:  # convert: to pixel values with the source's constants, then to the dataset's
            images = denormalize(images, src_mean, src_std)
        assumed = ("normalised with the dataset's mean/std (taken as saved)" if found.mean is None
                   else f"normalised with mean {list(src_mean)}, std {list(src_std)} ({found.source.get('meta', 'the file')})")  # fmt: skip
    else:
        same = False
        if found.pixel_range == "255":
            images = images / 255.0
        assumed = {"01": "pixel values in [0, 1]", "255": "pixel values in [0, 255]"}[found.pixel_range]
        if found.source.get("layout") == "imagefolder":
            assumed = "image files decoded to pixel values in [0, 1]"
    if not same:
        if from_grey:
            images = images[:, :1]
        from ddcore.export import renormalised

        images = renormalised(images, ds_mean, ds_std)
    whitening = getattr(dataset, "whitening", None)
    if whitening is not None:  # a ZCA dataset: its images are whitened after mean/std (ddcore.data.zca)
        if not same:  # pixels (or another normalisation) now in the dataset's mean/std: whiten them the same way
            images = whitening.whiten(images.float())
            assumed += "; whitened with the dataset's ZCA"
        elif not found.source.get("whitening"):  # MTT/DATM save ZCA sets as whitened tensors
            assumed += "; already ZCA-whitened as the dataset (taken as saved)"
    note = _range_hint(found, same)
    class_names = found.class_names if found.class_names is not None else [str(n) for n in dataset.class_names]
    distilled = DistilledSet(images=images.contiguous(), labels=found.labels, class_names=class_names, mean=ds_mean,
                             std=ds_std, lr=found.lr, meta={"selected_by": "external", "initialized_by": "external",
                                                            "external": dict(found.source)})  # fmt: skip
    try:
        distilled.validate()
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    perm = check_signature(distilled.signature(), dataset, what=where,
                           fix="pass the --dataset (and --data-root) the set was made for")  # fmt: skip
    if perm is not None:
        distilled = distilled.remap(perm, dataset.class_names)
    if "random" in baselines:
        need = torch.bincount(distilled.hard_labels(), minlength=dataset.num_classes).tolist()
        have = dataset.class_counts("train")
        short = next((c for c in range(dataset.num_classes) if need[c] > have[c]), None)
        if short is not None:
            raise ConfigError(f"--baseline random draws {need[short]} real images of class {dataset.class_names[short]!r} "
                              f"(as many as {where} has), but the training split has {have[short]}; drop --baseline random")  # fmt: skip
    record = {
        "path": str(path),
        **{k_: v for k_, v in found.source.items() if k_ != "path"},
        "input": found.pixel_range,
        "assumed": assumed,
        "converted": not same,
        "normalised_with": {"mean": list(ds_mean), "std": list(ds_std)},
        "class_order": ("by name" + (" (relabelled to the dataset's order)" if perm is not None else "") if found.class_names is not None
                        else "by index (the dataset's label order)"),  # fmt: skip
        "class_remap": [int(p) for p in perm] if perm is not None else None,
        "labels": "soft" if found.soft else "hard",
        "lr": found.lr,
        "images": int(images.shape[0]),
        "content_sha256": tensors_fingerprint(found.images, found.labels),  # of the set as read, before any change
        "per_class": found.per_class(),
        "note": note,
    }
    return distilled, record


def _check_whitening(found: ExternalSet, dataset: Any, where: str) -> None:
    """A set a ddcore run made from ZCA-whitened data (its ``meta.json`` / ``distilled.pt`` say so) holds whitened
    pixels: it is evaluated only on data whitened the same way (and such data only with such a set, when known)."""
    saved = found.source.get("whitening")
    whitening = getattr(dataset, "whitening", None)
    current = whitening.record() if whitening is not None and hasattr(whitening, "record") else None
    if saved and current is None:
        raise ConfigError(f"{where} holds ZCA-whitened images ({json.dumps(saved, default=str)[:80]}), dataset "
                          f"{dataset.name!r} is not whitened; load it with the same ZCA (config key zca)")  # fmt: skip
    if saved and json.dumps(saved, sort_keys=True, default=str) != json.dumps(current, sort_keys=True, default=str):
        raise ConfigError(f"{where} was whitened with another ZCA than dataset {dataset.name!r}'s; load the data "
                          "with the run's ZCA options (config key zca)")  # fmt: skip


def _range_hint(found: ExternalSet, unchanged: bool) -> str | None:
    """A hint when tensors taken as normalised look like pixel values (all in [0, 1], or whole numbers up to 255)."""
    if found.pixel_range != "normalized" or found.images.numel() < _HINT_MIN_VALUES:
        return None
    low, high = float(found.images.min()), float(found.images.max())
    if low >= 0.0 and high <= 1.0:
        return "every value lies in [0, 1]: if these are pixel values, pass --input-range 01"
    if low >= 0.0 and high > 2.0 and torch.equal(found.images, found.images.round()):
        return "the values are whole numbers up to 255: if these are pixel values, pass --input-range 255"
    return None


def ipc_of(found: ExternalSet) -> int:
    """The set's images per class (the largest class), for the run's ``ipc``."""
    return max(1, max(found.per_class(), default=1))


def evaluate_external(
    path: str | os.PathLike,
    config: Mapping[str, Any],
    plugins: Sequence[str | object] = (),
    *,
    input_range: str | None = None,
    quiet: bool = True,
):
    """Evaluate the set at ``path`` on ``config["dataset"]`` with the run machinery; returns the
    :class:`~ddcore.runner.RunResult` (a run directory with ``manifest.json``, ``distilled.pt``, ``grid.png``,
    ``metrics.json``, ``run.log``, like any run's; ``dd eval RUN_DIR`` re-evaluates it later).

    The run's ``ipc`` is the set's largest class; ``distill`` is ``none`` (nothing is selected or
    distilled: the set read takes the place of the selection). Every check (the set's layout, the config,
    the dataset, the set against the dataset) happens before anything is written.
    """
    from ddcore.runner import Pipeline

    found = read_external(path, input_range)
    config = dict(config)
    if config.get("distill") not in (None, "none"):
        raise ConfigError("--distill cannot be combined with --distilled: the set given is evaluated as it is")
    config.update({"ipc": ipc_of(found), "distill": "none"})
    if not config.get("name"):  # runs/<stamp>-external-<dataset>-ipc<k>: not mistaken for a ddcore run
        config["name"] = f"external-{str(config.get('dataset', 'digits')).replace('/', '-')}-ipc{config['ipc']}"
    labels_mode = str((config.get("eval") or {}).get("labels", "auto"))

    def given(ctx, dataset):
        distilled, record = to_distilled(found, dataset, labels_mode=labels_mode, image_size_set=bool(config.get("image_size")),
                                         baselines=list((config.get("eval") or {}).get("baseline") or []))  # fmt: skip
        ctx.record("external", record)
        return distilled

    return Pipeline(config, plugins, quiet=quiet, given=given).execute()
