"""Helpers that ddcore's own test modules import (``from core_support import assert_cli_error``).

They are not in ``conftest.py``: the plugins' test folders have a ``conftest.py`` of their own, and
``from conftest import ...`` would get whichever of them pytest loaded last.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

CliResult = tuple[int, str, str]


def assert_cli_error(result: CliResult, *fragments: str, code: int = 2) -> str:
    """The command failed with ``code`` and printed exactly one ``Error...`` line naming every fragment."""
    exit_code, out, err = result
    assert exit_code == code, f"exit code {exit_code} != {code}\nstdout:\n{out}\nstderr:\n{err}"
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{err}"
    line = lines[0]
    assert line.startswith("Error"), line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


def write_plugin_file(folder: Path, stem: str, source: str) -> Path:
    """A local plugin file ``folder/<stem>.py`` (for ``--plugin path/to/file.py``)."""
    path = folder / f"{stem}.py"
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def tree_snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes), to prove nothing changed."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------------------------
# Known-answer datasets: the right test accuracy is known by construction
# ----------------------------------------------------------------------------------------------

#: Classes, image side and band height of the known-answer datasets: class ``k`` is a bright band
#: over rows ``4k .. 4k+3`` of a 1 x 16 x 16 image (a horizontal band survives every augmentation the
#: evaluators use: shifts of 2 px, horizontal flips, rotations of 15 degrees, cutout, colour).
KA_CLASSES, KA_SIDE, KA_BAND = 4, 16, 4
KA_TRAIN_PER_CLASS, KA_TEST_PER_CLASS = 16, 8

#: ``ka/<kind>`` datasets share one training split and one set of test images; only the test labels differ:
#:   clean    the test labels follow the rule -> a network that learned the rule scores 100 %;
#:   shifted  every test label is the next class, ``(k + 1) % 4`` -> the same network scores exactly 0 %
#:            on the test split (and 100 % on the training split: evaluating on the wrong split shows);
#:   chance   every test image appears 4 times, once with each label -> ANY classifier scores exactly 25 %.
KA_KINDS = ("clean", "shifted", "chance")
#: The test accuracy (percent) of a network that learned the rule, per kind.
KA_RIGHT_ANSWER = {"clean": 100.0, "shifted": 0.0, "chance": 100.0 / KA_CLASSES}


def ka_band_images(per_class: int, seed: int, amplitude: float = 3.0, noise: float = 0.5):
    """``(images [4 * per_class, 1, 16, 16], labels [4 * per_class])``: noise plus class ``k``'s bright band."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(KA_CLASSES).repeat_interleave(per_class)
    images = torch.randn(len(labels), 1, KA_SIDE, KA_SIDE, generator=generator) * noise
    for i, k in enumerate(labels.tolist()):
        images[i, :, KA_BAND * k : KA_BAND * (k + 1), :] += amplitude
    return images, labels


def known_answer_dataset(kind: str):
    """The in-memory dataset ``ka/<kind>`` (see :data:`KA_KINDS`); no augmentation by default."""
    import torch

    from ddcore.data.base import ImageDataset, TensorSplit

    if kind not in KA_KINDS:
        raise ValueError(kind)
    train_images, train_labels = ka_band_images(KA_TRAIN_PER_CLASS, seed=1)
    test_images, test_labels = ka_band_images(KA_TEST_PER_CLASS, seed=2)
    if kind == "shifted":
        test_labels = (test_labels + 1) % KA_CLASSES
    elif kind == "chance":
        test_images = test_images.repeat_interleave(KA_CLASSES, dim=0)
        test_labels = torch.arange(KA_CLASSES).repeat(len(test_labels))
    return ImageDataset(
        name=f"ka/{kind}", class_names=[f"band{k}" for k in range(KA_CLASSES)],
        train=TensorSplit(train_images, train_labels), test=TensorSplit(test_images, test_labels),
        image_shape=(1, KA_SIDE, KA_SIDE), mean=(0.0,), std=(1.0,), extra={"default_augment": "none"},
    )  # fmt: skip


def register_known_answer_datasets(register) -> None:
    """``dd_register_datasets`` body: ``ka/clean``, ``ka/shifted``, ``ka/chance``."""
    for kind in KA_KINDS:
        register(f"ka/{kind}", lambda options, kind=kind: known_answer_dataset(kind), description=f"known answers: {kind}")


def known_answer_plugin():
    """A plugin object registering the ``ka/*`` datasets (for ``ddcore.run(..., plugins=[...])``)."""
    from ddcore import hookimpl

    class KnownAnswerData:
        name = "known-answers"

        @hookimpl
        def dd_register_datasets(self, register):
            register_known_answer_datasets(register)

    return KnownAnswerData()


#: The same as a local plugin file (``dd run --plugin PATH``), for command-line tests; ``{tests}`` is this folder.
KNOWN_ANSWER_PLUGIN_FILE = """
import sys

sys.path.insert(0, {tests!r})
from ddcore import hookimpl
from core_support import register_known_answer_datasets


@hookimpl
def dd_register_datasets(register):
    register_known_answer_datasets(register)
"""


def write_known_answer_plugin(folder: Path) -> Path:
    """``folder/known_answers.py``: a local plugin file registering the ``ka/*`` datasets."""
    return write_plugin_file(folder, "known_answers", KNOWN_ANSWER_PLUGIN_FILE.format(tests=str(Path(__file__).parent)))


# ----------------------------------------------------------------------------------------------
# Two real processes (torchrun, gloo on the CPU) and a single-process reference in this one
# ----------------------------------------------------------------------------------------------

#: Variables of an enclosing distributed launch that must not leak into the one a test starts.
DISTRIBUTED_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")


def reset_accelerate_state() -> None:
    """Forget any Accelerator state an earlier test left in this process (it is a singleton)."""
    try:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    except (ImportError, AttributeError):  # pragma: no cover - private API of accelerate
        pass


def launch_two_processes(args: list, cwd: Path, timeout: float = 240):
    """``torchrun --standalone --nproc_per_node 2 -m ddcore_cli ARGS`` on the CPU (gloo), one thread each.

    Returns the finished ``subprocess.CompletedProcess``; a timeout (a deadlocked collective, most
    likely) or a non-zero exit fails the calling test with the processes' output.
    """
    import os
    import subprocess
    import sys

    import pytest

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "ddcore_cli", *map(str, args)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_ENV}
    env.update(ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"two-process run did not finish in {timeout} s (deadlock?)\n{exc.stderr or ''}")
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-6000:]}"
    return proc


class single_process:
    """``with single_process():`` a fresh Accelerator state and one torch thread, as in a launched process."""

    def __enter__(self) -> "single_process":
        import torch

        self.threads = torch.get_num_threads()
        reset_accelerate_state()
        torch.set_num_threads(1)
        return self

    def __exit__(self, *exc) -> None:
        import torch

        torch.set_num_threads(self.threads)
        reset_accelerate_state()
