"""Stage I over the dataset: stream each class's pool in batches, keep each image's best candidates.

Memory holds one batch of images plus the kept candidates' boxes, scores and features, never the
pool's images. Batches are dealt round-robin to the Accelerate processes and gathered. Every image
draws its noise (or crops) from its own generator, ``derive_generator("diffsel", "stage1", i)`` with
``i`` its position in ``dataset.train``, so the result depends neither on ``batch_size`` nor on the
number of processes.

The scored pool is saved under ``<cache_dir>/diffsel/pools/<key>.pt`` (``key``: everything that
shapes Stage I, but not the IPC), so a run at another IPC reuses it (consistency). What shapes it
includes the dataset's identity with its content fingerprint (:mod:`ddcore.datasig`): a pool of images
since rewritten, swapped or replaced is never reused, as its ``index`` would point at other pictures.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import torch

from ddcore.atomic import torch_save
from ddcore.context import RunContext
from ddcore.data.base import ImageDataset
from ddcore_diffsel.windows import crop_resize

POOL_FORMAT = 2  # 2: per-image Stage-I seeds (1: per batch)


class Scorer(Protocol):
    def candidates(self, images: torch.Tensor, labels: torch.Tensor, generator: Sequence[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass
class Pool:
    """The kept candidates of every class, in (class, image) order.

    Attributes:
        labels: ``[n]`` int64 class of each candidate.
        index: ``[n]`` int64 position of its source image in ``dataset.train``.
        boxes: ``[n, 4]`` int64 ``(top, left, height, width)`` in the source image.
        scores: ``[n]`` float32 Stage-I score (higher is better).
        features: ``[n, D]`` float32 Stage-II embedding.
        meta: the key's contents and how the pool was made.
    """

    labels: torch.Tensor
    index: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor
    features: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    def of_class(self, label: int) -> torch.Tensor:
        """Positions of class ``label``'s candidates. Shape: ``-> [n_c]`` int64."""
        return torch.nonzero(self.labels == label).flatten()

    def to_dict(self) -> dict[str, Any]:
        return {"format": POOL_FORMAT, "labels": self.labels, "index": self.index, "boxes": self.boxes,
                "scores": self.scores, "features": self.features, "meta": json.dumps(self.meta, default=str)}  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> "Pool | None":
        """The saved pool, or ``None`` when the file is missing, damaged or of another format."""
        if not path.is_file():
            return None
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            if data.get("format") != POOL_FORMAT:
                return None
            return cls(data["labels"], data["index"], data["boxes"], data["scores"], data["features"], json.loads(data["meta"]))
        except Exception:
            return None


def pool_key(contents: dict[str, Any]) -> str:
    """16 hex digits of the sha256 of a canonical JSON of ``contents`` (plus the format)."""
    return hashlib.sha256(json.dumps({"format": POOL_FORMAT, **contents}, sort_keys=True, default=str).encode()).hexdigest()[:16]


def pool_path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / "diffsel" / "pools" / f"{key}.pt"


def pool_plan(dataset: ImageDataset, per_class: int, batch_size: int, generator_for: Callable[[int], torch.Generator]) -> list[tuple[int, int, list[int]]]:
    """``(class, batch number, positions)`` for every batch: ``per_class`` seeded random images per class
    (all when the class has fewer), in file order, cut into batches of ``batch_size``."""
    plan = []
    for label, positions in enumerate(dataset.indices_by_class("train")):
        if len(positions) > per_class:
            chosen = torch.randperm(len(positions), generator=generator_for(label))[:per_class].sort().values
            positions = [positions[i] for i in chosen.tolist()]
        for number, start in enumerate(range(0, len(positions), batch_size)):
            plan.append((label, number, positions[start : start + batch_size]))
    return plan


def score_pool(
    ctx: RunContext,
    dataset: ImageDataset,
    scorer: Scorer,
    embed: Callable[[torch.Tensor], torch.Tensor],
    *,
    per_class: int,
    batch_size: int,
    cell: int,
    meta: dict[str, Any],
) -> Pool:
    """Run Stage I over the pool (streamed, sharded over processes, gathered; the same on every process).

    ``embed`` maps cell-size patches ``[m, C, cell, cell]`` (normalised) to features ``[m, D]``.
    """
    plan = pool_plan(dataset, per_class, batch_size, lambda c: ctx.derive_generator("diffsel", "pool", c))
    mine = plan[ctx.process_index :: ctx.num_processes]
    rows: list[tuple[int, int, dict[str, torch.Tensor]]] = []
    with ctx.reporter.progress(f"stage I: scoring {sum(len(b[2]) for b in plan)} images", total=len(mine)) as advance:
        for label, number, positions in mine:
            images, labels = dataset.load("train", positions)
            generators = [ctx.derive_generator("diffsel", "stage1", position) for position in positions]  # per image
            boxes, scores = scorer.candidates(images, labels, generators)  # [B, k, 4], [B, k]
            k = scores.shape[1]
            keep = torch.isfinite(scores).flatten()
            source = torch.arange(len(positions)).repeat_interleave(k)[keep]
            flat_boxes = boxes.reshape(-1, 4)[keep]
            patches = crop_resize(images[source], flat_boxes, cell)
            rows.append((label, number, {
                "labels": labels[source], "index": torch.as_tensor(positions, dtype=torch.long)[source],
                "boxes": flat_boxes.long(), "scores": scores.flatten()[keep].float(), "features": embed(patches).float(),
            }))  # fmt: skip
            advance(1)
    if ctx.num_processes > 1:
        from accelerate.utils import gather_object

        rows = gather_object(rows)
    rows.sort(key=lambda row: (row[0], row[1]))
    parts = {name: torch.cat([row[2][name] for row in rows]) for name in ("labels", "index", "boxes", "scores", "features")}
    return Pool(**parts, meta=meta)


def cached_pool(ctx: RunContext, contents: dict[str, Any], build: Callable[[dict[str, Any]], Pool], reuse: bool) -> tuple[Pool, bool, Path]:
    """The pool for ``contents``: loaded from the cache when allowed and present, else built and saved.

    Returns ``(pool, reused, path)``. Only the main process writes.
    """
    key = pool_key(contents)
    path = pool_path(ctx.cache_dir, key)
    pool = Pool.load(path) if reuse else None
    if pool is not None and pool.meta.get("key") == key:
        return pool, True, path
    pool = build({**contents, "key": key})
    if ctx.is_main_process:
        torch_save(pool.to_dict(), path)
    ctx.accelerator.wait_for_everyone()
    return pool, False, path
