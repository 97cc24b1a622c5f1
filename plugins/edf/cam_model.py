"""The classifier EDF takes activation maps from, and the map from dataset classes to its label space.

- ``cam_model = "run"``: the run's own trained classifier (:func:`ddcore.teacher.run_classifier`:
  expert 0's final snapshot under trajectory matching, else a cached teacher). Under matching this is
  an early network: an expert is trained for the trajectory's few epochs only.
- ``cam_model = "teacher"``: the run's network trained on the whole training split for the dataset's
  full-data epochs (``cam_teacher_epochs``, ``cam_teacher_lr`` override), cached by content
  (:func:`ddcore.teacher.trained_teacher`). The closest ddcore has to the release's fully trained
  ImageNet ResNet-18 without foreign weights. Its test accuracy is recorded, never used to choose anything.
- ``cam_model = "torchvision:<arch>"``: a torchvision architecture with weights from a local file
  (:func:`ddcore.weights.load_torchvision`), e.g. the authors' ImageNet ResNet-18 at ``layer4``. It
  sees the dataset's images through :class:`ddcore.adapt.InputAdapter` (grey repeated to RGB, its size
  limits, ImageNet's normalisation), see :func:`cam_input`.

Targets are the true classes of the synthetic images. When the CAM model has more classes than the
dataset (an ImageNet-1K model for a 10-class subset), each dataset class is mapped to the model's
index of the same class (``dataset.extra["imagenet_index"]``, or ``class_index`` given explicitly).
The authors' release passed the subset's local indices 0..9 to a 1000-class model (tench, goldfish,
...), a bug this mapping avoids.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
from torch import nn

from ddcore import PluginError
from ddcore.adapt import ModelInput, torchvision_input
from ddcore.weights import load_torchvision
from ddcore_edf.config import EDFConfig


def class_map(model_classes: int, dataset_classes: int, explicit: Sequence[int] = (), imagenet_index: Sequence[int] | None = None) -> torch.Tensor:
    """The CAM model's class index of each dataset class.

    ``explicit`` (``plugin.edf.class_index``) wins; else the identity when the label spaces have the
    same size; else ``imagenet_index`` for a 1000-class model. Anything else is a one-line
    :class:`~ddcore.PluginError`.

    Shape: -> ``[dataset_classes]`` int64.

    >>> class_map(10, 10)
    tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    >>> class_map(1000, 3, imagenet_index=[0, 217, 482])   # tench, English springer, cassette player
    tensor([  0, 217, 482])
    """
    if explicit:
        chosen, source = list(explicit), "plugin.edf.class_index"
    elif model_classes == dataset_classes:
        return torch.arange(dataset_classes)
    elif imagenet_index is not None and model_classes == 1000:
        chosen, source = list(imagenet_index), "the dataset's extra['imagenet_index']"
    else:
        raise PluginError(
            f"the CAM model has {model_classes} classes and the dataset {dataset_classes}: set plugin.edf.class_index "
            "(the model's class of each dataset class) or use a dataset that declares extra['imagenet_index']",
            plugin="edf",
        )
    if len(chosen) != dataset_classes:
        raise PluginError(f"{source} has {len(chosen)} entries for {dataset_classes} dataset classes", plugin="edf")
    if min(chosen) < 0 or max(chosen) >= model_classes:
        raise PluginError(f"{source} holds an index outside the CAM model's {model_classes} classes", plugin="edf")
    return torch.tensor(chosen, dtype=torch.long)


def cam_input(config: EDFConfig, dataset) -> ModelInput | None:
    """What the CAM model expects, or ``None`` when it takes the dataset's images as they are (``run``).

    ``torchvision:<arch>``: :func:`ddcore.adapt.torchvision_input` (3 channels, its size limits); its
    normalisation is ImageNet's (``cam_input_norm`` ``auto`` or ``imagenet``) or the dataset's own
    (``dataset``, repeated over three channels for grey images).
    """
    if config.cam_model in ("run", "teacher"):
        return None
    target = torchvision_input(config.cam_model.partition(":")[2])
    if config.cam_input_norm == "dataset":
        repeat = target.channels // len(dataset.mean) if len(dataset.mean) == 1 else 1
        target = dataclasses.replace(target, mean=tuple(dataset.mean) * repeat, std=tuple(dataset.std) * repeat)
    return target


def teacher_options(ctx, config: EDFConfig) -> dict:
    """The arguments of :func:`ddcore.teacher.trained_teacher` for ``cam_model = "teacher"``: the run's network
    (``ctx.model_spec``, else the ``[eval]`` network for the dataset), ``epochs`` (``cam_teacher_epochs``, else the
    dataset's full-data epochs) and, when set, ``lr``."""
    from ddcore.presets import dataset_eval_preset, resolve_eval

    spec = ctx.model_spec or resolve_eval(ctx.config.eval, ctx.dataset).model
    epochs = config.cam_teacher_epochs or dataset_eval_preset(ctx.dataset)["full_epochs"]
    return {"model": spec, "epochs": int(epochs), **({"lr": config.cam_teacher_lr} if config.cam_teacher_lr else {})}


def cam_teacher(ctx, config: EDFConfig) -> tuple[nn.Module, dict]:
    """``(model, description)`` for ``cam_model = "teacher"``: the cached teacher, and what the manifest
    records of it (``path``, ``model``, ``epochs``, ``test_acc`` in percent on the test split: reported only)."""
    from ddcore.teacher import teacher_path, teacher_recipe, trained_teacher

    options = teacher_options(ctx, config)
    model = trained_teacher(ctx, **options)
    recipe = teacher_recipe(ctx.dataset, options["model"], options["epochs"], seed=ctx.seed,
                            **({"lr": options["lr"]} if "lr" in options else {}))  # fmt: skip
    path = teacher_path(ctx.cache_dir, ctx.dataset, recipe, ctx.config.data_root or None)
    record = ctx.records.get(f"teachers/{path.stem}", {})
    return model, {"kind": "teacher", "path": str(path), "model": options["model"].name, "epochs": options["epochs"],
                   "lr": recipe.train.lr, "test_acc": record.get("test_acc")}  # fmt: skip


def load_cam_model(ctx, cam_model: str, cam_weights: str) -> nn.Module:
    """The CAM classifier on ``ctx.device``, in eval mode, with frozen parameters (not adapted yet).

    ``run``: :func:`ddcore.teacher.run_classifier` (expert 0's final snapshot with its batch-norm
    statistics recomputed, :mod:`ddcore.snapshot`); ``torchvision:<arch>``:
    :func:`ddcore.weights.load_torchvision` of ``cam_weights`` (checked at config time already).
    ``teacher`` is :func:`cam_teacher`.
    """
    if cam_model == "run":
        from ddcore.teacher import run_classifier

        model = run_classifier(ctx)
    else:
        model = load_torchvision(cam_model.partition(":")[2], cam_weights, option="plugin.edf.cam_weights")
    return model.to(ctx.device).eval().requires_grad_(False)


def probe_classes(model: nn.Module, example: torch.Tensor) -> int:
    """The number of logits ``model`` returns for one image; a model that cannot take it is a PluginError.

    Shape: ``example [1, C, H, W]`` -> int.
    """
    try:
        with torch.no_grad():
            logits = model(example)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise PluginError(
            f"the CAM model cannot take the dataset's images {list(example.shape[1:])}: {first} (plugin.edf.cam_model)",
            plugin="edf",
        ) from None
    if logits.ndim != 2:
        raise PluginError(f"the CAM model returns shape {list(logits.shape)}, expected logits [N, classes]", plugin="edf")
    return int(logits.shape[1])
