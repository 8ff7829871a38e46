"""Atomic writes: a destination is replaced whole or left as it was; nothing half-written or
temporary stays behind (tests/test_architecture.py checks that nothing else renames)."""

import os

import pytest

from tfkd import atomic


def test_write_text_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out" / "results.json"
    atomic.write_text(path, "first")
    atomic.write_text(path, "second")
    assert path.read_text() == "second"
    assert os.listdir(tmp_path / "out") == ["results.json"]


def test_a_failed_write_leaves_the_earlier_file_and_no_temporary(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("earlier")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic.atomic_file(path) as handle:
            handle.write("half")
            raise RuntimeError("disk full")
    assert path.read_text() == "earlier"
    assert os.listdir(tmp_path) == ["results.json"]


def test_a_folder_is_replaced_whole(tmp_path):
    path = tmp_path / "saved_model"
    for version in ("one", "two"):
        with atomic.atomic_path(path) as temporary:
            os.makedirs(os.path.join(temporary, "variables"))
            with open(os.path.join(temporary, "variables", "data"), "w") as handle:
                handle.write(version)
    assert (path / "variables" / "data").read_text() == "two"
    assert sorted(os.listdir(tmp_path)) == ["saved_model"]


def test_an_existing_destination_is_kept_without_overwrite(tmp_path):
    path = tmp_path / "model.keras"
    path.write_text("kept")
    with pytest.raises(FileExistsError, match="model.keras exists"):
        with atomic.atomic_path(path, overwrite=False):
            pass
    assert path.read_text() == "kept"


def test_binary_files(tmp_path):
    path = tmp_path / "weights.bin"
    with atomic.atomic_file(path, "wb") as handle:
        handle.write(bytes(range(4)))
    assert path.read_bytes() == bytes(range(4))
