"""Issue 14 kind 1: I/O failures are one line naming the option and the cause, found before any work.

* Every folder a run writes (the cache folder, the run directory) is probed before any work: a path
  through a regular file, a file in the way, no permission -> one ``Error:`` line naming ``--cache-dir``,
  ``DDCORE_CACHE`` or ``--out``, exit 2, nothing written (no run directory, no cache folder).
* A write that fails later (a full disk: ``ENOSPC``) is one line naming the file, exit 2, no traceback, and
  the manifest is marked failed when it can still be written; no temporary file is left behind.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from core_support import assert_cli_error, write_plugin_file
from ddcore.atomic import StorageError, torch_save, write_json

not_root = pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")


def run_args(tmp_path: Path, *extra) -> list:
    return ["run", "--ipc", "1", "--eval-runs", "0", "--workers", "0", "--quiet", "--out", tmp_path / "run", *extra]


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name.endswith(".tmp") or ".ddcore-write-probe" in p.name)


# ----------------------------------------------------------------------------------------------
# Probed before any work
# ----------------------------------------------------------------------------------------------


def test_cache_dir_through_a_regular_file_is_one_line_before_the_run_directory(tmp_path, cli):
    blocker = tmp_path / "hostname"
    blocker.write_text("not a folder\n")
    line = assert_cli_error(cli(*run_args(tmp_path, "--cache-dir", blocker / "x")), "--cache-dir", str(blocker), "is a file")
    assert "choose another --cache-dir" in line
    assert not (tmp_path / "run").exists()
    assert blocker.read_text() == "not a folder\n"


def test_cache_dir_that_is_a_file_is_refused(tmp_path, cli):
    blocker = tmp_path / "cache-file"
    blocker.write_text("")
    assert_cli_error(cli(*run_args(tmp_path, "--cache-dir", blocker)), "--cache-dir", "is a file, not a folder")
    assert not (tmp_path / "run").exists()


def test_ddcore_cache_a_file_fails_at_the_start_without_blaming_diffsel(tmp_path, cli, monkeypatch):
    """The issue's input: ``DDCORE_CACHE=<a file> dd run --plugin diffsel --ipc 1`` trained the prior first."""
    blocker = tmp_path / "cache-file"
    blocker.write_text("")
    monkeypatch.setenv("DDCORE_CACHE", str(blocker))
    line = assert_cli_error(cli("run", "--plugin", "diffsel", "--ipc", "1", "--workers", "0", "--out", tmp_path / "run"),
                            "DDCORE_CACHE", str(blocker), "--cache-dir")  # fmt: skip
    assert "diffsel" not in line
    assert not (tmp_path / "run").exists()


