"""Map quality: NaN poisoning as mdx2 sees it, fill_empty, dispersion, held-out error, bins=auto.

mdx2's own ``interp3`` (what ``mdx2.correct --background`` calls) is the oracle
for every claim about interpolation; the synthetic sweeps' noise-free
background (``expected_counts``) is the oracle for the map's true error.
"""

from __future__ import annotations

import functools
import json
import pickle

import h5py
import numpy as np
import pytest

from conftest import bin_map, read_binned, run
from dials_mdxbg.binning import quality, stencil
from dials_mdxbg.binning.auto import MultiBinner, candidate_bins
from dials_mdxbg.binning.blocks import block_sums, run_blocks
from dials_mdxbg.binning.fill import fill_empty
from dials_mdxbg.binning.grid import BinGrid, axis_bin_means
from dials_mdxbg.binning.parity import ParityGrid, merge_parities
from dials_mdxbg.errors import InputError
from dials_mdxbg.native import moment_kernels
from dials_mdxbg.testing.pilatus import SweepSpec, make_background_sweep
from dials_mdxbg.testing.truth import TRUTH_SWEEPS
from truth_error import true_error

mdx2_utils = pytest.importorskip("mdx2.utils")
interp3 = mdx2_utils.interp3


def _case(seed, nf=9, ny=61, nx=47, bins=(3, 7, 5), nan_frac=0.15):
    rng = np.random.default_rng(seed)
    phi = 10 + 0.5 * np.linspace(0.5, nf - 0.5, nf)
    iy, ix = np.arange(ny, dtype=float), np.arange(nx, dtype=float)
    pc = axis_bin_means(phi, bins[0])
    yc = axis_bin_means(iy, bins[1])
    xc = axis_bin_means(ix, bins[2])
    sig = rng.uniform(5, 20, (len(pc), len(yc), len(xc)))
    sig[rng.random(sig.shape) < nan_frac] = np.nan
    return phi, iy, ix, pc, yc, xc, sig, rng


def _mdx2_background(pc, yc, xc, sig, phi, ny, nx):
    yy, xx = np.meshgrid(np.arange(ny, dtype=float), np.arange(nx, dtype=float), indexing="ij")
    return interp3(pc, yc, xc, sig, np.full(yy.size, phi), yy.ravel(), xx.ravel()).reshape(ny, nx)


CASES = [
    {"seed": 0},
    {"seed": 1, "bins": (2, 4, 4)},  # integer and half-integer centres
    {"seed": 2, "nf": 4, "bins": (2, 61, 5)},  # one bin along y
    {"seed": 3, "nf": 5, "ny": 20, "bins": (3, 10, 47)},  # two phi bins, one along x
    {"seed": 4, "nf": 9, "bins": (9, 7, 5)},  # one phi bin
]


@pytest.mark.parametrize("case", CASES)
def test_nan_stencil_is_mdx2s(case):
    """A pixel's background is NaN exactly when a corner of its cell is NaN (every pixel)."""
    phi, iy, ix, pc, yc, xc, sig, _ = _case(**case)
    yc_, _ = stencil.axis_cells(iy, yc)
    xc_, _ = stencil.axis_cells(ix, xc)
    pcell, _ = stencil.axis_cells(phi, pc)
    for k, p in enumerate(phi):
        b = _mdx2_background(pc, yc, xc, sig, p, len(iy), len(ix))
        mine = stencil.poisoned_cells(sig, int(pcell[k]))[yc_][:, xc_]
        assert (mine == np.isnan(b)).all()


