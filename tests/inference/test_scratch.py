"""Draws on disk while a fit runs: reserved blocks, a clear line for a full disk, cleanup."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from screenformula.errors import FitError
from screenformula.inference import scratch


@pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="no posix_fallocate here")
def test_a_new_file_of_draws_has_its_blocks_reserved_before_any_write(tmp_path):
    shape = (50, 3000, 2)
    arr = scratch.draw_array("r_sgrna", shape, str(tmp_path))
    path = tmp_path / "r_sgrna.npy"
    size = path.stat().st_size
    assert size >= np.prod(shape) * 8
    # a sparse file would hold (almost) no blocks until its pages are written
    assert path.stat().st_blocks * 512 >= size
    arr[3, 10] = [1.5, -2.0]
    arr.flush()
    again = scratch.open_draws(str(path))
    np.testing.assert_array_equal(again[3, 10], [1.5, -2.0])

    other = tmp_path / "phi.npy"
    scratch.create_draws_file(other, (1, 40, 700))
    assert other.stat().st_blocks * 512 >= other.stat().st_size
    assert scratch.open_draws(str(other)).shape == (1, 40, 700)


def test_a_disk_too_small_for_the_draws_is_one_line_naming_the_folder(tmp_path, monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    with pytest.raises(FitError, match=f"not enough disk space in {tmp_path}.*TMPDIR"):
        scratch.draw_array("r_sgrna", (10, 100, 2), str(tmp_path))


def test_a_file_system_without_fallocate_still_gets_its_draws(tmp_path, monkeypatch):
    def unsupported(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", unsupported, raising=False)
    arr = scratch.draw_array("phi", (4, 5), str(tmp_path))
    arr[:] = 2.0
    arr.flush()
    assert scratch.open_draws(str(tmp_path / "phi.npy")).sum() == 40.0


def test_a_folder_removed_in_the_background_is_gone_once_its_thread_ends(tmp_path):
    folder = tmp_path / "store"
    for i in range(30):
        (folder / f"c{i}" / "0").mkdir(parents=True)
        (folder / f"c{i}" / "0" / "chunk").write_bytes(b"x" * 100)
    thread = scratch.remove_in_background(folder)
    assert not thread.daemon  # the interpreter waits for it at exit
    thread.join(timeout=30)
    assert not folder.exists()
