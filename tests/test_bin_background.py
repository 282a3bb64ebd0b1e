"""dials.mdx_bin_background against mdx2.bin_image_series, and as mdx2.correct uses it."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from dxtbx.model.experiment_list import ExperimentListFactory

from conftest import bin_map, read_binned, run
from dials_mdxbg.binning.blocks import bin_blocks
from dials_mdxbg.binning.phil import BinOptions
from dials_mdxbg.jobs.bin_background import BinSource, bin_background
from dials_mdxbg.output.binned import write_binned
from dials_mdxbg.series.reader import ImageSeriesReader, series_tasks


def assert_same_map(ours: dict, theirs: dict) -> None:
    a, b = ours["signal"], theirs["signal"]
    assert a.shape == b.shape and a.dtype == b.dtype == np.float64
    assert np.array_equal(np.isnan(a), np.isnan(b))
    finite = np.isfinite(b)
    rel = np.abs(a[finite] - b[finite]) / np.abs(b[finite]).clip(1e-300)
    assert rel.max(initial=0) < 1e-12
    for axis in ("phi", "iy", "ix"):
        assert np.array_equal(ours[axis], theirs[axis]), axis


@pytest.mark.parametrize(
    "bins, valid",
    [
        ((10, 20, 20), (0, 200)),  # the tutorial: 12 frames -> uneven 6+6 phi split
        ((5, 33, 47), None),  # uneven everywhere, no valid range
        ((12, 407, 1475), (18, 22)),  # one bin, narrow range
        ((1, 6, 500), (0, 5)),  # gap rows -> empty bins (NaN)
    ],
)
def test_equal_to_mdx2(sweep, mdx2_import, our_import, tmp_path, bins, valid):
    vr = ["--valid_range", *map(str, valid)] if valid else []
    run(
        [
            "mdx2.bin_image_series",
            mdx2_import,
            *map(str, bins),
            *vr,
            "--outfile",
            tmp_path / "mdx2.nxs",
        ],
        cwd=mdx2_import.parent,
    )
    theirs = read_binned(tmp_path / "mdx2.nxs")
    # Our image series, mdx2's (virtual dataset in a datastore), and one step from
    # frames, through the public function (the command line is tested elsewhere).
    options = BinOptions(bins, valid)
    experiments = ExperimentListFactory.from_json_file(str(sweep))
    sources = {
        "a": (BinSource.from_series(our_import), 1),
        "b": (BinSource.from_series(mdx2_import), 2),
        "c": (BinSource.from_experiments(experiments), 1),
    }
    for name, (source, nproc) in sources.items():
        binned = bin_background(source, options, nproc=nproc)
        write_binned(
            tmp_path / f"{name}.nxs",
            (binned.phi, binned.iy, binned.ix),
            binned.signal,
            binned.extra_datasets(),
        )
    for name in ("a", "b", "c"):
        assert_same_map(read_binned(tmp_path / f"{name}.nxs"), theirs)
    if valid == (0, 5):
        assert np.isnan(theirs["signal"]).any()


def test_one_step_equals_two_step_bit_for_bit(sweep, our_import):
    with ImageSeriesReader(our_import) as reader:
        two = bin_blocks(series_tasks(reader), reader.axes, BinOptions((4, 20, 20), (0, 200)))
    from dials_mdxbg.frames.source import frame_source, frame_tasks

    source = frame_source(ExperimentListFactory.from_json_file(str(sweep)))
    one = bin_blocks(frame_tasks(source), source.axes, BinOptions((4, 20, 20), (0, 200)), nproc=2)
    for key in ("signal", "errors", "count", "phi", "iy", "ix"):
        assert np.array_equal(getattr(one, key), getattr(two, key), equal_nan=True), key


def test_mdx2_consumes_the_map_like_correct(our_import, tmp_path):
    """mdx2.correct does loadobj(...,'binned_image_series').interpolate(phi, iy, ix)."""
    from mdx2.io import loadobj

    run(
        [
            "dials.mdx_bin_background",
            our_import,
            "bins=4,20,20",
            "valid_range=0,200",
            "output.binned=bkg.nxs",
            "output.plot=None",
        ],
        cwd=tmp_path,
    )
    grid = loadobj(str(tmp_path / "bkg.nxs"), "binned_image_series")
    assert type(grid).__name__ == "GridData"
    phi, iy, ix = grid.axes
    # At bin centres interpolation returns the bin values; between them, a blend.
    at = grid.interpolate(phi[[0, 1]], iy[[2, 3]], ix[[4, 5]])
    np.testing.assert_allclose(at, grid.data[[0, 1], [2, 3], [4, 5]], rtol=1e-12)
    mid = grid.interpolate(np.array([phi[0]]), np.array([(iy[2] + iy[3]) / 2]), np.array([ix[4]]))
    lo, hi = sorted([grid.data[0, 2, 4], grid.data[0, 3, 4]])
    assert lo <= mid[0] <= hi
    # Per-pixel count rates of the kind mdx2.correct subtracts: finite, near 20/0.5 s.
    rng = np.random.default_rng(0)
    rates = grid.interpolate(
        rng.uniform(phi[0], phi[-1], 500), rng.uniform(30, 180, 500), rng.uniform(30, 450, 500)
    )
    assert np.isfinite(rates).all() and 10 < np.median(rates) < 80


def test_extras_plot_json_and_preset(sweep, our_import, tmp_path):
    preset = Path(__file__).parents[1] / "phil" / "insulin_background.phil"
    proc = run(["dials.mdx_bin_background", sweep, preset, "output.json=s.json"], cwd=tmp_path)
    assert "empty" in proc.stdout and "phi" in proc.stdout  # the per-phi table
    out = read_binned(tmp_path / "bkg_data_binned.nxs")
    assert out["signal"].shape == (2, 21, 74)
    assert out["pixel_count"].dtype == np.int32 and out["pixel_count"].max() <= 10 * 20 * 20
    assert np.all(out["errors"][np.isfinite(out["errors"])] > 0)
    png = tmp_path / "bkg_data_binned.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    summary = json.loads((tmp_path / "s.json").read_text())["runs"][0]
    assert summary["bins"]["chosen"] == [10, 20, 20] and summary["bins"]["how"] == "given"
    assert summary["valid_range"] == [0, 200]
    assert len(summary["per_phi_bin"]) == 2 and summary["input_kind"] == "experiments"
    assert summary["pixel_values_used"] == int(out["pixel_count"].sum())
    assert summary["pixel_values_total"] == 12 * 407 * 1475 > summary["pixel_values_used"]
    with h5py.File(tmp_path / "bkg_data_binned.nxs") as f:
        g = f["entry/binned_image_series"]
        assert g.attrs["mdx2_module"] == "mdx2.geometry" and g.attrs["mdx2_class"] == "GridData"
        assert g.attrs["signal"] == "signal" and list(g.attrs["axes"]) == ["phi", "iy", "ix"]
        assert "valid_range = 0 200" in f["entry/dials_mdxbg/phil"][()].decode()


def test_a_series_bins_after_its_images_are_moved(tmp_path):
    """The series replaces the images: its map and radial profile need only the models it
    keeps (the profile's geometry was loaded with format checks, which opened image 1)."""
    from dials_mdxbg.testing.pilatus import SweepSpec, make_background_sweep

    make_background_sweep(tmp_path / "sw", SweepSpec(n_frames=4, modules=(1, 1)))
    run(["dials.mdx_import", "sw/background.expt", "output.data=s.nxs"], cwd=tmp_path)
    kept = read_binned(bin_map(tmp_path, "s.nxs", "before"))
    (tmp_path / "sw").rename(tmp_path / "archived")
    run(["dials.mdx_bin_background", "s.nxs", "output.binned=after.nxs"], cwd=tmp_path)
    after = read_binned(tmp_path / "after.nxs")
    assert all(np.array_equal(kept[k], after[k], equal_nan=True) for k in ("signal", "errors"))
    profile = json.loads((tmp_path / "after.json").read_text())["runs"][0]["radial_profile"]
    assert profile and profile["shells"]


def test_mdx2_mask_file(our_import, mdx2_import, tmp_path):
    from mdx2.geometry import GridData
    from mdx2.io import saveobj

    def save_mask(mask, name):  # as mdx2.mask_peaks writes it
        axes = [np.arange(n, dtype=float) for n in mask.shape]
        saveobj(
            GridData(axes, mask, axes_names=["phi", "iy", "ix"]), str(tmp_path / name), name="mask"
        )

    mask = np.zeros((12, 407, 1475), bool)
    mask[:, 50:120, 200:400] = True
    save_mask(mask, "mask.nxs")
    run(
        [
            "mdx2.bin_image_series",
            mdx2_import,
            "4",
            "20",
            "20",
            "--mask",
            tmp_path / "mask.nxs",
            "--outfile",
            tmp_path / "m.nxs",
        ],
        cwd=mdx2_import.parent,
    )
    # input.mdx2_mask, and mask= its deprecated name: the same map, and a line in the log.
    for name, mask_arg in (("o", "mask=mask.nxs"), ("n", "input.mdx2_mask=mask.nxs")):
        outputs = [f"output.binned={name}.nxs", "output.plot=None", f"output.log={name}.log"]
        cmd = ["dials.mdx_bin_background", our_import, "bins=4,20,20", mask_arg, *outputs]
        run(cmd, cwd=tmp_path)
        assert_same_map(read_binned(tmp_path / f"{name}.nxs"), read_binned(tmp_path / "m.nxs"))
    assert "mask= is deprecated" in (tmp_path / "o.log").read_text()
    assert "deprecated" not in (tmp_path / "n.log").read_text()
    save_mask(np.zeros((3, 407, 1475), bool), "bad.nxs")
    proc = run(
        ["dials.mdx_bin_background", our_import, "mask=bad.nxs", "output.binned=x.nxs"],
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode != 0 and "shape" in proc.stderr
    assert not (tmp_path / "x.nxs").exists()


def test_clipped_mean_rejects_zingers(our_import, tmp_path):
    m = bin_map(tmp_path, our_import, "m", "bins=12,20,20")
    c = bin_map(tmp_path, our_import, "c", "bins=12,20,20", "estimator=clipped_mean")
    mean, clipped = read_binned(m), read_binned(c)
    # Without valid_range the hot pixels (5000 counts) drag a few bins up; clipping fixes them.
    excess = mean["signal"] - clipped["signal"]
    assert np.nanmax(excess) > 10
    assert np.nanmedian(np.abs(excess)) < 0.5
    assert (clipped["pixel_count"] <= mean["pixel_count"]).all()


def test_nexpy_view_of_both_files(our_import, tmp_path):
    """NeXpy opens files through nexusformat: signal, axes and error bars must resolve."""
    from nexusformat.nexus import nxload

    bin_map(tmp_path, our_import, "n", "bins=4,20,20")
    series = nxload(str(our_import))["entry/image_series"]
    assert series.nxsignal.nxname == "data" and series.nxsignal.shape == (12, 407, 1475)
    assert [a.nxname for a in series.nxaxes] == ["phi", "iy", "ix"]
    binned = nxload(str(tmp_path / "n.nxs"))["entry/binned_image_series"]
    assert binned.nxsignal.nxname == "signal"
    assert [a.nxname for a in binned.nxaxes] == ["phi", "iy", "ix"]
    assert binned.nxerrors is not None and binned.nxerrors.shape == binned.nxsignal.shape
    assert "dials.mdx_bin_background" in nxload(str(tmp_path / "n.nxs")).entry.dials_mdxbg.tree