@pytest.mark.parametrize("case", CASES[:4])
@pytest.mark.parametrize("valid_range", [None, (0, 40)])
def test_score_is_the_squared_error_of_interp3(case, valid_range):
    """Cell moments (C and numpy) + score = sums over pixels with mdx2's interp3 predictions."""
    phi, iy, ix, pc, yc, xc, sig, rng = _case(**case, nan_frac=0.05)
    grid = stencil.CellGrid.make(len(iy), len(ix), yc, xc)
    runs = grid.runs
    for a, b, cell, alpha, beta in zip(
        runs.edges[:-1], runs.edges[1:], runs.cell, runs.alpha, runs.beta
    ):
        assert (grid.x_cell[a:b] == cell).all()
        np.testing.assert_allclose(alpha + beta * np.arange(b - a), grid.x_w[a:b], atol=1e-12)
    for k in (0, len(phi) - 1):
        counts = rng.poisson(12, (len(iy), len(ix))).astype(np.int32)
        counts[rng.random(counts.shape) < 0.1] = -1
        keep = rng.random(counts.shape) > 0.05
        valid = (counts != -1) & keep
        if valid_range:
            valid &= (counts >= valid_range[0]) & (counts <= valid_range[1])
        t = 0.7 + 0.1 * k
        fast = np.zeros((*grid.shape, moment_kernels.N_MOMENTS))
        half = len(iy) // 2  # two row blocks add up
        moment_kernels.cell_moments(counts[:half], [grid], [fast], valid_range, keep[:half], 0)
        moment_kernels.cell_moments(counts[half:], [grid], [fast], valid_range, keep[half:], half)
        ref = moment_kernels.cell_moments_reference(counts, valid, grid)
        np.testing.assert_allclose(fast, ref, rtol=1e-10, atol=1e-8)
        cell, w = stencil.axis_cells(phi[k : k + 1], pc)
        j, w = int(cell[0]), float(w[0])
        plane = (1 - w) * sig[j] + (w * sig[j + 1] if j + 1 < len(pc) else 0.0)
        got = np.zeros(moment_kernels.N_SCORE)
        moment_kernels.score_cells(fast, plane, grid.cells, t, got)
        expected = moment_kernels.score_cells_reference(ref, plane, grid.cells, t)
        np.testing.assert_allclose(got, expected, 1e-9)
        b = _mdx2_background(pc, yc, xc, sig, phi[k], len(iy), len(ix))
        ok = valid & np.isfinite(b)
        r = counts / t
        assert got[4] == ok.sum() and got[5] == np.count_nonzero(valid & np.isnan(b))
        np.testing.assert_allclose(got[0], ((r - b)[ok] ** 2).sum(), rtol=1e-9)
        np.testing.assert_allclose(got[1], (counts[ok] / t**2).sum(), rtol=1e-12)
        np.testing.assert_allclose(got[3], b[ok].sum(), rtol=1e-9)


def test_fill_empty_rule():
    sig = np.arange(2 * 5 * 6, dtype=float).reshape(2, 5, 6)
    empty = np.zeros(sig.shape, bool)
    empty[0, 1, 1] = True
    filled = fill_empty(sig, empty)
    neighbours = [sig[0, j, i] for j in (0, 1, 2) for i in (0, 1, 2) if (j, i) != (1, 1)]
    assert filled[0, 1, 1] == pytest.approx(np.mean(neighbours))
    assert (filled[~empty] == sig[~empty]).all()
    empty[1] = True  # a whole plane: from the nearest plane with values
    filled = fill_empty(sig, empty)
    assert (filled[1] == filled[0]).all() and np.isfinite(filled).all()
    with pytest.raises(InputError):
        fill_empty(sig, np.ones(sig.shape, bool))


def test_dispersion_from_sums():
    rng = np.random.default_rng(5)
    block = rng.poisson(30, (4, 40, 60)).astype(np.int32)
    block[:, :20, :30] = rng.poisson(5, (4, 20, 30)) * 6  # over-dispersed corner
    grid = BinGrid(block.shape, (2, 20, 30))
    sums = block_sums([(0, 0, lambda: block)], grid)
    vmr = quality.dispersion(sums)
    for k, j, i in np.ndindex(vmr.shape):
        cell = block[2 * k : 2 * k + 2, 20 * j : 20 * j + 20, 30 * i : 30 * i + 30].astype(float)
        assert vmr[k, j, i] == pytest.approx(cell.var(ddof=1) / cell.mean(), rel=1e-10)
    assert vmr[:, 0, 0].min() > 4 and np.median(vmr) < 1.3
    summary = quality.dispersion_summary(vmr, (np.arange(2.0), np.arange(2.0), np.arange(2.0)), 2.0)
    assert summary["worst"][0]["dispersion"] == pytest.approx(np.nanmax(vmr))
    assert summary["fraction_above"] == pytest.approx(np.mean(vmr > 2))


