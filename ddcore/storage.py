"""Where a run writes: each location proved writable before any work, and I/O failures as one line.

A *probe* creates the folder (and its parents), writes, fsyncs and deletes a small temporary file in
it. :func:`probe_dir` turns what stops that (a regular file in the way, no permission, a read-only
file system, a full disk) into a one-line :class:`StorageError` naming the option that chose the
folder (``--out``, ``--cache-dir``, ``DDCORE_CACHE``) and the cause. Later, while the run writes its
artefacts, checkpoints and caches, :mod:`ddcore.atomic`'s writers raise :class:`StorageError` for
the same causes (:func:`storage_error`), naming the file being written.

A plugin whose files go elsewhere than the run directory and the cache folder probes its folders
in its config class's ``__post_init__`` (run by ddcore before any work) with :func:`probe_dir`.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Mapping

from ddcore.errors import DDError

#: The ``errno`` values of write failures the user can fix (space, quota, permission, a file in the way).
FIXABLE_ERRNOS = frozenset(
    code
    for code in (
        errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EROFS, errno.EACCES, errno.EPERM,
        errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EFBIG, errno.ENAMETOOLONG,
    )  # fmt: skip
    if code is not None
)

_EDQUOT = getattr(errno, "EDQUOT", -1)
_CAUSES = {
    errno.ENOSPC: "no space left on device",
    _EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "a folder is in the way",
    errno.EEXIST: "a file is in the way",
    errno.EFBIG: "file too large for the file system",
    errno.ENAMETOOLONG: "file name too long",
}

DEFAULT_FIX = "free space or choose another --out/--cache-dir"


class StorageError(DDError):
    """Writing ``path`` failed for a reason the user can fix (``errno`` one of :data:`FIXABLE_ERRNOS`).

    ``str(err)``: ``"no space left on device while writing RUN/distilled.pt; free space or choose
    another --out/--cache-dir"``. ``cause`` is the plain reason, ``fix`` what to change.
    """

    def __init__(self, cause: str, path: str | os.PathLike | None, *, errno_code: int | None = None, fix: str = DEFAULT_FIX,
                 writing: bool = True):
        self.cause, self.path, self.errno, self.fix = cause, None if path is None else Path(path), errno_code, fix
        self.writing = writing
        where = "" if path is None else f" while writing {path}" if writing else f": {path}"
        super().__init__(f"{cause}{where}; {fix}")

    def naming(self, locations: Mapping[str, Path]) -> "StorageError":
        """The same error, its fix naming the option (a key of ``locations``) whose folder holds :attr:`path`."""
        if self.path is None:
            return self
        target = Path(os.path.abspath(self.path))
        for option, folder in locations.items():
            try:
                target.relative_to(os.path.abspath(folder))
            except ValueError:
                continue
            fix = f"free space or choose another {option}" if self.errno in (errno.ENOSPC, _EDQUOT) else f"choose another {option}"
            return StorageError(self.cause, self.path, errno_code=self.errno, fix=fix, writing=self.writing)
        return self


def is_fixable(exc: BaseException) -> bool:
    """Whether ``exc`` is an :class:`OSError` from writing that the user can fix (:data:`FIXABLE_ERRNOS`)."""
    return isinstance(exc, OSError) and exc.errno in FIXABLE_ERRNOS


def describe(exc: OSError) -> str:
    """The plain cause of ``exc`` (``"no space left on device"``), or its ``strerror``."""
    return _CAUSES.get(exc.errno or -2) or (exc.strerror or str(exc)).lower()


def storage_error(exc: BaseException, path: str | os.PathLike | None = None, *, writing: bool = True) -> StorageError | None:
    """A :class:`StorageError` for ``exc`` (writing ``path``; else the error's own file name), or ``None``
    when ``exc`` is not a fixable failure. ``writing=False``: not known to be a write (the message says
    ``"permission denied: PATH"`` rather than ``"... while writing PATH"``)."""
    if isinstance(exc, StorageError):
        return exc
    if not is_fixable(exc):
        return None
    assert isinstance(exc, OSError)
    fix = DEFAULT_FIX if writing else "free space, or check the path and its permissions (--out, --cache-dir, --data-root)"
    return StorageError(describe(exc), path if path is not None else exc.filename, errno_code=exc.errno, fix=fix, writing=writing)


def _blocking_file(folder: Path) -> Path | None:
    """The first existing non-folder on the way to ``folder`` (``folder`` itself included), if any."""
    for candidate in reversed([folder, *folder.parents]):
        if candidate.exists() and not candidate.is_dir():
            return candidate
        if not candidate.exists():
            return None
    return None


def probe_dir(folder: str | os.PathLike, option: str, *, keep: bool = True, fix: str | None = None) -> Path:
    """Prove ``folder`` writable: create it (and its parents), write + fsync + delete a small temporary file.

    Args:
        folder: the folder the run will write to.
        option: what chose it, for the message (``"--cache-dir"``, ``"--out"``, ``"DDCORE_CACHE"``).
        keep: keep the folders the probe created (``False``: remove them again, so that nothing is left
            behind by a run that stops before its work starts).
        fix: what to do, for the message (default ``"choose another <option>"``).

    Returns: ``folder`` as a :class:`~pathlib.Path`.

    Raises:
        StorageError: one line, ``"--cache-dir /etc/hostname/x is not writable: /etc/hostname is a file, not
            a folder; choose another --cache-dir"``, or the cause (permission denied, read-only file system, no space
            left on device) for ``folder``.
    """
    folder = Path(folder).expanduser()
    change = fix or f"choose another {option}"
    blocking = _blocking_file(folder)
    if blocking is not None:
        cause = f"{option} {folder} is not writable: {blocking} is a file, not a folder"
        raise StorageError(cause, None, errno_code=errno.ENOTDIR, fix=change)
    created = [p for p in reversed([folder, *folder.parents]) if not p.exists()]
    probe = folder / f".ddcore-write-probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"ddcore write probe\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
    except OSError as exc:
        change = f"free space or {change}" if exc.errno in (errno.ENOSPC, _EDQUOT) else change
        raise StorageError(f"{option} {folder} is not writable: {describe(exc)}", None, errno_code=exc.errno, fix=change) from None
    finally:
        for made in [] if keep else reversed(created):  # only the empty folders the probe made, deepest first
            try:
                made.rmdir()
            except OSError:
                break
    return folder
