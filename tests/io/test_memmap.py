"""Memory-mapped draws: copied into memory a block at a time, pages let go."""

import numpy as np

from screenformula.io import memmap


def test_in_memory_copies_a_memory_mapped_array_block_by_block(tmp_path, monkeypatch):
    path = tmp_path / "draws.npy"
    on_disk = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(1, 37, 5, 2))
    on_disk[...] = np.random.default_rng(0).normal(size=on_disk.shape)
    released = []
    monkeypatch.setattr(memmap, "_BLOCK_BYTES", 3 * 5 * 2 * 8)  # 3 draws a block: 13 blocks
    real = memmap.release
    monkeypatch.setattr(memmap, "release", lambda a, sync=True: released.append(sync) or real(a))
    copy = memmap.in_memory(on_disk)
    assert type(copy) is np.ndarray and copy.shape == on_disk.shape
    np.testing.assert_array_equal(copy, np.load(path))
    assert released == [False] * 13  # after every block, without waiting for the disk
    small = memmap.in_memory(np.arange(4.0))  # one axis: copied at once
    np.testing.assert_array_equal(small, np.arange(4.0))