def test_parity_and_fine_sums_are_the_plain_sums():
    """Parity split and the auto fine grid add up to the plain sums, exactly."""
    rng = np.random.default_rng(9)
    block = rng.poisson(20, (11, 57, 83)).astype(np.int32)
    block[rng.random(block.shape) < 0.05] = -1
    tasks = [
        (f, r, lambda f=f, r=r: block[f : f + 4, r : r + 19])
        for f in (0, 4, 8)
        for r in (0, 19, 38)
    ]
    candidates = candidate_bins(11, [2, 3, 5], [7, 10, 20])
    binner = MultiBinner(block.shape, candidates)

    def consume(acc, frame0, row0, b):
        binner.consume(acc, frame0, row0, b, (0, 30), None)

    multi = run_blocks(iter(tasks), consume, binner.zeros, 2)
    for cand, parity in zip(candidates, multi.sums):
        plain = block_sums(iter(tasks), BinGrid(block.shape, cand), (0, 30))
        direct = block_sums(iter(tasks), ParityGrid(block.shape, cand), (0, 30))
        for name in ("total", "count", "total_sq"):
            assert np.array_equal(getattr(parity, name), getattr(direct, name))
            assert np.array_equal(getattr(merge_parities(parity), name), getattr(plain, name))


def test_candidates():
    assert candidate_bins(12, [10, 20], [20]) == [(10, 20, 20)]  # 20 frames: one phi bin
    assert candidate_bins(12, [5], [10, 20]) == [(5, 10, 10), (5, 20, 20)]
    for frames, pixels in (([], [10]), ([5], []), ([20], [10])):
        with pytest.raises(InputError):
            candidate_bins(12, frames, pixels)


# --------------------------------------------------------------------------- whole commands


@pytest.fixture(scope="session")
def beamstop_sweep(tmp_path_factory):
    """One-module sweep and a DIALS mask of a beamstop disc with its arm."""
    directory = tmp_path_factory.mktemp("beamstop")
    spec = SweepSpec(n_frames=8, modules=(1, 1), seed=31, n_hot=0, exposure_time=0.5)
    expt = make_background_sweep(directory, spec)
    ny, nx = spec.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    stop = ((yy - 97) ** 2 + (xx - 243) ** 2 < 30**2) | ((abs(yy - 97) < 8) & (xx > 243))
    from dials.array_family import flex

    with open(directory / "beamstop.mask", "wb") as f:
        pickle.dump((flex.bool(~stop),), f)  # DIALS masks: True = good
    return expt, directory / "beamstop.mask", spec


def _valid_frames(series_path, valid_range):
    with h5py.File(series_path, "r") as f:
        data = f["entry/image_series/data"][()]
    return (data >= valid_range[0]) & (data <= valid_range[1])


def _nan_pixels_by_mdx2(binned_path, series_path, valid_range):
    m = read_binned(binned_path)
    with h5py.File(series_path, "r") as f:
        phi = f["entry/image_series/phi"][()]
    valid = _valid_frames(series_path, valid_range)
    n = 0
    for k in range(valid.shape[0]):
        b = _mdx2_background(m["phi"], m["iy"], m["ix"], m["signal"], phi[k], *valid.shape[1:])
        n += int(np.count_nonzero(np.isnan(b) & valid[k]))
    return n


def test_beamstop_nan_pixels_and_fill(beamstop_sweep, tmp_path):
    """Exact NaN-pixel counts (= mdx2's interp3 over every valid pixel); fill_empty removes them."""
    expt, mask, spec = beamstop_sweep
    vr = (0, 1000)
    run(["dials.mdx_import", expt, f"mask={mask}", "output.data=series.nxs"], cwd=tmp_path)
    common = ["bins=2,10,10", "valid_range=0,1000", "diagnostics=True"]
    bin_map(tmp_path, expt, "plain", f"frames.mask={mask}", *common, "output.json=plain.json")
    plain = json.loads((tmp_path / "plain.json").read_text())["runs"][0]
    assert plain["empty_bins"] > 0
    expected = _nan_pixels_by_mdx2(tmp_path / "plain.nxs", tmp_path / "series.nxs", vr)
    assert expected > 0
    assert plain["quality"]["nan_pixels"] == {"count": expected, "exact": True}
    assert sum(r["nan_pixels"] for r in plain["quality"]["per_phi_bin"]) == expected
    assert plain["quality"]["heldout"]["model_error_percent"] > 0

    bin_map(tmp_path, "series.nxs", "filled", *common, "fill_empty=True", "output.json=filled.json")
    filled = json.loads((tmp_path / "filled.json").read_text())["runs"][0]
    assert filled["quality"]["nan_pixels"] == {"count": 0, "exact": True}
    a, b = read_binned(tmp_path / "plain.nxs"), read_binned(tmp_path / "filled.nxs")
    assert np.array_equal(b["filled"].astype(bool), a["pixel_count"] == 0)
    assert np.array_equal(a["pixel_count"], b["pixel_count"])  # filled bins keep count 0
    ok = a["pixel_count"] > 0
    assert np.array_equal(a["signal"][ok], b["signal"][ok])
    # mdx2's own interpolation is finite at every pixel of every frame
    with h5py.File(tmp_path / "series.nxs", "r") as f:
        phi = f["entry/image_series/phi"][()]
    ny, nx = spec.shape
    for p in phi:
        assert np.isfinite(
            _mdx2_background(b["phi"], b["iy"], b["ix"], b["signal"], p, ny, nx)
        ).all()
    assert plain["quality"]["heldout"]["pixels"] + expected == int(
        _valid_frames(tmp_path / "series.nxs", vr).sum()
    )


