"""Networks built by name: ``build_model("convnetd3", num_classes=10, in_channels=1, image_size=32)``."""

from ddcore.models.convnet import NORMS, ConvNet
from ddcore.models.registry import MODEL_NAMES, ModelSpec, build_model
from ddcore.models.resnet import resnet18

__all__ = ["ConvNet", "NORMS", "MODEL_NAMES", "ModelSpec", "build_model", "resnet18"]
