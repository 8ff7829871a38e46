"""Atomic file and folder writes: write beside the destination, then rename."""
import contextlib
import os
import shutil
import tempfile


@contextlib.contextmanager
def atomic_path(path, overwrite=True):
    """Yields a temporary path beside `path`; on success it replaces `path` in one rename.

    On failure the temporary path is removed and whatever stood at `path` is left untouched.
    """
    path = os.path.abspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite to replace it")
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".", dir=parent)
    temporary = os.path.join(staging, os.path.basename(path))
    try:
        yield temporary
        replace(temporary, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace(source, destination):
    """Moves `source` onto `destination` (file or folder), removing the old one only after."""
    if os.path.isdir(destination) and not os.path.islink(destination):
        retired = destination + ".old"
        shutil.rmtree(retired, ignore_errors=True)
        os.replace(destination, retired)
        os.replace(source, destination)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(source, destination)


def write_text(path, text):
    with atomic_path(path) as temporary:
        with open(temporary, "w") as handle:
            handle.write(text)
