"""Atomic writes: every file and folder tfkd writes appears whole or not at all.

A writer writes beside the destination (a temporary name in the same folder, so the rename
stays on one file system), flushes what it wrote to the disk (fsync) and renames it over the
destination in one `os.replace`, then syncs the folder's entry. A process killed at any point
leaves the earlier destination (or none), never half a file; at worst a hidden temporary
(`.<name>.*`) that the next write of the same destination does not read.

    with atomic_path("out/model.keras") as temporary:   # a file or a folder
        model.save(temporary)
    with atomic_file("out/replay.npz", "wb") as handle:
        numpy.savez(handle, ...)
    write_text("out/results.json", text)
"""

import contextlib
import os
import shutil
import tempfile


@contextlib.contextmanager
def atomic_path(path, overwrite=True, suffix=""):
    """Yields a temporary path beside `path` (nothing exists there yet) to write a file or a
    folder at; on success what was written is synced and replaces `path` in one rename.

    `suffix`: an ending the temporary path must have for the writer (Keras saves only to
    "*.keras"), added when `path` lacks it. On failure the temporary is removed and whatever
    stood at `path` is left untouched. Raises FileExistsError when `path` exists and not
    `overwrite`.
    """
    path = os.path.abspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite to replace it")
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".", dir=parent)
    name = os.path.basename(path)
    temporary = os.path.join(staging, name if name.endswith(suffix) else name + suffix)
    try:
        yield temporary
        sync(temporary)
        replace(temporary, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path, mode="w", **open_options):
    """Yields `path` opened for writing (`mode` "w" or "wb"; `open_options` as `open`'s) under
    a temporary name; on success the file is synced and replaces `path` in one rename."""
    with atomic_path(path) as temporary, open(temporary, mode, **open_options) as handle:
        yield handle


def write_text(path, text):
    """Writes `text` to `path` atomically."""
    with atomic_file(path) as handle:
        handle.write(text)


def sync(path):
    """Flushes the file at `path`, or every file and folder under the folder at `path`, to the
    disk, so that a rename after it never names data still only in memory."""
    if os.path.isdir(path):
        for folder, _, files in os.walk(path):
            for name in files:
                _sync_file(os.path.join(folder, name))
            _sync_folder(folder)
    elif os.path.exists(path):
        _sync_file(path)


def replace(source, destination):
    """Moves `source` onto `destination` (a file or a folder) in one rename, removing an old
    folder only after the new one is in place; then syncs the parent folder's entry."""
    if os.path.isdir(destination) and not os.path.islink(destination):
        retired = destination + ".old"
        shutil.rmtree(retired, ignore_errors=True)
        os.replace(destination, retired)
        os.replace(source, destination)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(source, destination)
    _sync_folder(os.path.dirname(os.path.abspath(destination)))


def _sync_file(path):
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _sync_folder(path):
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:  # a folder that cannot be opened (some platforms): nothing to sync
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)
