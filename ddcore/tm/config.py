"""The ``[tm]`` table: options of the built-in trajectory-matching distiller (``distill = "tm"``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from ddcore.errors import ConfigError
from ddcore.vocab import MatchAugment


@dataclass
class TMConfig:
    """Trajectory-matching options (``[tm]``, used when ``distill = "tm"``); names follow the EDF/DATM spec.

    ``augment`` is the differentiable augmentation of the unrolled student's batches (``dsa`` or ``none``).
    """

    preset: str = "none"  # resolved name; "auto" (the default in a run config) picks by dataset and ipc
    iterations: int = 200
    syn_steps: int = 10
    expert_epochs: int = 2
    min_start_epoch: int = 0
    cur_max_start_epoch: int = 2
    max_start_epoch: int = 4
    expansion_end: int = 100
    batch_syn: int = 0  # 0: the whole synthetic set in one batch
    lr_img: float = 100.0
    lr_lr: float = 1e-5
    lr_y: float = 2.0
    lr_teacher: float = 0.01
    learn_labels: bool = False
    skip_threshold: float = 0.0  # 0: never skip; else skip updates whose loss exceeds it
    augment: MatchAugment = "dsa"
    init: Literal["selected", "correct"] = "selected"  # correct: EDF's correctly-predicted images, expert soft labels
    checkpoint_every: int = 25  # 0: no checkpoints (no resume)
    eval_every: int = 0  # 0: off; else evaluate every so many iterations and keep the best set
    eval_runs: int = 1  # networks per periodic evaluation (the [eval] recipe)
    # full: keep the unrolled graph (memory ~ syn_steps x batch_syn); constant: rebuild one step at a time
    # in reverse (same gradients, memory of one step); auto: full when it fits the device comfortably
    unroll: Literal["auto", "full", "constant"] = "auto"

    def __post_init__(self) -> None:
        for key in ("iterations", "syn_steps", "expert_epochs", "expansion_end"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key 'tm.{key}' must be at least 1, got {getattr(self, key)}")
        if not 0 <= self.min_start_epoch <= self.cur_max_start_epoch <= self.max_start_epoch:
            raise ConfigError(
                "config keys 'tm.min_start_epoch' <= 'tm.cur_max_start_epoch' <= 'tm.max_start_epoch' must hold, got "
                f"{self.min_start_epoch}, {self.cur_max_start_epoch}, {self.max_start_epoch}"
            )
        if self.eval_every < 0:
            raise ConfigError(f"config key 'tm.eval_every' must be >= 0, got {self.eval_every}")
        if self.eval_runs < 1:
            raise ConfigError(f"config key 'tm.eval_runs' must be at least 1, got {self.eval_runs}")
        if self.checkpoint_every < 0:
            raise ConfigError(f"config key 'tm.checkpoint_every' must be >= 0, got {self.checkpoint_every}")
        if self.batch_syn < 0:
            raise ConfigError(f"config key 'tm.batch_syn' must be >= 0, got {self.batch_syn}")
        if self.skip_threshold < 0:
            raise ConfigError(f"config key 'tm.skip_threshold' must be >= 0 (0 = never skip), got {self.skip_threshold}")
        if self.unroll not in ("auto", "full", "constant"):
            raise ConfigError(f"config key 'tm.unroll' must be 'auto', 'full' or 'constant', got {self.unroll!r}")
        for key in ("lr_img", "lr_lr", "lr_y", "lr_teacher"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"config key 'tm.{key}' must be > 0, got {getattr(self, key)}")

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


