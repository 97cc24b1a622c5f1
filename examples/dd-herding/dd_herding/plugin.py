"""The ddcore plugin: ``dd_select`` by herding. Loaded as ``--plugin herding`` (entry point ``herding``).

Options, from the run's ``[plugin.herding]`` table (validated by ddcore against :class:`HerdingConfig`)::

    [plugin.herding]
    space = "pixels"   # or "pixels-pooled"
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ddcore import ImageDataset, PluginError, RunContext, Selection, hookimpl
from dd_herding.herding import FeatureSpace, herding_order, image_features

PLUGIN_NAME = "herding"
#: The name ddcore registers this module under when it is passed as an object: ``ddcore.run(..., plugins=[plugin])``.
name = PLUGIN_NAME


@dataclass
class HerdingConfig:
    """``[plugin.herding]`` options.

    Attributes:
        space: the features whose class mean herding tracks: ``"pixels"`` (flattened normalised
            images) or ``"pixels-pooled"`` (2x2 average-pooled first; faster, less sensitive to noise).
    """

    space: FeatureSpace = "pixels"


#: ddcore validates the ``[plugin.herding]`` table into this class; hooks read it with ``ctx.plugin_config``.
config_class = HerdingConfig


@hookimpl
def dd_select(ctx: RunContext, dataset: ImageDataset, ipc: int) -> Selection:
    """Per class (0..C-1), the ``ipc`` training images picked by herding; class-major order."""
    config: HerdingConfig = ctx.plugin_config(PLUGIN_NAME)
    images, labels, indices = [], [], []
    for label, class_indices in enumerate(dataset.indices_by_class("train")):
        if len(class_indices) < ipc:
            raise PluginError(
                f"class {dataset.class_names[label]!r} has {len(class_indices)} training images, "
                f"fewer than ipc={ipc}",
                plugin=PLUGIN_NAME,
            )
        class_images, _ = dataset.load("train", class_indices)  # [n_c, C, H, W]
        features = image_features(class_images.to(ctx.device), config.space)  # [n_c, D]
        order = herding_order(features, ipc).cpu()  # [ipc] positions within the class
        images.append(class_images[order])
        labels.append(torch.full((ipc,), label, dtype=torch.long))
        indices.append(torch.as_tensor(class_indices, dtype=torch.long)[order])
    return Selection(
        images=torch.cat(images),
        labels=torch.cat(labels),
        indices=torch.cat(indices),
        meta={"method": "herding", "space": config.space},
    )
