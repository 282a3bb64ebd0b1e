"""bins=auto's choice: the corrected score against the truth, the one-standard-error rule,
the detector gain; the choice is judged with mdx2's interp3 against the noise-free truth."""

from __future__ import annotations

import numpy as np
import pytest

from dials_mdxbg.binning.choice import one_se_choice, smoothness
from dials_mdxbg.binning.gain import choose_gain, is_photon_counter
from dials_mdxbg.binning.score import (
    N_FRAME,
    corner_weights,
    corrected_score,
    paired_difference,
    prediction_variance,
)
from dials_mdxbg.testing.pilatus import SweepSpec
from dials_mdxbg.testing.truth import TRUTH_SWEEPS
from truth_error import true_error


def _source(tmp_path, spec):
    from dxtbx.model.experiment_list import ExperimentListFactory

    from dials_mdxbg.jobs.bin_background import BinSource
    from dials_mdxbg.testing.pilatus import make_background_sweep

    expt = make_background_sweep(tmp_path, spec)
    experiments = ExperimentListFactory.from_json_file(str(expt))
    return BinSource.from_experiments(experiments, {"imageset": None})


@pytest.mark.parametrize("name", sorted(TRUTH_SWEEPS))
def test_chosen_is_truth_best_or_within_noise(name, tmp_path):
    """Every candidate binned by hand (filled) and judged against the truth."""
    from dials_mdxbg.binning.phil import BinOptions
    from dials_mdxbg.jobs.bin_background import bin_background

    spec = SweepSpec(**TRUTH_SWEEPS[name])
    src = _source(tmp_path, spec)
    vr = (0, 100000)
    frames = (2, 4) if spec.n_frames < 20 else (4, 8, 16)
    options = BinOptions(bins=None, valid_range=vr, auto_frames=frames, auto_pixels=(3, 6, 12, 24))
    auto = bin_background(src, options)
    info = auto.quality["auto"]
    table = info["candidates"]
    true = []
    for row in table:
        by_hand = BinOptions(bins=tuple(row["bins"]), valid_range=vr, fill_empty=True)
        true.append(true_error(bin_background(src, by_hand), spec, vr, finite=True))
    chosen = [r["chosen"] for r in table].index(True)
    tutorial = true_error(
        bin_background(src, BinOptions(bins=(10, 20, 20), valid_range=vr, fill_empty=True)),
        spec,
        vr,
        finite=True,
    )
    print(name, info["chosen"], info["how"], "chosen", true[chosen], "best", min(true))
    assert info["gain"] == 1.0 or info["gain_how"] != "given"
    assert true[chosen] <= 1.05 * min(true)
    assert true[chosen] < 0.9 * tutorial
    # the corrected score ranks the candidates as the truth does
    scores = [r["score"] for r in table]
    ranks = np.corrcoef(np.argsort(np.argsort(scores)), np.argsort(np.argsort(true)))[0, 1]
    assert ranks > 0.8


def test_one_se_rule_keeps_the_smoothest_on_sparse_data(tmp_path):
    """At ~0.004 counts per pixel the small candidates cannot be told apart from the best:
    the smoothest of those within one standard error is kept, and the table says so."""
    from dials_mdxbg.binning.phil import BinOptions
    from dials_mdxbg.jobs.bin_background import bin_background

    spec = SweepSpec(**{**TRUTH_SWEEPS["low_counts"], "n_frames": 24, "seed": 7})
    src = _source(tmp_path, spec)
    options = BinOptions(bins=None, auto_frames=(2, 4, 8), auto_pixels=(4, 8, 16, 32))
    info = bin_background(src, options).quality["auto"]
    table = info["candidates"]
    within = [r for r in table if r["within_one_se"]]
    chosen = next(r for r in table if r["chosen"])
    assert chosen in within
    assert smoothness(chosen["bins"]) == max(smoothness(r["bins"]) for r in within)
    lowest = min(table, key=lambda r: r["score"])
    assert lowest["bins"] == info["best"]
    assert info["distinguishable"] == (len(within) == 1)
    if not info["distinguishable"]:
        assert "one standard error" in info["how"]
    for r in table:  # the contract of quality["auto"]
        assert {"bins", "chosen", "score", "score_se", "score_percent", "empty_bins"} <= r.keys()
        assert {"filled_bins", "nan_pixels"} <= r.keys() and r["nan_pixels"] == 0


def _frames(rng, n, err, noise):
    """Per-frame sums of a map with squared error ``err`` per pixel, noisy."""
    out = np.zeros((n, N_FRAME))
    out[:, 5] = 1000.0
    out[:, 2] = 1000.0 * 10.0
    out[:, 0] = 1000.0 * (err + rng.normal(0, noise, n))
    return out


def test_one_se_rule_and_paired_difference():
    """Pure: a clearly better candidate is chosen alone; one within the noise yields to a
    smoother one; frames paired cancel their common noise."""
    rng = np.random.default_rng(3)
    t = np.ones(30)
    common = rng.normal(0, 5.0, 30)
    a = _frames(rng, 30, 1.0, 0.01)
    b = _frames(rng, 30, 1.5, 0.01)
    a[:, 0] += 1000 * common
    b[:, 0] += 1000 * common  # common noise: the unpaired SE is large, the paired one not
    d, se = paired_difference(b, a, t)
    assert d == pytest.approx(0.5, abs=0.02) and se < 0.01
    assert corrected_score(a, t)["score_se"] > 10 * se
    cands = [(2, 4, 4), (4, 8, 8)]
    scores = [corrected_score(f, t)["score"] for f in (a, b)]
    choice = one_se_choice(cands, [a, b], scores, t, 1.0)
    assert choice.index == 0 and choice.distinguishable and choice.how == "lowest score"
    c = a.copy()
    c[:, 0] += 1000 * rng.normal(0, 1e-4, 30) + 1000 * 1e-5  # within noise of a, smoother
    scores = [corrected_score(f, t)["score"] for f in (a, c)]
    choice = one_se_choice(cands, [a, c], scores, t, 1.0)
    assert choice.index == 1 and not choice.distinguishable
    assert "one standard error" in choice.how


