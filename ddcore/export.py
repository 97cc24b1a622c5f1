"""``dd export``: a run's distilled set as plain files other tools read, in one folder written atomically.

Formats (``--format``):

* ``pt``: ``images.pt`` (``[N, C, H, W]`` float32, normalised with the run's dataset mean/std, or with the
  ``mean``/``std`` given), ``labels.pt`` (hard ``[N]`` int64, or soft ``[N, K]`` float32 logits), ``lr.pt`` (a
  0-dim float64 tensor: the learned ``syn_lr``, only when the run has one). Each file holds one plain tensor,
  so ``torch.load(path, weights_only=True)`` reads it, as do MTT/DATM-style scripts and DD-Ranking's tensor
  input (``image_tensor``, ``soft_labels`` / hard labels, ``syn_lr``).
* ``imagefolder``: one PNG per image under ``<class name>/`` (or DD-Ranking's ``<class index:05d>/`` with
  ``class_folders="index"``), named ``<position in its class:05d>.png``, de-normalised with the set's own
  mean/std (:func:`ddcore.data.base.denormalize`), clipped to [0, 1] and rounded to 8 bits; how many pixel
  values were clipped is counted (``meta.json["clipped"]``). Every class gets its folder, also one left
  without an image (so that folder ``k`` is class ``k`` for readers that number the folders they find;
  ``meta.json["empty_folders"]`` lists them). A soft-labelled set's folders hold the argmax class; its
  logits are kept in ``labels.pt``, one row per PNG in the order ``meta.json["labels_rows"]`` lists them
  (class by class in label order, files by name). The learned lr is in ``meta.json["lr"]`` (no ``lr.pt``).
* ``ddranking``: ``pt`` plus ``ddranking.yaml``, a DD-Ranking evaluation config with the protocol nearest to
  the run's (:func:`ddranking_config`); what differs is listed in ``meta.json["ddranking"]["differences"]``.

Always ``meta.json`` (:data:`EXPORT_FORMAT`): the source run and its status, dataset, class names (label order), the mean/std
of the exported tensors, the image shape, the label kind, the learned lr, the evaluation protocol the run
recorded and ddcore's accuracies (the run's ``metrics.json`` and every ``eval-*.json``).

Writing: everything goes to a temporary folder next to ``out``, which is renamed to ``out`` at the end; a
failure leaves no ``out`` behind. ``out`` may not exist or be empty; with ``overwrite`` it may hold an
earlier export (its ``meta.json`` says so), which is replaced; any other non-empty folder is refused.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from ddcore.errors import ConfigError, DDError

#: ``meta.json["ddcore_export"]``: the version of this folder layout.
EXPORT_FORMAT = 1
META_FILE = "meta.json"
IMAGES_FILE = "images.pt"
LABELS_FILE = "labels.pt"
LR_FILE = "lr.pt"
DDRANKING_FILE = "ddranking.yaml"
FORMATS = ("pt", "imagefolder", "ddranking")
CLASS_FOLDERS = ("names", "index")
#: A class name usable as a folder name on every common file system.
_SAFE_NAME = re.compile(r"^[^/\\:*?\"<>|\x00-\x1f]+$")
#: ddcore dataset name -> DD-Ranking's name for the same data (its built-ins).
DDRANKING_DATASETS = {
    "cifar10": "CIFAR10",
    "cifar100": "CIFAR100",
    "tiny-imagenet": "TinyImageNet",
    "imagenette": "ImageNette",
    "imagewoof": "ImageWoof",
    "mnist": "MNIST",
    "fashion-mnist": "FashionMNIST",
}


@dataclass
class ExportResult:
    """What :func:`export_run` wrote: the folder, its ``meta.json`` content, and the files in it (relative)."""

    out: Path
    meta: dict[str, Any]
    files: list[str]


def index_folder(label: int) -> str:
    """DD-Ranking's class folder name: the label with five digits (``3 -> "00003"``)."""
    return f"{int(label):05d}"


