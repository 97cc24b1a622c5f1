"""The ``[tm]`` table: options of the built-in trajectory-matching distiller (``distill = "tm"``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Literal

from ddcore.config import Range
from ddcore.errors import ConfigError
from ddcore.vocab import MatchAugment


@dataclass
class TMConfig:
    """Trajectory-matching options (``[tm]``, used when ``distill = "tm"``); names follow the EDF/DATM spec.

    ``augment`` is the differentiable augmentation of the unrolled student's batches (``dsa`` or ``none``).
    Numeric ranges are declared on the fields (:class:`ddcore.config.Range`), checked before any work.
    """

    preset: str = "none"  # resolved name; "auto" (the default in a run config) picks by dataset and ipc
    iterations: Annotated[int, Range(ge=1)] = 200
    syn_steps: Annotated[int, Range(ge=1)] = 10
    expert_epochs: Annotated[int, Range(ge=1)] = 2
    min_start_epoch: Annotated[int, Range(ge=0)] = 0
    cur_max_start_epoch: Annotated[int, Range(ge=0)] = 2
    max_start_epoch: Annotated[int, Range(ge=0)] = 4
    expansion_end: Annotated[int, Range(ge=1)] = 100
    batch_syn: Annotated[int, Range(ge=0, note="0: the whole synthetic set in one batch")] = 0
    lr_img: Annotated[float, Range(gt=0)] = 100.0
    lr_lr: Annotated[float, Range(gt=0)] = 1e-5
    lr_y: Annotated[float, Range(gt=0)] = 2.0
    lr_teacher: Annotated[float, Range(gt=0)] = 0.01  # the learned syn_lr's start (unless the initial set has one)
    learn_labels: bool = False
    skip_threshold: Annotated[float, Range(ge=0, note="0 = never skip")] = 0.0  # else skip updates whose loss exceeds it
    augment: MatchAugment = "dsa"
    init: Literal["selected", "correct"] = "selected"  # correct: EDF's correctly-predicted images, expert soft labels
    checkpoint_every: Annotated[int, Range(ge=0, note="0: no checkpoints, no resume")] = 25
    # 0: off; else evaluate every so many iterations and keep the best set
    eval_every: Annotated[int, Range(ge=0, note="0: off")] = 0
    eval_runs: Annotated[int, Range(ge=1)] = 1  # networks per periodic evaluation (the [eval] recipe)
    # full: keep the unrolled graph (memory ~ syn_steps x batch_syn); constant: rebuild one step at a time
    # in reverse (same gradients, memory of one step); auto: full when it fits the device comfortably
    unroll: Literal["auto", "full", "constant"] = "auto"

    def __post_init__(self) -> None:
        if not 0 <= self.min_start_epoch <= self.cur_max_start_epoch <= self.max_start_epoch:
            raise ConfigError(
                "config keys 'tm.min_start_epoch' <= 'tm.cur_max_start_epoch' <= 'tm.max_start_epoch' must hold, got "
                f"{self.min_start_epoch}, {self.cur_max_start_epoch}, {self.max_start_epoch}"
            )
        if self.unroll not in ("auto", "full", "constant"):
            raise ConfigError(f"config key 'tm.unroll' must be 'auto', 'full' or 'constant', got {self.unroll!r}")

    def check_against(self, expert_length: int) -> None:
        """Reject a start window the experts cannot serve (``expert_length`` = snapshots - 1 = epochs)."""
        last_start = self.max_start_epoch - 1 if self.max_start_epoch > self.min_start_epoch else self.min_start_epoch
        if last_start + self.expert_epochs > expert_length:
            raise ConfigError(
                f"tm.max_start_epoch {self.max_start_epoch} + tm.expert_epochs {self.expert_epochs} needs experts of at "
                f"least {last_start + self.expert_epochs} epochs, they have {expert_length}"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


