"""Atomic file writes: a killed run never leaves a half-written file behind.

Each writer creates a temporary file in the destination folder, flushes and fsyncs it, then
``os.replace``-s it over the destination (atomic on POSIX and Windows). A write the user can make succeed
(a full disk, a quota, a read-only file system, no permission, a file in the way) fails with a one-line
:class:`~ddcore.storage.StorageError` naming the file. :func:`write_json` writes strict
JSON only: a NaN or infinite number is refused (:class:`NonFiniteJSONError`) before the file is touched.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

from ddcore.storage import StorageError, storage_error  # noqa: F401 (StorageError: what the writers raise)


#: Free bytes below which a failed ``torch.save`` is taken for a full disk.
_FULL_BYTES = 1 << 20


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``, on error it is removed.

    Raises:
        StorageError: the folder cannot be created or the file cannot be written for a reason the user can
            fix (no space left, quota, read-only file system, permission, a file in the way); one line naming
            ``path`` (:mod:`ddcore.storage`). Other errors pass through unchanged.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise (storage_error(exc, path) or exc) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        failure = storage_error(exc, path) if isinstance(exc, OSError) else None
        if failure is not None:
            raise failure from exc
        raise


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """``open`` that writes to a temporary file and renames it into place when the block succeeds."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as handle:
            yield handle


class NonFiniteJSONError(ValueError):
    """:func:`write_json` was given a NaN or an infinite number, which JSON cannot hold.

    A bug of the writer's caller: a quantity that can be undefined (the spread of one run, an accuracy
    never measured) must be written as ``null`` with a note, never as a number that is not one.
    """


def non_finite_paths(data: Any, root: str = "$") -> list[str]:
    """The key paths (``$.metrics["eval/acc_std"]``, ``$.runs[2]``) of every NaN or infinite float in ``data``.

    Walks dicts, lists and tuples; other values are not numbers JSON would write as such.

    >>> non_finite_paths({"a": [1.0, float("nan")], "b/c": {"d": float("inf")}})
    ['$.a[1]', '$["b/c"].d']
    """
    found: list[str] = []
    stack: list[tuple[str, Any]] = [(root, data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, float):
            if not math.isfinite(value):
                found.append(where)
        elif isinstance(value, dict):
            for key, item in reversed(list(value.items())):
                name = str(key)
                step = f".{name}" if name.isidentifier() else f"[{json.dumps(name)}]"
                stack.append((where + step, item))
        elif isinstance(value, (list, tuple)):
            stack.extend((f"{where}[{index}]", item) for index, item in reversed(list(enumerate(value))))
    return found


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented, strict JSON (RFC 8259), atomically; objects JSON lacks are written as ``str``.

    Raises:
        NonFiniteJSONError: ``data`` holds a NaN or an infinite float (the message names ``path`` and the
            key path of the first); nothing is written and an existing file is left as it was.
    """
    bad = non_finite_paths(data)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise NonFiniteJSONError(
            f"refusing to write {path}: {bad[0]}{more} is not a finite number, which JSON cannot hold "
            "(a bug: the writer must give null, with a note, for an undefined value)"
        )
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=False, default=str, allow_nan=False)
        handle.write("\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through a temporary file; a full disk is a :class:`StorageError` (torch's own error for
    it, a ``RuntimeError`` without ``errno``, is recognised by the free space left)."""
    import torch

    with atomic_path(path) as tmp:
        try:
            with open(tmp, "wb") as handle:
                torch.save(obj, handle)
        except RuntimeError as exc:  # torch's zip writer reports a short write as "unexpected pos ..." (no errno)
            if shutil.disk_usage(tmp.parent).free < _FULL_BYTES:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc
            raise