def class_folder_names(class_names: Sequence[str], mode: str) -> list[str]:
    """The folder of each class: its name (``mode="names"``) or :func:`index_folder` (``"index"``).

    Raises :class:`ConfigError` (naming ``--class-folders``) when a name cannot be a folder name
    (``/``, ``\\``, control characters, ``.``/``..``) or two names are the same.
    """
    if mode == "index":
        return [index_folder(i) for i in range(len(class_names))]
    names = [str(c) for c in class_names]
    for name in names:
        if not _SAFE_NAME.match(name) or name in (".", "..") or name != name.strip():
            raise ConfigError(f"class name {name!r} cannot be a folder name; pass --class-folders index (00000, 00001, ...)")
    if len(set(names)) != len(names):
        raise ConfigError("two classes have the same name; pass --class-folders index (00000, 00001, ...)")
    return names


def check_norm(values: Sequence[float] | None, channels: int, option: str, *, positive: bool = False) -> tuple[float, ...] | None:
    """``values`` (one per channel, or one for all) as a tuple of ``channels`` finite floats; ``None`` stays ``None``.

    Raises :class:`ConfigError` naming ``option`` for a wrong count, a non-finite value, or (``positive``)
    a value that is not above 0.
    """
    if values is None:
        return None
    values = [float(v) for v in values]
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise ConfigError(f"{option} needs {channels} value(s), one per channel of the exported images; got {len(values)}")
    if not all(math.isfinite(v) for v in values) or (positive and not all(v > 0 for v in values)):
        raise ConfigError(f"{option} {values}: every value must be finite{' and above 0' if positive else ''}")
    return tuple(values)


