"""The valid-value histogram of valid_range's sampled frames: C kernel, numpy twin, and
the histogram the pre-pass builds from a real image series (the same counts either way)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from dials_mdxbg.binning.histogram import ValueHistogram, sampled_frames
from dials_mdxbg.binning.valid_auto import CAP, frame_groups, sample_histogram
from dials_mdxbg.native import lib
from dials_mdxbg.native.value_histogram import count_values, count_values_numpy


def _frame(rng, shape=(37, 53)) -> np.ndarray:
    frame = rng.poisson(20, size=shape).astype(np.int32)
    flat = frame.ravel()
    idx = rng.choice(flat.size, size=60, replace=False)
    flat[idx[:20]] = -1  # masked
    flat[idx[20:30]] = -2  # other negatives: counted apart
    flat[idx[30:40]] = np.iinfo(np.int32).min
    flat[idx[40:50]] = CAP + rng.integers(0, 1000, size=10)  # the overflow bin
    flat[idx[50:]] = np.iinfo(np.int32).max
    return frame


def _by_hand(frame, skip, cap):
    keep = frame != -1
    if skip is not None:
        keep &= ~skip
    v = frame[keep].astype(np.int64)
    hist = np.zeros(cap + 1, dtype=np.int64)
    np.add.at(hist, np.minimum(v[v >= 0], cap), 1)
    return hist, int(np.count_nonzero(v < 0))


@pytest.mark.parametrize("with_skip", [False, True])
@pytest.mark.parametrize("cap", [CAP, 64])
def test_compiled_and_numpy_count_the_same(with_skip, cap):
    if not lib.loaded():
        pytest.skip("C kernels not built")
    rng = np.random.default_rng(7)
    frame = _frame(rng)
    skip = rng.random(frame.shape) < 0.1 if with_skip else None
    expected, negative = _by_hand(frame, skip, cap)
    for count in (count_values, count_values_numpy):
        hist = np.zeros(cap + 1, dtype=np.int64)
        hist[3] = 5  # adds into what is there
        assert count(frame, skip, hist) == negative
        hist[3] -= 5
        np.testing.assert_array_equal(hist, expected)
    # a strided view (one column of frames) is taken as well
    hist = np.zeros(cap + 1, dtype=np.int64)
    count_values(frame[:, ::2], None if skip is None else skip[:, ::2], hist)
    np.testing.assert_array_equal(
        hist, _by_hand(frame[:, ::2], None if skip is None else skip[:, ::2], cap)[0]
    )


def test_the_valid_values_median():
    """valid_range=auto's nominal background: the lower median of the values >= 0 (masked
    and other negative values are not counted; values past the cap count as the cap)."""
    rng = np.random.default_rng(3)
    frame = _frame(rng)
    skip = rng.random(frame.shape) < 0.2
    h = ValueHistogram.zeros(CAP)
    h.add(frame, skip)
    values = np.sort(np.minimum(frame[~skip & (frame >= 0)].astype(np.int64), CAP))
    assert h.median() == values[(values.size + 1) // 2 - 1]
    assert h.masked == frame.size - values.size
    assert np.isnan(ValueHistogram.zeros(CAP).median())


def test_sampled_histogram_of_a_series_is_the_same_in_c_and_numpy(our_import, monkeypatch):
    from dials_mdxbg.jobs.bin_background import BinSource

    hists = []
    for pure in ("", "1"):
        monkeypatch.setenv("DIALS_MDXBG_PURE_NUMPY", pure)
        lib.library.cache_clear()
        with BinSource.from_series(str(our_import)).open() as opened:
            hists.append(sample_histogram(opened, nproc=2))
    lib.library.cache_clear()
    # against the frames themselves (no mdx2 mask here: every value but -1 is valid)
    with h5py.File(our_import, "r") as f:
        data = f["entry/image_series/data"]
        frames = [data[k] for k in sampled_frames(data.shape[0])]
    values = np.concatenate([v.ravel() for v in frames]).astype(np.int64)
    expected = np.bincount(np.minimum(values[values >= 0], CAP), minlength=CAP + 1)
    np.testing.assert_array_equal(hists[0].counts[1:], expected)
    assert hists[0].masked == np.count_nonzero(values < 0)
    np.testing.assert_array_equal(hists[0].counts, hists[1].counts)


def test_sampled_frames_are_read_once_per_stored_block():
    assert frame_groups([0, 1, 2, 4, 5], 5) == [(0, 5), (5, 6)]
    assert frame_groups([0, 12, 24, 37, 49], 5) == [(0, 1), (12, 13), (24, 25), (37, 38), (49, 50)]
    assert frame_groups([0, 25, 50, 74, 99], 1) == [(0, 1), (25, 26), (50, 51), (74, 75), (99, 100)]


@pytest.mark.parametrize("with_skip", [False, True])
def test_the_report_histogram_counts_the_same_in_c_and_numpy(with_skip, monkeypatch):
    from dials_mdxbg.binning import histogram

    rng = np.random.default_rng(11)
    frame = _frame(rng, shape=(301, 97))
    skip = rng.random(frame.shape) < 0.1 if with_skip else None
    counts = []
    for pure in ("", "1"):
        monkeypatch.setenv("DIALS_MDXBG_PURE_NUMPY", pure)
        lib.library.cache_clear()
        h = histogram.ValueHistogram.zeros(histogram.histogram_cap((0, 200)))
        h.add(frame, skip)
        h.add(frame[:7], None if skip is None else skip[:7])
        counts.append(h.counts)
    lib.library.cache_clear()
    np.testing.assert_array_equal(counts[0], counts[1])
    assert counts[0].sum() == frame.size + frame[:7].size
