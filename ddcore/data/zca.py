"""ZCA whitening of a dataset's images, fitted on its training split, with the inverse for viewing.

The dataset-distillation literature whitens CIFAR-10/100 for trajectory matching (MTT, Cazenavette et al.
2022; DATM, Guo et al. 2024; both after KIP): the pixels in ``[0, 1]`` (no mean/std normalisation) go through
kornia's :class:`~kornia.enhance.ZCAWhitening` with regularisation ``eps = 0.1`` added to the eigenvalues
of the training split's pixel covariance, fitted once on the training images and applied to the training and
test images alike. :class:`ZCA` wraps that module (``eps`` :data:`EPS`, unbiased covariance, inverse
computed), applies it in batches and records what it is (:meth:`ZCA.record`).

With ``W = U (S + eps)^(-1/2) U^T`` (``U S U^T`` the covariance of the flattened images, ``D = C*H*W``
features) and ``mu`` their mean: ``whiten(x) = (x - mu) W`` and ``inverse(z) = z W^-1 + mu``, exact up to
float32 rounding (``W^-1 = U (S + eps)^(1/2) U^T``).

Cost: the fit forms the ``D x D`` covariance of the ``N`` training images (``2 N D^2`` flops: 0.94 TFLOP for
CIFAR's 50,000 images at ``D = 3072``) and decomposes it; whitening costs the same again. The matrices take
``2 D^2`` float32 (72 MiB at 32 px, D = 3072).
"""

from __future__ import annotations

from typing import Any

import torch

#: The regularisation added to the covariance's eigenvalues (MTT's and DATM's ``ZCAWhitening(eps=0.1)``).
EPS = 0.1
#: Images whitened (or un-whitened) per matrix product, to bound the temporary memory.
BATCH = 4096


class ZCA:
    """ZCA whitening fitted on ``[N, C, H, W]`` images (kornia's ``ZCAWhitening(eps, compute_inv=True)``).

    Args:
        eps: regularisation added to the covariance's eigenvalues (:data:`EPS`).

    Methods take and return ``[N, C, H, W]`` float32 tensors of the fitted ``(C, H, W)``; ``inverse`` runs on
    the device of its input (the matrices are moved there).

    >>> import torch
    >>> images = torch.rand(64, 1, 2, 2)
    >>> zca = ZCA().fit(images)
    >>> white = zca.whiten(images)
    >>> bool(torch.allclose(zca.inverse(white), images, atol=1e-5))
    True
    >>> zca.record()["eps"], zca.record()["features"]
    (0.1, 4)
    """

    def __init__(self, eps: float = EPS):
        from kornia.enhance import ZCAWhitening

        self.eps = float(eps)
        self.module = ZCAWhitening(eps=self.eps, compute_inv=True)
        self.shape: tuple[int, ...] | None = None
        self.fitted_on = 0

    def fit(self, images: torch.Tensor) -> "ZCA":
        """Fit on ``images [N, C, H, W]`` (``N >= 2``, float); returns ``self``. Raises ``ValueError`` for N < 2."""
        if images.ndim != 4 or images.shape[0] < 2:
            raise ValueError(f"ZCA needs at least 2 images [N, C, H, W], got {tuple(images.shape)}")
        self.module.fit(images.float())
        self.shape = tuple(images.shape[1:])
        self.fitted_on = int(images.shape[0])
        return self

    def whiten(self, images: torch.Tensor) -> torch.Tensor:
        """``(x - mu) W`` per image, in batches of :data:`BATCH`: ``[N, C, H, W]`` -> ``[N, C, H, W]`` float32."""
        self._check(images)
        return _batched(self.module, images)

    def inverse(self, images: torch.Tensor) -> torch.Tensor:
        """``z W^-1 + mu`` per image (undoes :meth:`whiten`): ``[N, C, H, W]`` -> ``[N, C, H, W]``."""
        self._check(images)
        module = self.module.to(images.device)
        return _batched(module.inverse_transform, images.float()).to(images.dtype)

    def record(self) -> dict[str, Any]:
        """What the whitening is, for the manifest and the dataset's fingerprint (JSON-able)."""
        return {
            "method": "zca",
            "eps": self.eps,
            "library": "kornia.enhance.ZCAWhitening",
            "fitted_on": "train",
            "fitted_images": self.fitted_on,
            "features": None if self.shape is None else int(torch.tensor(self.shape).prod()),
        }

    def _check(self, images: torch.Tensor) -> None:
        if self.shape is None:
            raise RuntimeError("ZCA: fit first")
        if tuple(images.shape[1:]) != self.shape:
            raise ValueError(f"ZCA fitted on images {self.shape}, got {tuple(images.shape[1:])}")


def _batched(function: Any, images: torch.Tensor) -> torch.Tensor:
    if images.shape[0] <= BATCH:
        return function(images)
    return torch.cat([function(images[i : i + BATCH]) for i in range(0, images.shape[0], BATCH)])