def check_export_dir(out: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` that export may not write, without writing anything (one-line :class:`DDError`).

    Allowed: a path that does not exist, an empty folder, or (``overwrite``) a folder holding an earlier
    export (a ``meta.json`` with ``ddcore_export``). Refused: a file, a path under a file, any other non-empty folder.
    """
    if out.exists() and not out.is_dir():
        raise DDError(f"--out {out} is a file, not a folder")
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise DDError(f"--out {out}: {blocking} is a file, not a folder; choose another --out")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise DDError(f"--out {out} is not empty; choose a new or empty --out, or pass --overwrite to replace an earlier export")
    if not holds_export(out):
        raise DDError(f"--out {out} is a non-empty folder that holds no ddcore export (no {META_FILE}); it is never "
                      "replaced, choose a new or empty --out")  # fmt: skip


def holds_export(folder: Path) -> bool:
    """Whether ``folder/meta.json`` is a ddcore export's (a JSON object with ``ddcore_export``)."""
    try:
        data = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and "ddcore_export" in data


def renormalised(images01: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x - mean) / std`` per channel: ``[N, C, H, W]`` in [0, 1] -> normalised ``[N, C, H, W]``."""
    m = torch.as_tensor(mean, dtype=images01.dtype).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=images01.dtype).view(1, -1, 1, 1)
    return (images01 - m) / s


def clip_counts(images01: torch.Tensor) -> dict[str, Any]:
    """How many values of ``images01`` (any shape, pixel values meant to lie in [0, 1]) lie outside it.

    >>> clip_counts(torch.tensor([-0.5, 0.0, 0.5, 1.0, 1.5, 2.0]))
    {'below_0': 1, 'above_1': 2, 'clipped': 3, 'values': 6, 'fraction': 0.5}
    """
    below, above, total = int((images01 < 0).sum()), int((images01 > 1).sum()), int(images01.numel())
    return {"below_0": below, "above_1": above, "clipped": below + above, "values": total,
            "fraction": (below + above) / total if total else 0.0}  # fmt: skip


def write_pngs(folder: Path, images01: torch.Tensor, labels: torch.Tensor, folders: Sequence[str]) -> tuple[list[str], list[int]]:
    """Write each ``images01[i]`` (``[N, C, H, W]``, C 1 or 3, in [0, 1]) as ``folder/<folders[label]>/<j:05d>.png``
    (``j``: its position among its class's images) with Pillow; values outside [0, 1] are clipped.

    Returns ``(paths, order)``: the relative paths in label-then-name order, and ``order[k]`` the index in
    ``images01`` of the ``k``-th of them."""
    from PIL import Image

    pixels = (images01.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    written: list[tuple[int, str]] = []
    counts = [0] * len(folders)
    for name in folders:  # every class, also one without an image: folder k stays class k
        (folder / name).mkdir(exist_ok=True)
    for i, label in enumerate(labels.tolist()):
        name = f"{folders[label]}/{counts[label]:05d}.png"
        counts[label] += 1
        array = pixels[i]
        image = Image.fromarray(array[:, :, 0], mode="L") if array.shape[2] == 1 else Image.fromarray(array, mode="RGB")
        image.save(folder / name, format="PNG")
        written.append((label, name))
    order = sorted(range(len(written)), key=lambda k: (written[k][0], written[k][1]))
    return [written[k][1] for k in order], order


def run_accuracies(run_dir: Path) -> dict[str, Any]:
    """ddcore's accuracies of the run: ``{"metrics": metrics.json's, "reevaluations": [{"file", "metrics",
    "eval"}, ...]}`` (every ``eval-*.json``, oldest first; unreadable files are skipped)."""
    from ddcore import artifacts

    found: dict[str, Any] = {"metrics": None, "reevaluations": []}
    path = run_dir / artifacts.METRICS_FILE
    if path.is_file():
        found["metrics"] = artifacts.read_json(path, "metrics file").get("metrics")
    for file in sorted(run_dir.glob("eval-*.json")):
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if isinstance(data, dict):
            records = data.get("records") or {}
            found["reevaluations"].append({"file": file.name, "metrics": data.get("metrics"), "eval": records.get("eval")})
    return found


def export_run(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    fmt: str = "pt",
    *,
    overwrite: bool = False,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    rgb: bool = False,
    class_folders: str | None = None,
) -> ExportResult:
    """Export the distilled set of ``run_dir`` to the folder ``out`` (module docstring for the formats).

    Args:
        fmt: ``"pt"``, ``"imagefolder"`` or ``"ddranking"``.
        mean / std: re-normalise the exported tensors to these (one value per exported channel, or one for
            all); ``pt``/``ddranking`` only (PNGs hold pixel values). Default: the dataset's.
        rgb: repeat a grey set's channel three times (refused for a set that has 3 channels).
        class_folders: ``"names"`` (default) or ``"index"`` (``00000/``...), ``imagefolder`` only.

    Raises:
        DDError / ConfigError: one line naming the option or file, before anything is written: no run or no
            distilled set in ``run_dir``, a bad option, an ``out`` that may not be written.
    """
    from ddcore import artifacts
    from ddcore.data.base import denormalize
    from ddcore.distilled import DistilledSet
    from ddcore.runner import read_run_manifest, require_distilled

    run_dir, out = Path(run_dir), Path(out)
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    manifest = read_run_manifest(run_dir)
    require_distilled(run_dir, manifest)
    distilled = DistilledSet.load(run_dir / artifacts.DISTILLED_FILE)
    channels = distilled.images.shape[1]
    if rgb and channels != 1:
        raise ConfigError(f"--rgb repeats a grey set's channel, but this set has {channels} channels; drop --rgb")
    out_channels = 3 if rgb else channels
    if fmt == "imagefolder" and (mean is not None or std is not None):
        raise ConfigError("--mean/--std re-normalise tensors; --format imagefolder writes pixel values in [0, 1] (drop them)")
    if class_folders is not None and fmt != "imagefolder":
        raise ConfigError(f"--class-folders is for --format imagefolder, not {fmt}")
    if (mean is None) != (std is None):
        raise ConfigError("give --mean and --std together (the normalisation of the exported tensors)")
    mean = check_norm(mean, out_channels, "--mean")
    std = check_norm(std, out_channels, "--std", positive=True)
    whitening = (distilled.data or {}).get("whitening")
    if whitening and (fmt == "imagefolder" or rgb or mean is not None):
        what = "--format imagefolder" if fmt == "imagefolder" else ("--rgb" if rgb else "--mean/--std")
        raise ConfigError(f"the set of {run_dir} is ZCA-whitened, so its pixels cannot be recovered here for {what}; "
                          "export it with --format pt (the whitened tensors, recorded in meta.json) or run without ZCA")  # fmt: skip
    folders = class_folder_names(distilled.class_names, class_folders or "names") if fmt == "imagefolder" else None
    check_export_dir(out, overwrite)

    images01 = denormalize(distilled.images.detach().float().cpu(), distilled.mean, distilled.std)
    set_mean, set_std = tuple(float(v) for v in distilled.mean), tuple(float(v) for v in distilled.std)
    if rgb:
        images01 = images01.repeat(1, 3, 1, 1)
        set_mean, set_std = set_mean * 3, set_std * 3
    out_mean, out_std = (mean, std) if mean is not None else (set_mean, set_std)
    labels = distilled.labels.detach().cpu()
    meta: dict[str, Any] = {
        "ddcore_export": EXPORT_FORMAT,
        "format": fmt,
        "source_run": str(run_dir.resolve()),
        "dataset": (manifest.get("config") or {}).get("dataset"),
        "data": distilled.data,
        "class_names": [str(c) for c in distilled.class_names],
        "num_classes": distilled.num_classes,
        "num_images": int(distilled.images.shape[0]),
        "image_shape": [out_channels, *map(int, distilled.images.shape[2:])],
        "labels": "soft" if distilled.soft else "hard",
        "label_note": "soft labels are logits [N, K] (softmax gives the class probabilities)" if distilled.soft else "class ids [N]",
        "lr": distilled.lr,
        "rgb_from_grey": bool(rgb),
        "whitening": whitening,
        "dataset_mean": [float(v) for v in distilled.mean],
        "dataset_std": [float(v) for v in distilled.std],
        "seed": manifest.get("seed"),
        "run_status": manifest.get("status"),  # a run still evaluating (or failed there) has a set but no accuracies yet
        "distill": (manifest.get("config") or {}).get("distill"),
        "eval_protocol": {
            "resolved": (manifest.get("records") or {}).get("eval"),
            "model": (manifest.get("records") or {}).get("model"),
            "config": (manifest.get("config") or {}).get("eval"),
        },
        "accuracies": run_accuracies(run_dir),
    }
    if fmt == "imagefolder":
        meta.update({"pixels": "PNG, 8 bits per value, [0, 1] after de-normalising with dataset_mean/dataset_std",
                     "class_folders": class_folders or "names", "folders": folders,
                     "clipped": clip_counts(images01)})  # fmt: skip
    else:
        meta.update({"mean": list(out_mean), "std": list(out_std),
                     "pixels": "float32 tensors normalised with mean/std: x = (pixel in [0, 1] - mean) / std"})  # fmt: skip
    if fmt == "ddranking":
        config, differences = ddranking_config(meta, manifest)
        meta["ddranking"] = {"config": DDRANKING_FILE, "differences": differences}

    def write(folder: Path) -> list[str]:
        files: list[str] = []
        if fmt == "imagefolder":
            names, order = write_pngs(folder, images01, distilled.hard_labels().cpu(), folders)
            files += names
            meta["empty_folders"] = [name for name in folders if not any(n.startswith(f"{name}/") for n in names)]
            if distilled.soft:
                torch.save(labels[order].float().contiguous(), folder / LABELS_FILE)
                files.append(LABELS_FILE)
                meta["labels_file"] = f"{LABELS_FILE}: the soft labels (logits), one row per PNG in the order of labels_rows"
                meta["labels_rows"] = names
        else:
            exported = distilled.images.detach().float().cpu()
            if rgb or mean is not None:  # else the saved tensors, bit for bit
                exported = renormalised(images01, out_mean, out_std)
            torch.save(exported.contiguous(), folder / IMAGES_FILE)
            torch.save(labels.float().contiguous() if distilled.soft else labels.long().contiguous(), folder / LABELS_FILE)
            files += [IMAGES_FILE, LABELS_FILE]
            if distilled.lr is not None:
                torch.save(torch.tensor(float(distilled.lr), dtype=torch.float64), folder / LR_FILE)
                files.append(LR_FILE)
        if fmt == "ddranking":
            (folder / DDRANKING_FILE).write_text(to_yaml(config, header=_ddranking_header(meta)), encoding="utf-8")
            files.append(DDRANKING_FILE)
        meta["files"] = sorted(files)
        _write_meta(folder / META_FILE, meta)
        return [*sorted(files), META_FILE]

    files = write_folder_atomically(out, write)
    return ExportResult(out, meta, files)


def _write_meta(path: Path, meta: dict[str, Any]) -> None:
    from ddcore.atomic import write_json

    write_json(path, meta)


def write_folder_atomically(out: Path, write) -> Any:
    """Call ``write(tmp)`` on a new temporary folder next to ``out``, then rename it to ``out``.

    An existing empty ``out``, or one that :func:`check_export_dir` allowed to be replaced, is swapped
    out and deleted only after the new folder is in place. On any error the temporary folder is removed
    and ``out`` is as it was. Returns what ``write`` returned.
    """
    from ddcore.storage import storage_error

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise (storage_error(exc, out) or exc) from exc
    old: Path | None = None
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        result = write(tmp)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / "previous")
        os.replace(tmp, out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old / "previous").exists() and not out.exists():
            os.replace(old / "previous", out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        failure = storage_error(exc, out) if isinstance(exc, OSError) else None
        if failure is not None:
            raise failure from exc
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return result


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


# ----------------------------------------------------------------------------------------------
# DD-Ranking's evaluation config
# ----------------------------------------------------------------------------------------------


def ddranking_config(meta: dict[str, Any], manifest: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A DD-Ranking config (its YAML keys) with the evaluation protocol nearest to the run's, and the list of
    what still differs, in words.

    Reads the resolved ``[eval]`` the run recorded (``records["eval"]``), else its ``[eval]`` config. The
    mapping: ConvNet depth ``d`` -> ``ConvNet-d`` (``-BN`` with BatchNorm), ``resnet18`` -> ``ResNet-18-BN``;
    optimiser, weight decay, momentum, epochs, batch size, lr (``eval.lr``; the learned lr stays in ``lr.pt``)
    and repeats as they are; ``schedule`` step ->
    ``step`` with ``step_size`` half the epochs (ddcore multiplies the lr by 0.1 there), cosine -> ``cosine``;
    augmentation ``dsa`` -> ``dsa`` (DD-Ranking's default parameters), other augmentations -> ``none``.
    """
    from ddcore.presets import EVAL_PRESETS, GENERAL_EVAL

    protocol = meta["eval_protocol"]
    resolved = protocol.get("resolved") or {}
    config_eval = protocol.get("config") or {}
    model = resolved.get("model") or protocol.get("model") or {}
    recipe = resolved.get("recipe") or {}
    dataset = str(meta.get("dataset") or "")
    preset = {**GENERAL_EVAL, **EVAL_PRESETS.get(dataset, {})}
    differences: list[str] = []
    if not resolved:
        differences.append("the run recorded no resolved evaluation (eval.runs = 0): 'auto' options were taken as "
                           "ddcore's defaults for the dataset's name (augmentation: dsa)")  # fmt: skip

    def pick(key: str, default: Any) -> Any:
        value = recipe.get(key, config_eval.get(key))
        return default if value in (None, 0, "auto") else value

    name = model.get("name") or config_eval.get("model") or "convnet"
    depth = int(model.get("depth") or 3)
    norm = model.get("norm") or config_eval.get("norm") or "instancenorm"
    if name == "resnet18":
        model_name = "ResNet-18-BN"
    else:
        model_name = f"ConvNet-{depth}" + ("-BN" if norm == "batchnorm" else "")
        width = model.get("width")
        if width not in (None, 128):
            differences.append(f"network width: ddcore's evaluator used {width}, DD-Ranking's ConvNet has 128")
    epochs = int(pick("epochs", preset["epochs"]))
    schedule = pick("schedule", "step")
    augment = pick("augment", "dsa")
    if dataset not in DDRANKING_DATASETS:
        differences.append(f"dataset {dataset!r} is not one of DD-Ranking's built-ins; point real_data_path at it and adapt 'dataset'")
    if augment != "dsa":
        differences.append(f"augmentation: ddcore trained with {augment!r}; written as data_aug_func 'none'")
    if schedule not in ("step", "cosine"):
        differences.append(f"lr schedule: ddcore used {schedule!r}; written as 'step' with step_size = num_epochs (never steps)")
    counts = meta.get("num_images", 0) // max(1, meta.get("num_classes", 1))
    config: dict[str, Any] = {
        "dataset": DDRANKING_DATASETS.get(dataset, dataset),
        "real_data_path": str((manifest.get("config") or {}).get("data_root") or "./dataset/"),
        "ipc": int(counts),
        "im_size": list(meta["image_shape"][1:]),
        "model_name": model_name,
        "use_torchvision": False,
        "data_aug_func": "dsa" if augment == "dsa" else "none",
        "aug_params": {"flip": 0.5, "rotate": 15.0, "saturation": 2.0, "brightness": 1.0, "contrast": 0.5,
                       "scale": 1.2, "crop": 0.125, "cutout": 0.5} if augment == "dsa" else None,  # fmt: skip
        "use_zca": False,
        "custom_train_trans": None,
        "custom_val_trans": None,
        "optimizer": pick("optimizer", "sgd"),
        "lr_scheduler": schedule if schedule in ("step", "cosine") else "step",
        "step_size": epochs // 2 if schedule == "step" else epochs,
        "weight_decay": float(recipe.get("weight_decay", config_eval.get("weight_decay", 5e-4))),
        "momentum": float(recipe.get("momentum", config_eval.get("momentum", 0.9))),
        "num_eval": int(resolved.get("runs") or config_eval.get("runs") or 5),
        "num_epochs": epochs,
        "syn_batch_size": int(pick("batch_size", 256)),
        "real_batch_size": 256,
        "default_lr": float(pick("lr", 0.01)),
        "num_workers": 4,
        "device": "cuda",
        "save_path": "./results/ddcore_export_scores.csv",
    }
    if meta["labels"] == "soft":
        config.update({"soft_label_mode": "S", "soft_label_criterion": "sce",
                       "loss_fn_kwargs": {"temperature": 1.0, "scale_loss": False}})  # fmt: skip
        differences.append("soft labels: ddcore trains on the logits' softmax with cross-entropy; mode 'S' (static labels) with 'sce' is the nearest")
    if meta.get("lr") is not None:
        differences.append("the learned syn_lr is in lr.pt, not in the config: pass it to compute_metrics (syn_lr), as "
                           "ddcore trains with it (eval.use_learned_lr); default_lr is ddcore's eval.lr")  # fmt: skip
    differences.append("DD-Ranking reports the best test accuracy over periodic checks; ddcore reports the last epoch's")
    return config, differences


def _ddranking_header(meta: dict[str, Any]) -> str:
    return (f"# DD-Ranking evaluation config written by `dd export` (ddcore) for the run {meta['source_run']}\n"
            "# nearest protocol to ddcore's evaluation; what differs is listed in meta.json (ddranking.differences)\n")  # fmt: skip


def to_yaml(data: dict[str, Any], header: str = "") -> str:
    """``data`` (str/number/bool/None values, lists of them, one level of nested dicts) as block YAML.

    Scalars are written as JSON, which YAML 1.2 reads as the same values.

    >>> print(to_yaml({"a": 1, "b": [32, 32], "c": {"d": None}}), end="")
    a: 1
    b: [32, 32]
    c:
      d: null
    """
    lines = [header.rstrip("\n")] if header else []
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines += [f"  {k}: {json.dumps(v)}" for k, v in value.items()]
        else:
            lines.append(f"{key}: {json.dumps(value)}")
    return "\n".join(lines) + "\n"
