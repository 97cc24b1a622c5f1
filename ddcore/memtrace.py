"""Peak live tensor bytes of a computation, on any device (``meta`` included): the currency of ddcore's
memory projections (:mod:`ddcore.tm.memory` for a matching step, :mod:`ddcore.cam` for a CAM chunk)."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveTensorBytes(TorchDispatchMode):
    """A dispatch mode that tracks the bytes of tensor storages created inside it and still alive.

    Every operation's outputs are recorded by storage (views share one); a storage stops counting when
    its last reference anywhere (Python, the autograd graph) is gone, which is checked after every
    operation through a weak reference to the C++ storage. Works on any device, ``meta`` included.
    Storages that existed before the mode was entered are not counted, nor are views of them.

    Attributes:
        peak: the largest sum of live bytes seen after any operation (bytes).
        current: the live bytes at the last check, an upper bound of the live bytes now (bytes); freed
            storages are swept out whenever it passes :attr:`peak` (so the peak is exact, and the sweep
            runs rarely).
    """

    def __init__(self) -> None:
        super().__init__()
        from torch.multiprocessing.reductions import StorageWeakRef

        self._weak = StorageWeakRef
        self._live: dict[int, tuple[Any, int]] = {}
        self.current = 0
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's protocol
        out = func(*args, **(kwargs or {}))
        # a view of (or in-place op on) a storage made before the mode was entered allocates nothing
        inputs = {t.untyped_storage()._cdata for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                key = storage._cdata
                entry = self._live.get(key)
                if entry is not None and entry[0].expired():  # an address freed and reused since the last sweep
                    self.current -= self._live.pop(key)[1]
                    entry = None
                if entry is None and key not in inputs:
                    nbytes = storage.nbytes()
                    self._live[key] = (self._weak(storage), nbytes)
                    self.current += nbytes
        if self.current > self.peak:  # frees are only counted when they could matter: a new peak is verified
            self._sweep()
            self.peak = max(self.peak, self.current)
        return out

    def _sweep(self) -> None:
        """Drop the storages freed since the last sweep from :attr:`current`."""
        dead = [key for key, (ref, _) in self._live.items() if ref.expired()]
        for key in dead:
            self.current -= self._live.pop(key)[1]


def peak_live_bytes(fn: Callable[[], Any]) -> int:
    """Peak live tensor bytes allocated while ``fn()`` runs (see :class:`LiveTensorBytes`); ``fn``'s result is dropped."""
    with LiveTensorBytes() as tracker:
        fn()
    return tracker.peak
