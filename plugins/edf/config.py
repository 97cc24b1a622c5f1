"""``[plugin.edf]`` options and EDF's per-IPC presets (the authors' release, see docs/edf.md).

``beta``, ``interval`` and ``alpha`` left unset take the preset's values. The preset ``auto`` (the
default) picks ``ipc1``, ``ipc10`` or ``ipc50`` by the run's IPC (the nearest); ``woof-ipc10`` and
``woof-ipc50`` are the ImageWoof rows (beta 2); ``none`` means no preset (every unset key must then be
given). Keys set explicitly always win. The trajectory-matching settings of the same table (syn_steps,
lr_img, ...) are the core's ``[tm]`` presets (``tm.preset = "spec-ipc10"``), not EDF options.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from ddcore import ConfigError
from ddcore.cam import CamMethod, CamVariant
from ddcore.config import Range

PREFIX = "plugin.edf"

#: EDF's own hyperparameters per preset (the spec's table; interval: the CAM refresh period in iterations).
EDF_PRESETS: dict[str, dict[str, float | int]] = {
    "ipc1": {"interval": 50, "alpha": 0.0, "beta": 1.0},
    "ipc10": {"interval": 100, "alpha": 0.25, "beta": 1.0},
    "ipc50": {"interval": 100, "alpha": 0.375, "beta": 1.0},
    "woof-ipc10": {"interval": 100, "alpha": 0.25, "beta": 2.0},
    "woof-ipc50": {"interval": 100, "alpha": 0.375, "beta": 2.0},
}
PRESET_IPCS = (1, 10, 50)


def preset_for_ipc(ipc: int) -> str:
    """The ``ipc<k>`` preset with ``k`` nearest to ``ipc`` (ties go to the smaller).

    >>> [preset_for_ipc(i) for i in (1, 5, 6, 20, 30, 31, 200)]
    ['ipc1', 'ipc1', 'ipc10', 'ipc10', 'ipc10', 'ipc50', 'ipc50']
    """
    return "ipc" + str(min(PRESET_IPCS, key=lambda k: (abs(k - ipc), k)))


@dataclass
class EDFConfig:
    """``[plugin.edf]``: Emphasizing Discriminative Features on top of trajectory matching.

    Attributes:
        preset: ``auto`` (by IPC), one of :data:`EDF_PRESETS`, or ``none``.
        beta: DAE: added to the activation in discriminative areas (``W = M + beta`` where ``M >= tau``).
        act_threshold: DAE: fixed threshold ``tau`` in ``(0, 1]``; ``0`` uses each image's mean activation.
        interval: DAE: recompute the activation maps every so many matching iterations.
        alpha: CPD: drop the ``floor(alpha * P)`` smallest per-element matching losses; ``[0, 1)``.
        dae: switch DAE (the pixel weights) on or off, for ablations.
        cpd: switch CPD (the supervision weights) on or off, for ablations.
        cam_method: ``smooth_gradcampp`` (the authors') or ``gradcam`` (one pass, cheaper).
        cam_variant: ``paper`` (the methods' published formulas, ddcore's default) or ``torchcam`` (torchcam
            0.5.0's order of operations, the library of the authors' release; :mod:`ddcore.cam`).
        cam_layer: the CAM layer's name in the CAM model (``""``: ``layer4`` for ResNets, the last
            conv block for ConvNets).
        cam_model: ``run`` (the run's own classifier: expert 0's final snapshot, else a cached teacher),
            ``teacher`` (the run's network trained on the whole training split, cached:
            :func:`ddcore.teacher.trained_teacher`) or ``torchvision:<arch>`` with ``cam_weights``.
        cam_teacher_epochs: ``teacher`` only: its training epochs (``0``: the dataset's full-data epochs,
            ``ddcore.presets.dataset_eval_preset(...)["full_epochs"]``).
        cam_teacher_lr: ``teacher`` only: its SGD learning rate (``0``: ``TEACHER_TRAIN_DEFAULTS``, 0.01).
        cam_weights: a local weights file for a ``torchvision:<arch>`` CAM model, opened and matched to
            the architecture when the options are checked (``module.`` key prefixes accepted).
        cam_input_norm: how images reach a torchvision CAM model (through :class:`ddcore.adapt.InputAdapter`:
            grey repeated to RGB, the model's size limits): ``auto`` or ``imagenet`` (re-normalised to
            ImageNet statistics), ``dataset`` (the dataset's own). ``run`` models take the images as they are.
        cam_samples: Smooth Grad-CAM++: noisy copies per image.
        cam_noise: Smooth Grad-CAM++: the noise's standard deviation, in the dataset's normalised units
            (``cam_variant = "torchcam"``: in the CAM model's own input units, behind any input adapter)
            (each image's noise comes from its own seed: ``(run seed, "edf", "cam", refresh iteration, image)``).
        cam_batch_size: images per CAM forward pass (``0``: as many as cost no more memory than one
            matching step of the run, projected; all at once when that fits).
        class_index: the CAM model's class for each dataset class (``[]``: the same index when the
            label spaces match, else the dataset's ``imagenet_index``).
    """

    preset: str = "auto"
    beta: Annotated[float, Range(ge=0)] | None = None
    act_threshold: Annotated[float, Range(ge=0, le=1, note="0: each image's mean")] = 0.0
    interval: Annotated[int, Range(ge=1)] | None = None
    alpha: Annotated[float, Range(ge=0, lt=1, note="alpha = 1 would drop every element")] | None = None
    dae: bool = True
    cpd: bool = True
    cam_method: CamMethod = "smooth_gradcampp"
    cam_variant: CamVariant = "paper"
    cam_layer: str = ""
    cam_model: str = "run"
    cam_teacher_epochs: Annotated[int, Range(ge=0, note="0: the dataset's full-data epochs")] = 0
    cam_teacher_lr: Annotated[float, Range(ge=0, note="0: the teacher default, 0.01")] = 0.0
    cam_weights: str = ""
    cam_input_norm: Literal["auto", "dataset", "imagenet"] = "auto"
    cam_samples: Annotated[int, Range(ge=1)] = 4
    cam_noise: Annotated[float, Range(ge=0)] = 0.3
    cam_batch_size: Annotated[int, Range(ge=0, note="0: all at once")] = 0
    class_index: list[Annotated[int, Range(ge=0)]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.preset not in ("auto", "none", *EDF_PRESETS):
            known = ", ".join(["auto", "none", *EDF_PRESETS])
            raise ConfigError(f"config key '{PREFIX}.preset': unknown preset {self.preset!r}; choose one of {known}")
        if self.preset not in ("auto", "none"):
            self._fill(self.preset)
        if self.preset == "none":
            missing = [key for key in ("beta", "interval", "alpha") if getattr(self, key) is None]
            if missing:
                raise ConfigError(f"config key '{PREFIX}.preset' is 'none', so set {', '.join(f'{PREFIX}.{k}' for k in missing)}")
        self._check_cam_model()

    def _check_cam_model(self) -> None:
        if self.cam_model != "teacher":
            for key in ("cam_teacher_epochs", "cam_teacher_lr"):
                if getattr(self, key):
                    raise ConfigError(f"config key '{PREFIX}.{key}' is only for cam_model = 'teacher' (cam_model is {self.cam_model!r})")
        if self.cam_model in ("run", "teacher"):
            if self.cam_weights:
                raise ConfigError(
                    f"config key '{PREFIX}.cam_weights' is only for cam_model = 'torchvision:<arch>' (cam_model is {self.cam_model!r})"
                )
            if self.cam_input_norm == "imagenet":
                raise ConfigError(
                    f"config key '{PREFIX}.cam_input_norm' = 'imagenet' is only for cam_model = 'torchvision:<arch>': "
                    f"the {'run' if self.cam_model == 'run' else 'teacher'}'s classifier takes the dataset's own normalisation"
                )
            return
        kind, _, arch = self.cam_model.partition(":")
        if kind != "torchvision" or not arch:
            raise ConfigError(
                f"config key '{PREFIX}.cam_model': expected 'run', 'teacher' or 'torchvision:<arch>' (e.g. 'torchvision:resnet18'), "
                f"got {self.cam_model!r}"
            )
        import torchvision

        if arch not in torchvision.models.list_models(module=torchvision.models):
            raise ConfigError(f"config key '{PREFIX}.cam_model': torchvision has no classification model {arch!r}")
        if not self.cam_weights:
            raise ConfigError(f"config key '{PREFIX}.cam_weights' must name a local weights file for {self.cam_model}")
        if not Path(self.cam_weights).expanduser().is_file():
            raise ConfigError(f"config key '{PREFIX}.cam_weights': {self.cam_weights} is not a file")
        # Opened and matched to the architecture now, before any work (experts, selection): a file that does
        # not fit is one line listing a few missing / unexpected keys. ``module.`` prefixes are accepted.
        from ddcore.weights import load_torchvision

        load_torchvision(arch, self.cam_weights, option=f"config key '{PREFIX}.cam_weights'")

    def _fill(self, preset: str) -> None:
        for key, value in EDF_PRESETS[preset].items():
            if getattr(self, key) is None:
                setattr(self, key, value)

    def resolved(self, ipc: int) -> "EDFConfig":
        """A copy with ``auto`` replaced by the preset for ``ipc`` and every unset value filled."""
        if self.preset != "auto":
            return self
        copy = dataclasses.replace(self, preset=preset_for_ipc(ipc))
        return copy

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