def test_paths_agree_and_default_is_unchanged(beamstop_sweep, tmp_path):
    """diagnostics=True: same map as without; one-step and image series give the same figures."""
    expt, _, _ = beamstop_sweep
    run(["dials.mdx_import", expt, "output.data=series.nxs"], cwd=tmp_path)
    base = ["bins=3,20,20", "valid_range=0,1000"]
    bin_map(tmp_path, "series.nxs", "plain", *base)
    for name, src in (("file", "series.nxs"), ("frames", expt)):
        bin_map(tmp_path, src, name, *base, "diagnostics=True", f"output.json={name}.json")
    plain, one, two = (read_binned(tmp_path / f"{n}.nxs") for n in ("plain", "file", "frames"))
    for key in ("signal", "phi", "iy", "ix", "errors", "pixel_count", "dispersion"):
        assert np.array_equal(plain[key], one[key], equal_nan=True)
        assert np.array_equal(plain[key], two[key], equal_nan=True)
    q1 = json.loads((tmp_path / "file.json").read_text())["runs"][0]["quality"]
    q2 = json.loads((tmp_path / "frames.json").read_text())["runs"][0]["quality"]
    assert q1["heldout"]["pixels"] == q2["heldout"]["pixels"]
    assert q1["heldout"]["model_error_sq"] == pytest.approx(q2["heldout"]["model_error_sq"], 1e-12)
    assert q1["dispersion"] == q2["dispersion"]
    # mdx2 and NeXpy read the map with the new datasets beside theirs
    from mdx2.io import loadobj
    from nexusformat.nexus import nxload

    bkg = loadobj(str(tmp_path / "file.nxs"), "binned_image_series")
    value = bkg.interpolate(np.array([6.0]), np.array([100.0]), np.array([200.0]))
    assert np.isfinite(value).all()
    tree = nxload(str(tmp_path / "file.nxs"))
    assert tree["entry/binned_image_series"].nxsignal.nxname == "signal"
    assert "dispersion" in tree["entry/binned_image_series"]


def test_single_phi_bin_warns_and_mdx2_fails(beamstop_sweep, tmp_path):
    expt, _, _ = beamstop_sweep
    proc = run(
        [
            "dials.mdx_bin_background",
            expt,
            "bins=10,20,20",
            "output.plot=None",
            "output.binned=one.nxs",
        ],
        cwd=tmp_path,
    )
    assert "single phi bin" in proc.stdout + proc.stderr
    from mdx2.io import loadobj

    bkg = loadobj(str(tmp_path / "one.nxs"), "binned_image_series")
    with pytest.raises(AttributeError):  # what mdx2.correct would hit
        bkg.interpolate(np.array([1.0]), np.array([10.0]), np.array([10.0]))


def test_auto_chosen_map_is_bins_by_hand(beamstop_sweep, tmp_path):
    expt, mask, _ = beamstop_sweep
    run(["dials.mdx_import", expt, "output.data=series.nxs"], cwd=tmp_path)
    auto = ["bins=auto", "auto.frames=2,4", "auto.pixels=10,20,40", "valid_range=0,1000"]
    bin_map(tmp_path, "series.nxs", "auto", *auto, "output.json=auto.json", "mp.nproc=2")
    summary = json.loads((tmp_path / "auto.json").read_text())["runs"][0]
    table = summary["bins"]["candidates"]
    assert len(table) == 6 and sum(r["chosen"] for r in table) == 1
    chosen = summary["bins"]["chosen"]
    row = next(r for r in table if r["chosen"])
    assert row["bins"] == chosen and row["within_one_se"] and summary["bins"]["how"] != "given"
    assert summary["map_shape"][0] == -(-8 // chosen[0])  # the map has the chosen bins
    # bins=auto fills its map: equal to the chosen bins with fill_empty by hand
    by_hand = "bins=" + ",".join(map(str, chosen))
    bin_map(tmp_path, "series.nxs", "hand", by_hand, "valid_range=0,1000", "fill_empty=True")
    a, b = read_binned(tmp_path / "auto.nxs"), read_binned(tmp_path / "hand.nxs")
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key], equal_nan=True), key


