"""Binning an image series while its chunks inflate (series/stored_block.py): the sums,
histogram and every other use of the blocks are those of the blocks decoded as arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dials_mdxbg.binning.blocks import block_sums, clip_threshold
from dials_mdxbg.binning.grid import BinGrid
from dials_mdxbg.binning.histogram import sampled_frames
from dials_mdxbg.binning.parity import ParityGrid
from dials_mdxbg.model import as_block
from dials_mdxbg.native import lib
from dials_mdxbg.series.reader import ImageSeriesReader, series_tasks
from dials_mdxbg.series.stored_block import StoredBlock


def _sums(reader, grid, first, nproc=1, valid_range=(0, 200), **kw):
    tasks = series_tasks(reader, None, None, first)()
    return block_sums(tasks, grid, valid_range, nproc=nproc, **kw)


def _same(a, b) -> bool:
    keys = ("total", "count", "total_sq")
    same = all(np.array_equal(getattr(a, k), getattr(b, k)) for k in keys)
    if a.values is not None or b.values is not None:
        same = same and np.array_equal(a.values.counts, b.values.counts)
    return same


@pytest.fixture(params=["compiled", "numpy"])
def kernels(request, monkeypatch):
    """Run with the C kernels, then with their numpy twins."""
    lib.library.cache_clear()
    if request.param == "numpy":
        monkeypatch.setenv("DIALS_MDXBG_PURE_NUMPY", "1")
    assert lib.name() == request.param
    yield request.param
    lib.library.cache_clear()


@pytest.mark.parametrize("bins", [(4, 20, 20), (5, 7, 33), (3, 211, 150)])
def test_stored_blocks_give_the_sums_and_histogram_of_arrays(our_import: Path, kernels, bins):
    """Bins cut by the 493-column chunks, frame bins across chunk slabs, the histogram's
    sampled frames inside slabs; one and two threads; C and numpy."""
    with ImageSeriesReader(our_import) as reader:
        grid = BinGrid(reader.shape, bins)
        first = sampled_frames(reader.shape[0])
        kinds = {type(load()) for _, _, load in series_tasks(reader, None, None, first)()}
        assert kinds == {StoredBlock}
        arrays = _sums(reader, grid, None, histogram=True)
        assert arrays.values is not None and arrays.count.sum() > 0
        for nproc in (1, 2):
            assert _same(_sums(reader, grid, first, nproc, histogram=True), arrays)
        # No valid range: squares could exceed 2**53, so the blocks are binned as arrays.
        assert _same(
            _sums(reader, grid, first, valid_range=None),
            _sums(reader, grid, None, valid_range=None),
        )


def test_stored_blocks_as_arrays_for_clipping_parity_and_masks(our_import: Path):
    """Where binning needs the counts (a clipping threshold, an mdx2 mask, held-out
    parity grids), a stored block gives the array of those frames."""
    with ImageSeriesReader(our_import) as reader:
        first = sampled_frames(reader.shape[0])
        grid = ParityGrid(reader.shape, (4, 20, 20))
        assert _same(_sums(reader, grid, first), _sums(reader, grid, None))
        plain = BinGrid(reader.shape, (4, 20, 20))
        threshold = clip_threshold(_sums(reader, plain, None), 3.0)
        clipped = _sums(reader, plain, None, threshold=threshold)
        assert _same(_sums(reader, plain, first, threshold=threshold), clipped)

        def excluded(frame0, row0, shape):
            out = np.zeros(shape, dtype=bool)
            out[:, ::3, 100:300] = True
            return out

        masked = _sums(reader, plain, None, excluded=excluded)
        assert masked.count.sum() < clipped.count.sum()
        assert _same(_sums(reader, plain, first, excluded=excluded), masked)
        blocks = list(series_tasks(reader, None, None, first)())
        starts = {f for f, _, _ in blocks}
        assert starts == {0, 5, 10} | set(first.tolist())  # chunk slabs, cut at sampled frames
        for f, y, load in blocks:
            block = as_block(load())
            assert block.shape[1:] == (min(211, reader.shape[1] - y), reader.shape[2])
            assert np.array_equal(block, reader.data[f : f + len(block), y : y + block.shape[1]])


def test_a_corrupt_chunk_is_one_line(our_import: Path, tmp_path: Path):
    """A chunk that does not inflate names its frames and rows (InputError)."""
    import shutil

    import h5py

    from dials_mdxbg.errors import InputError

    copy = tmp_path / "corrupt.nxs"
    shutil.copyfile(our_import, copy)
    with h5py.File(copy, "r+") as f:
        dset = f["entry/image_series/data"]
        mask, payload = dset.id.read_direct_chunk((5, 211, 0))
        dset.id.write_direct_chunk((5, 211, 0), b"\x78\x01" + payload[2:40], mask)
    with ImageSeriesReader(copy) as reader:
        grid = BinGrid(reader.shape, (4, 20, 20))
        with pytest.raises(InputError, match=r"frames 6\.\.10, rows 211\.\.406 is corrupt"):
            _sums(reader, grid, sampled_frames(reader.shape[0]))


def test_a_blocks_first_frame_alone_is_its_arrays_first_frame(our_import: Path, kernels):
    """The histogram's sampled frame is unshuffled alone, not with its block's other frames."""
    with ImageSeriesReader(our_import) as reader:
        first = sampled_frames(reader.shape[0])
        blocks = [load() for _, _, load in series_tasks(reader, None, None, first)()]
        assert blocks
        for block in blocks:
            whole = block.array()
            alone = block.array(frames=1)
            assert alone.shape == (1, *whole.shape[1:])
            assert np.array_equal(alone, whole[:1])
            assert np.array_equal(next(block.masked_slabs()), whole[0])
