"""The ``edf`` plugin: EDF (Emphasizing Discriminative Features) on ddcore's trajectory matcher.

- ``dd_pixel_weights``: DAE, the Grad-CAM soft mask on the synthetic images' gradient (:mod:`.dae`).
- ``dd_supervision_weights``: CPD, dropping the lowest per-element matching losses (:mod:`.cpd`).
- ``dd_evaluate``: EDF's own figures (CAM refreshes, share of pixels emphasised, all-zero maps).

- ``dd_state_dict`` / ``dd_load_state_dict``: the maps in use and the refresh counters, saved inside the
  distiller's checkpoints so that ``--resume`` continues exactly.

Use it with a distiller that calls its hooks: ``dd run --plugin edf --distill tm`` (both hooks), or a
distiller that calls only ``dd_pixel_weights`` (DAE applies, CPD is recorded as not applied). ddcore
refuses a run whose distiller calls neither (``--distill none``) before any work.
Options go in ``[plugin.edf]`` (:class:`~ddcore_edf.config.EDFConfig`).
"""

from __future__ import annotations

import torch

from ddcore import RunContext, hookimpl
from ddcore_edf.config import EDFConfig
from ddcore_edf.cpd import cpd_weights, drop_count
from ddcore_edf.dae import soft_mask
from ddcore_edf.maps import CamMaps

PLUGIN_NAME = "edf"
name = PLUGIN_NAME
config_class = EDFConfig


def _options(ctx: RunContext) -> EDFConfig:
    """The options with the preset resolved for the run's IPC (recorded once in the manifest)."""
    if "edf_options" not in ctx.stash:
        options = ctx.plugin_config(PLUGIN_NAME).resolved(ctx.config.ipc)
        ctx.stash["edf_options"] = options
        applied = {"dae": options.dae and "dd_pixel_weights" in ctx.distill_calls,
                   "cpd": options.cpd and "dd_supervision_weights" in ctx.distill_calls}  # fmt: skip
        ctx.record("edf", {"options": options.to_dict(), "applied": applied})
    return ctx.stash["edf_options"]


def _maps(ctx: RunContext, options: EDFConfig) -> CamMaps:
    if "edf_maps" not in ctx.stash:
        maps = CamMaps.build(ctx, options)
        if "edf_resumed" in ctx.stash:
            maps.load_state_dict(ctx.stash.pop("edf_resumed"), ctx.device)
        ctx.stash["edf_maps"] = maps
        ctx.records["edf"]["cam"] = {"model": options.cam_model, "layer": maps.layer_name,
                                     "class_index": maps.classes.tolist(), "method": options.cam_method,
                                     "variant": options.cam_variant, "source": maps.source}  # fmt: skip
    return ctx.stash["edf_maps"]


@hookimpl
def dd_pixel_weights(ctx: RunContext, images: torch.Tensor, labels: torch.Tensor, step: int) -> torch.Tensor | None:
    """DAE: ``[N, 1, H, W]`` weights ``M + beta`` where the activation ``M`` reaches its threshold, else 1."""
    options = _options(ctx)
    if not options.dae:
        return None
    maps = _maps(ctx, options)
    activation = maps.current(ctx, options, images, labels, step)  # [N, H, W]
    assert options.beta is not None
    return soft_mask(activation, options.beta, options.act_threshold).to(images.dtype)


@hookimpl
def dd_supervision_weights(ctx: RunContext, losses: torch.Tensor, distances: torch.Tensor, step: int) -> torch.Tensor | None:
    """CPD: 0/1 weights dropping the ``floor(alpha * P)`` smallest losses; abstains when none would be dropped."""
    options = _options(ctx)
    assert options.alpha is not None
    if not options.cpd or drop_count(losses.shape[0], options.alpha) == 0:
        return None
    return cpd_weights(losses, options.alpha)


@hookimpl
def dd_state_dict(ctx: RunContext) -> dict | None:
    """The maps in use and the counters (:meth:`CamMaps.state_dict`); abstains before the first refresh."""
    maps: CamMaps | None = ctx.stash.get("edf_maps")
    return None if maps is None else maps.state_dict()


@hookimpl
def dd_load_state_dict(ctx: RunContext, state: dict) -> None:
    """Kept until the CAM model is built (lazily, at the first DAE call), then restored into it."""
    maps: CamMaps | None = ctx.stash.get("edf_maps")
    if maps is not None:
        maps.load_state_dict(state, ctx.device)
    else:
        ctx.stash["edf_resumed"] = state


@hookimpl
def dd_evaluate(ctx: RunContext, distilled) -> dict | None:
    """``cam_refreshes``, ``active_fraction`` (mean share of pixels DAE emphasises) and ``empty_maps`` (all-zero
    maps over all refreshes: no positive evidence, weight 1 everywhere; per refresh in ``records.edf.empty_maps``);
    with ``cam_model = "teacher"`` also ``cam_teacher_test_acc`` (percent, reported only)."""
    maps: CamMaps | None = ctx.stash.get("edf_maps")
    if maps is None:
        return None  # re-evaluation of a saved run, or DAE switched off
    ctx.records["edf"]["refreshes"] = maps.refreshes
    ctx.records["edf"]["empty_maps"] = list(maps.empty)
    metrics: dict = {"cam_refreshes": maps.refreshes, "empty_maps": sum(maps.empty)}
    if maps.source.get("test_acc") is not None:  # the teacher's test accuracy: reported, never used to choose
        metrics["cam_teacher_test_acc"] = maps.source["test_acc"]
    if maps.active:
        metrics["active_fraction"] = sum(maps.active) / len(maps.active)
    return metrics
