"""Weights files: read a state dict from a local file and match it to an architecture, with one-line errors.

Every plugin that takes a weights file (EDF's ``cam_weights``, diffsel's ``torchvision:ARCH:PATH``
teacher and observer, ``dd compdd complexity --arch --weights``) goes through :func:`load_torchvision`
(or :func:`read_state_dict` + :func:`match_state_dict` for another architecture), so a file is
opened and matched the same way everywhere, and before any work when called from a config check.

Accepted layouts: a bare state dict, or a dict holding one under ``state_dict`` or ``model`` (the
usual training checkpoints). The prefixes ``module.`` (``nn.DataParallel`` /
``DistributedDataParallel``) and ``_orig_mod.`` (``torch.compile``) are removed when every key carries
them (:func:`torch.nn.modules.utils.consume_prefix_in_state_dict_if_present`).

A file that does not fit is one :class:`~ddcore.errors.ConfigError` line naming the file, the
architecture, up to :data:`SHOWN_KEYS` missing and unexpected keys with the count of the rest, and
shape mismatches the same way: never a multi-kilobyte message whose cause is cut off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ddcore.errors import ConfigError

#: Keys named in a mismatch message per kind (missing, unexpected, wrong shape); the rest are counted.
SHOWN_KEYS = 3

#: Prefixes that wrappers add to every key, removed when all keys carry one.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _where(option: str) -> str:
    return f" ({option})" if option else ""


def read_state_dict(path: str | Path, *, option: str = "") -> dict[str, torch.Tensor]:
    """The state dict stored in ``path`` (CPU tensors), wrapper prefixes removed.

    ``option`` names the config key or flag that gave the path (quoted in errors). Raises
    :class:`ConfigError` (one line) when the file is missing, unreadable as
    ``torch.load(weights_only=True)``, or holds no state dict.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "w.pt")
    >>> torch.save({"state_dict": {"module.weight": torch.zeros(2)}}, path)
    >>> list(read_state_dict(path))
    ['weight']
    """
    from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"weights file {file} does not exist{_where(option)}")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"weights file {file} cannot be read as torch weights ({type(exc).__name__}){_where(option)}") from None
    if isinstance(state, Mapping):
        for wrapper in ("state_dict", "model"):
            if isinstance(state.get(wrapper), Mapping):
                state = state[wrapper]
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"weights file {file} does not hold a state dict (name -> tensor){_where(option)}")
    state = dict(state)
    for prefix in WRAPPER_PREFIXES:
        if all(key.startswith(prefix) for key in state):
            consume_prefix_in_state_dict_if_present(state, prefix)
    return state


def _listed(kind: str, names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN_KEYS])
    rest = len(names) - SHOWN_KEYS
    return f"{len(names)} {kind} ({shown}{f' and {rest} more' if rest > 0 else ''})"


def mismatch(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """``None`` when ``state`` fits ``model`` exactly (same keys, same shapes), else a one-line summary.

    >>> mismatch(nn.Linear(2, 3), {"weight": torch.zeros(3, 2), "bias": torch.zeros(3)}) is None
    True
    >>> mismatch(nn.Linear(2, 3), {"weight": torch.zeros(3, 2), "scale": torch.zeros(3)})
    '1 missing (bias); 1 unexpected (scale)'
    """
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    shapes = [f"{key} {list(state[key].shape)} vs {list(expected[key].shape)}"
              for key in expected if key in state and tuple(state[key].shape) != tuple(expected[key].shape)]  # fmt: skip
    parts = [_listed(kind, names) for kind, names in
             (("missing", missing), ("unexpected", unexpected), ("with another shape (file vs model)", shapes)) if names]  # fmt: skip
    return "; ".join(parts) or None


def match_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], *, what: str, against: str = "",
                     option: str = "") -> nn.Module:  # fmt: skip
    """Load ``state`` into ``model`` when it fits exactly; else a one-line :class:`ConfigError`
    ``"<what> does not fit <against>: <mismatch>"`` (``against`` defaults to the model's class name).

    ``what`` names the file (``"weights file x.pth"``), ``against`` the architecture
    (``"resnet18 with 10 classes"``). Returns ``model``.
    """
    problem = mismatch(model, state)
    if problem is not None:
        raise ConfigError(f"{what} does not fit {against or type(model).__name__}: {problem}{_where(option)}")
    model.load_state_dict(state)
    return model


def torchvision_arch(arch: str, *, option: str = "") -> str:
    """``arch`` when torchvision has a classification model of that name, else a one-line ConfigError."""
    import torchvision

    known = set(torchvision.models.list_models(module=torchvision.models))
    if arch not in known:
        close = sorted(name for name in known if name[:4] == arch[:4])[:6]
        hint = f"; close: {', '.join(close)}" if close else ""
        raise ConfigError(f"unknown torchvision architecture {arch!r}{hint}{_where(option)}")
    return arch


def load_torchvision(arch: str, path: str | Path, num_classes: int | None = None, *, option: str = "") -> nn.Module:
    """A torchvision classification architecture with the weights of a local file, in eval mode on the CPU.

    Never downloads. ``num_classes`` defaults to the rows of the file's last 2-D weight (1000 when it
    has none). Every problem (unknown architecture, missing or unreadable file, keys or shapes that do
    not fit) is one :class:`ConfigError` line naming the file, the architecture and ``option``.
    The model's own initialisation does not consume the caller's global random state.
    """
    import torchvision

    torchvision_arch(arch, option=option)
    state = read_state_dict(path, option=option)
    if num_classes is None:
        matrices = [v for v in state.values() if v.ndim == 2]
        num_classes = int(matrices[-1].shape[0]) if matrices else 1000
    with torch.random.fork_rng(devices=[]):
        network = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    what = f"weights file {Path(path).expanduser()}"
    return match_state_dict(network, state, what=what, against=f"{arch} with {num_classes} classes", option=option).eval()