def test_corrected_score_terms():
    """The Poisson term and the variance terms scale with the gain; counts^2 via exposure."""
    f = np.zeros((4, N_FRAME))
    f[:, 0], f[:, 1], f[:, 2], f[:, 3], f[:, 4], f[:, 5] = 50.0, 20.0, 40.0, 8.0, 3.0, 10.0
    t = np.full(4, 2.0)
    s1 = corrected_score(f, t, 1.0)
    s2 = corrected_score(f, t, 3.0)
    assert s1["score"] == pytest.approx(4 * (50 - 20 - 8 + 3) / 10)
    assert s2["score"] == pytest.approx(4 * (50 - 3 * (20 + 8 - 3)) / 10)
    assert s1["mean_count"] == pytest.approx(40 * 2 / 10)
    assert np.isnan(s2["score_percent"])  # negative score


def test_prediction_variance_is_brute_force():
    """sum over pixels of sum_corners w^2 V from the cell moments = pixel by pixel."""
    from dials_mdxbg.binning.stencil import CellGrid
    from dials_mdxbg.native.moment_kernels import cell_moments_reference

    rng = np.random.default_rng(0)
    ny, nx = 23, 31
    grid = CellGrid.make(ny, nx, np.array([2.5, 9.0, 16.5]), np.array([3.0, 12.0, 21.0, 28.0]))
    counts = rng.poisson(5.0, (ny, nx)).astype(np.int32)
    valid = rng.random((ny, nx)) > 0.2
    m = cell_moments_reference(counts, valid, grid)
    var = rng.random(grid.shape)
    got = prediction_variance(corner_weights(m, grid.cells), var)
    want = 0.0
    for y in range(ny):
        for x in range(nx):
            if not valid[y, x]:
                continue
            cy, u, cx, w = grid.y_cell[y], grid.y_w[y], grid.x_cell[x], grid.x_w[x]
            for i, wy in ((0, 1 - u), (1, u)):
                for j, wx in ((0, 1 - w), (1, w)):
                    want += (wy * wx) ** 2 * var[cy + i, cx + j]
    assert got == pytest.approx(want, rel=1e-12)


def test_gain_rule():
    assert is_photon_counter("SENSOR_PAD") and is_photon_counter("SENSOR_CCD") is False
    assert is_photon_counter(None) is None
    assert choose_gain(None, True, 3.0)[0] == 1.0
    assert choose_gain(None, False, 3.0)[0] == 3.0
    assert choose_gain(2.5, True, 3.0) == (2.5, "given")
    assert choose_gain(None, None, None)[0] == 1.0
    # a median of chi2(7)/7 (8 values a bin) is 0.9066: the estimate is divided by it
    assert choose_gain(None, False, 0.9066, 8)[0] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("factor", [1, 3])
def test_gain_estimated_from_an_integrating_detectors_counts(tmp_path, factor):
    """A series whose counts are 3x photons (as a CCD's): gain ~3, the score's Poisson
    term then holds (an unknown detector: the series read in-process has no sensor type)."""
    import h5py

    from conftest import run
    from dials_mdxbg.binning.phil import BinOptions
    from dials_mdxbg.jobs.bin_background import BinSource, bin_background
    from dials_mdxbg.testing.pilatus import make_background_sweep

    spec = SweepSpec(n_frames=8, modules=(1, 1), background=50.0, n_hot=0, seed=9)
    expt = make_background_sweep(tmp_path, spec)
    run(["dials.mdx_import", expt, "output.data=series.nxs"], cwd=tmp_path)
    with h5py.File(tmp_path / "series.nxs", "r+") as f:
        data = f["entry/image_series/data"]
        a = data[()]
        data[...] = np.where(a >= 0, a * factor, a)
    options = BinOptions(bins=None, auto_frames=(2, 4), auto_pixels=(2, 4, 8))
    info = bin_background(BinSource.from_series(tmp_path / "series.nxs"), options).quality["auto"]
    assert "median dispersion" in info["gain_how"]
    assert info["gain"] == pytest.approx(factor, rel=0.1)
    # with the gain right, the best corrected score sits near zero noise-wise:
    # its Poisson term is removed, not 3x under-removed
    best = min(r["score"] for r in info["candidates"])
    mean = spec.background * factor * spec.exposure_time
    assert best < 0.05 * mean * factor


def test_memory_budget_leaves_out_the_finest_pixel_sizes():
    from dials_mdxbg.binning.auto import candidate_bins, candidate_bytes, within_memory

    cands = candidate_bins(50, [2, 4, 8], [2, 4, 8, 16])
    sizes = candidate_bytes((2527, 2463), cands, 4, 1)
    assert sizes[2] > 3 * sizes[4] > 9 * sizes[8]  # ~ bins per plane
    budget = (sizes[16] + sizes[8] + sizes[4]) / 1e6
    kept, dropped = within_memory((2527, 2463), cands, 4, 1, budget)
    assert dropped == [2] and {c[1] for c in kept} == {4, 8, 16} and len(kept) == 9
    kept, dropped = within_memory((2527, 2463), cands, 4, 1, 1e-3)
    assert {c[1] for c in kept} == {16} and dropped == [2, 4, 8]  # the coarsest stays
    assert within_memory((195, 487), cands, 4, 1, 1000)[1] == []