@pytest.mark.parametrize(
    "args, message",
    [
        (["bins=auto", "auto.frames=None"], "auto.frames"),
        (["bins=auto", "auto.frames=50"], "two phi bins"),
        (["bins=abc"], "bins must be"),
        (["bins=2,20,20", "fill_empty=True", "valid_range=5000,6000"], "every bin"),
    ],
)
def test_bad_values_one_line(beamstop_sweep, tmp_path, args, message):
    expt, _, _ = beamstop_sweep
    proc = run(
        ["dials.mdx_bin_background", expt, *args, "output.binned=x.nxs"], cwd=tmp_path, check=False
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.nxs").exists()


def test_geometry_profile_and_mismatch(beamstop_sweep, sweep, tmp_path):
    expt, _, spec = beamstop_sweep
    run(["dials.mdx_import", expt, "output.data=series.nxs"], cwd=tmp_path)
    run(
        [
            "dials.mdx_bin_background",
            "series.nxs",
            "bins=2,20,20",
            "output.plot=None",
            "output.profile=profile.png",
            "output.json=p.json",
        ],
        cwd=tmp_path,
    )
    assert (tmp_path / "profile.png").stat().st_size > 0
    prof = json.loads((tmp_path / "p.json").read_text())["runs"][0]["radial_profile"]
    assert len(prof["per_phi_bin"]) == 4 and prof["wavelength"] == pytest.approx(spec.wavelength)
    # shells ordered in resolution; the dxtbx two-theta of a bin centre is used
    d_min = [s["d_min"] for s in prof["shells"]]
    assert d_min == sorted(d_min, reverse=True)
    proc = run(
        ["dials.mdx_bin_background", "series.nxs", f"geometry={sweep}", "output.binned=x.nxs"],
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode != 0 and "pixels" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert not (tmp_path / "x.nxs").exists()


# --------------------------------------------------------------------------- against the truth


@pytest.mark.parametrize("name", sorted(TRUTH_SWEEPS))
def test_auto_beats_the_tutorial_on_the_true_error(name, tmp_path):
    from dxtbx.model.experiment_list import ExperimentListFactory

    from dials_mdxbg.binning.phil import BinOptions
    from dials_mdxbg.jobs.bin_background import BinSource, bin_background

    spec = SweepSpec(**TRUTH_SWEEPS[name])
    expt = make_background_sweep(tmp_path, spec)
    experiments = ExperimentListFactory.from_json_file(str(expt))
    src = BinSource.from_experiments(experiments, {"imageset": None})
    vr = (0, 100000)
    frames = [2, 5] if spec.n_frames < 20 else [5, 10, 20]
    auto = bin_background(
        src, BinOptions(bins=None, valid_range=vr, auto_frames=frames, auto_pixels=(5, 10, 20, 40))
    )
    table = auto.quality["auto"]["candidates"]
    heldout, true = [], []
    for row in table:
        m = bin_background(src, BinOptions(bins=tuple(row["bins"]), valid_range=vr))
        heldout.append(row["model_error_sq"])
        true.append(true_error(m, spec, vr))
    tutorial = bin_background(src, BinOptions(bins=(10, 20, 20), valid_range=vr))
    chosen = true[[r["chosen"] for r in table].index(True)]
    tutorial_true = true_error(tutorial, spec, vr)
    print(name, "chosen", chosen, "tutorial", tutorial_true, "best", min(true))
    assert chosen < 0.9 * tutorial_true
    assert chosen <= 1.05 * min(true)
    ranks = np.corrcoef(np.argsort(np.argsort(heldout)), np.argsort(np.argsort(true)))[0, 1]
    assert ranks > 0.75


# --------------------------------------------------------------------------- streamed bins=auto


def _auto_both(src, options, nproc, monkeypatch, window):
    """bins=auto streamed (windows of ``window`` frames) and held in memory."""
    import dials_mdxbg.jobs.bin_background as job
    from auto_reference import bin_auto_in_memory
    from dials_mdxbg.binning import search

    monkeypatch.setattr(search, "AUTO_WINDOW_FRAMES", window)
    streamed = job.bin_background(src, options, nproc)
    with src.open() as opened:
        rebin = functools.partial(job._bin_chosen, opened, options, nproc=nproc)
        held = bin_auto_in_memory(opened, options, nproc, rebin)
    return streamed, held


def _assert_same_auto(streamed, held):
    a, b = streamed.quality, held.quality
    assert a["auto"]["chosen"] == b["auto"]["chosen"]
    for ra, rb in zip(a["auto"]["candidates"], b["auto"]["candidates"], strict=True):
        assert ra["bins"] == rb["bins"] and ra["chosen"] == rb["chosen"]
        for key in ("empty_bins", "nan_pixels", "dispersion_fraction_above"):
            assert ra[key] == rb[key], (ra["bins"], key)
        keys = ("model_error_sq", "model_error_sq_se", "model_error_percent", "score", "score_se")
        for key in keys:
            assert ra[key] == pytest.approx(rb[key], rel=1e-9, abs=1e-12), (ra["bins"], key)
        for key in ("dispersion_median", "dispersion_p95"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-12), (ra["bins"], key)
    assert a["nan_pixels"] == b["nan_pixels"]
    for pa, pb in zip(a["per_phi_bin"], b["per_phi_bin"], strict=True):
        assert pa["pixels"] == pb["pixels"] and pa["nan_pixels"] == pb["nan_pixels"]
        assert pa.get("model_error_sq") == pytest.approx(pb.get("model_error_sq"), rel=1e-9)
    for name in ("phi", "iy", "ix", "signal", "errors", "count", "dispersion"):
        np.testing.assert_array_equal(getattr(streamed, name), getattr(held, name), err_msg=name)
    assert (streamed.filled is None) == (held.filled is None)
    if held.filled is not None:
        np.testing.assert_array_equal(streamed.filled, held.filled)


@pytest.mark.parametrize(
    "fill, nproc, window, frames",
    [(False, 1, 1, (1, 2, 3)), (True, 2, 3, (2, 3, 5)), (False, 2, 10, (2, 4))],
)
def test_streamed_auto_equals_in_memory_beamstop(
    beamstop_sweep, monkeypatch, fill, nproc, window, frames
):
    """Windows of 1, 3, 10 frames, with a beamstop (empty bins, NaN pixels) and fill_empty."""
    from dxtbx.model.experiment_list import ExperimentListFactory

    from dials_mdxbg.binning.phil import BinOptions
    from dials_mdxbg.jobs.bin_background import BinSource

    expt, mask, _ = beamstop_sweep
    experiments = ExperimentListFactory.from_json_file(str(expt))
    src = BinSource.from_experiments(experiments, {"imageset": None, "mask": str(mask)})
    options = BinOptions(
        bins=None,
        valid_range=(0, 1000),
        auto_frames=frames,
        auto_pixels=(5, 10, 20, 40),
        fill_empty=fill,
    )
    _assert_same_auto(*_auto_both(src, options, nproc, monkeypatch, window))


def test_streamed_auto_equals_in_memory_series(sweep, tmp_path, monkeypatch):
    """From an image series (chunked frames), with the default candidates."""
    from dials_mdxbg.binning.phil import BinOptions
    from dials_mdxbg.jobs.bin_background import BinSource

    run(["dials.mdx_import", sweep, "output.data=series.nxs"], cwd=tmp_path)
    src = BinSource.from_series(tmp_path / "series.nxs")
    options = BinOptions(bins=None, valid_range=(0, 200))
    streamed, held = _auto_both(src, options, 2, monkeypatch, 4)
    _assert_same_auto(streamed, held)


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 1001])
def test_file_quantiles_are_numpys(tmp_path, n):
    """Median and 95th percentile selected from a file in small chunks = numpy's."""
    from dials_mdxbg.binning.stream import file_quantiles

    rng = np.random.default_rng(n)
    values = np.concatenate([rng.gamma(2.0, 0.5, n - n // 3), np.full(n // 3, 1.0)])
    values[: n // 10] *= -1e-3  # a few negative (rounding) values
    rng.shuffle(values)
    with open(tmp_path / "v.bin", "w+b") as f:
        f.write(values.tobytes())
        median, p95 = file_quantiles(f, values.size, chunk=97)
    assert median == np.median(values)
    assert p95 == pytest.approx(np.percentile(values, 95), rel=1e-15, abs=1e-300)