def test_xdg_cache_home_through_a_file_names_it(tmp_path, cli, monkeypatch):
    blocker = tmp_path / "xdg"
    blocker.write_text("")
    monkeypatch.delenv("DDCORE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert_cli_error(cli(*run_args(tmp_path)), "XDG_CACHE_HOME", str(blocker), "--cache-dir")


def test_out_through_a_regular_file_is_one_line(tmp_path, cli):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_cli_error(cli("run", "--ipc", "1", "--eval-runs", "0", "--cache-dir", tmp_path / "cache", "--out", blocker / "run"),
                     "--out", str(blocker), "is a file")  # fmt: skip
    assert not (tmp_path / "cache").exists()  # the cache probe leaves no folder when the run stops before work


def test_a_refused_run_leaves_no_folder_behind(tmp_path, cli):
    """The probes create the folders to prove them writable and remove them again when the run stops early."""
    out, cache = tmp_path / "new" / "run", tmp_path / "deep" / "cache"
    line = assert_cli_error(cli("run", "--ipc", "100000", "--eval-runs", "0", "--cache-dir", cache, "--out", out), "--ipc")
    assert "exceeds" in line  # refused after the probes (against the class sizes), before any work
    assert not (tmp_path / "new").exists() and not (tmp_path / "deep").exists()


@not_root
def test_unwritable_cache_folder_is_refused(tmp_path, cli):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert_cli_error(cli(*run_args(tmp_path, "--cache-dir", locked)), "--cache-dir", str(locked), "permission denied")
        assert_cli_error(cli(*run_args(tmp_path, "--cache-dir", locked / "sub")), "--cache-dir", "permission denied")
    finally:
        locked.chmod(0o700)
    assert not (tmp_path / "run").exists()


@not_root
def test_unwritable_out_folder_is_refused(tmp_path, cli):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert_cli_error(cli("run", "--ipc", "1", "--eval-runs", "0", "--cache-dir", tmp_path / "cache", "--out", locked / "run"),
                         "--out", "permission denied")  # fmt: skip
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("code, cause", [(errno.EACCES, "permission denied"), (errno.EROFS, "read-only file system"),
                                         (errno.ENOSPC, "no space left on device")])  # fmt: skip
def test_probe_failures_name_the_option_and_the_cause(tmp_path, cli, monkeypatch, code, cause):
    """What root cannot be shown with real permissions (and a read-only or full file system), by the probe's own call."""
    cache = tmp_path / "cache"
    fail_on(monkeypatch, "open", code, when=lambda path, *rest: str(path).startswith(str(cache / ".ddcore-write-probe")))
    line = assert_cli_error(cli(*run_args(tmp_path, "--cache-dir", cache)), f"--cache-dir {cache} is not writable: {cause}")
    assert ("free space or choose another --cache-dir" in line) == (code == errno.ENOSPC)
    assert not (tmp_path / "run").exists() and not cache.exists()


# ----------------------------------------------------------------------------------------------
# The writers: one StorageError naming the file, nothing half-written
# ----------------------------------------------------------------------------------------------


def fail_on(monkeypatch, function: str, code: int, when=lambda *args: True):
    real = getattr(os, function)

    def failing(*args, **kwargs):
        if when(*args):
            raise OSError(code, os.strerror(code))
        return real(*args, **kwargs)

    monkeypatch.setattr(os, function, failing)


def test_write_json_on_a_full_disk_raises_storage_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "data.json"
    write_json(path, {"old": 1})
    fail_on(monkeypatch, "replace", errno.ENOSPC)
    with pytest.raises(StorageError, match=r"no space left on device while writing .*data\.json; free space") as info:
        write_json(path, {"new": 2})
    assert info.value.path == path and info.value.errno == errno.ENOSPC
    assert json.loads(path.read_text()) == {"old": 1}
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("code, cause", [(errno.ENOSPC, "no space left"), (errno.EDQUOT, "disk quota exceeded"),
                                         (errno.EROFS, "read-only file system"), (errno.EACCES, "permission denied")])  # fmt: skip
def test_torch_save_write_failures_are_storage_errors(tmp_path, monkeypatch, code, cause):
    import torch

    fail_on(monkeypatch, "fsync", code)
    with pytest.raises(StorageError, match=cause):
        torch_save({"x": torch.zeros(3)}, tmp_path / "ckpt.pt")
    assert not (tmp_path / "ckpt.pt").exists()
    assert leftovers(tmp_path) == []


def test_a_writer_through_a_file_names_the_file(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(StorageError, match=r"f/x/data\.json"):
        write_json(tmp_path / "f" / "x" / "data.json", {})


def test_other_errors_pass_through_unchanged(tmp_path, monkeypatch):
    fail_on(monkeypatch, "replace", errno.EIO)  # a hardware error: not the user's to fix, keeps its traceback
    with pytest.raises(OSError) as info:
        write_json(tmp_path / "x.json", {})
    assert not isinstance(info.value, StorageError) and info.value.errno == errno.EIO


# ----------------------------------------------------------------------------------------------
# A full disk in the middle of a run
# ----------------------------------------------------------------------------------------------


def test_full_disk_while_writing_the_distilled_set_is_one_line_and_the_manifest_says_failed(tmp_path, cli, monkeypatch):
    fail_on(monkeypatch, "replace", errno.ENOSPC, when=lambda src, dst, *rest: Path(dst).name == "distilled.pt")
    line = assert_cli_error(cli(*run_args(tmp_path, "--cache-dir", tmp_path / "cache")),
                            "no space left on device while writing", "distilled.pt", "free space or choose another --out")  # fmt: skip
    monkeypatch.undo()
    run_dir = tmp_path / "run"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert "no space left on device" in manifest["error"] and "distilled.pt" in manifest["error"]
    assert manifest["failed_stage"] == "artifacts"
    assert not (run_dir / "distilled.pt").exists()
    assert leftovers(tmp_path) == []
    assert "no space left on device" in (run_dir / "run.log").read_text()
    assert line.startswith("Error: no space left")


def test_full_disk_for_every_file_leaves_the_first_error_as_the_one_line(tmp_path, cli, monkeypatch):
    """When even the manifest cannot be marked failed, the error reported is the first one, with no chained traceback."""
    seen = []

    def after_start(src, dst, *rest):
        seen.append(Path(dst).name)
        return Path(dst).name == "distilled.pt" or "distilled.pt" in seen

    fail_on(monkeypatch, "replace", errno.ENOSPC, when=after_start)
    assert_cli_error(cli(*run_args(tmp_path, "--cache-dir", tmp_path / "cache")), "while writing", "distilled.pt")
    assert seen.count("manifest.json") >= 2  # it tried to mark the manifest failed
    assert leftovers(tmp_path) == []


def test_full_disk_in_plugin_code_is_not_blamed_on_the_plugin(tmp_path, cli):
    plugin = write_plugin_file(tmp_path, "saver", """
        import errno, os
        from ddcore import hookimpl

        @hookimpl
        def dd_evaluate(ctx, distilled):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(ctx.cache_dir / "saver" / "big.bin"))
        """)
    line = assert_cli_error(cli(*run_args(tmp_path, "--cache-dir", tmp_path / "cache", "--plugin", plugin)),
                            "no space left on device", "big.bin", "dd_evaluate")  # fmt: skip
    assert "raised" not in line
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "No space left" in manifest["error"]


def test_torchs_own_short_write_error_on_a_full_disk_is_a_storage_error(tmp_path, monkeypatch):
    """torch's zip writer reports a full disk as ``RuntimeError: ... unexpected pos`` (no errno)."""
    import shutil
    from collections import namedtuple

    import torch

    def short_write(obj, handle):
        handle.write(b"PK")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1280 vs 1174")

    monkeypatch.setattr(torch, "save", short_write)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(1 << 30, 1 << 30, 512))
    with pytest.raises(StorageError, match=r"no space left on device while writing .*x\.pt"):
        torch_save({}, tmp_path / "x.pt")
    assert leftovers(tmp_path) == [] and not (tmp_path / "x.pt").exists()
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(1 << 30, 0, 1 << 30))
    with pytest.raises(RuntimeError, match="unexpected pos"):  # space left: not the disk, keep torch's error
        torch_save({}, tmp_path / "x.pt")


@pytest.fixture
def small_disk(tmp_path):
    """A 40 KiB tmpfs (root on Linux only): a real full disk."""
    import subprocess

    folder = tmp_path / "small"
    folder.mkdir()
    if not (hasattr(os, "geteuid") and os.geteuid() == 0):
        pytest.skip("mounting a small file system needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40k", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_real_full_disk_is_one_line_and_the_run_is_reported_dead_or_failed(tmp_path, cli, small_disk):
    out = small_disk / "run"
    assert_cli_error(cli("run", "--ipc", "1", "--eval-runs", "0", "--workers", "0", "--quiet", "--out", out,
                         "--cache-dir", tmp_path / "cache"), "no space left on device while writing", "--out")  # fmt: skip
    assert leftovers(small_disk) == []
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] in ("failed", "running")  # "running" when even marking it failed found no space
    if manifest["status"] == "failed":
        assert "no space left on device" in manifest["error"]
