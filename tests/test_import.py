"""dials.mdx_import against mdx2.import_data, as users run them."""

from __future__ import annotations

import json
import pickle
import shutil

import h5py
import numpy as np
import pytest

from conftest import mdx2_bin, read_binned, read_series, run
from dials_mdxbg.testing.pilatus import SweepSpec, frame_counts, gap_mask


def test_pixels_and_axes_identical_to_mdx2(mdx2_import, our_import):
    ours, theirs = read_series(our_import), read_series(mdx2_import)
    for key in theirs:
        assert ours[key].dtype == theirs[key].dtype, key
        assert np.array_equal(ours[key], theirs[key]), key
    data = ours["data"]
    # The sweep really has what the masking must handle.
    assert (data == -1).any() and (data > 1000).any()


def test_masking_follows_dxtbx(our_import):
    spec = SweepSpec(
        n_frames=12, modules=(3, 2), osc_start=5.0, osc_width=1.0, exposure_time=0.5, seed=3
    )
    data = read_series(our_import)["data"]
    gaps = gap_mask(*spec.shape)
    for k in (0, 11):
        raw = frame_counts(spec, k)
        expected = np.where(gaps | (raw <= -1) | (raw >= spec.count_cutoff), -1, raw)
        assert np.array_equal(data[k], expected)
        assert (raw >= spec.count_cutoff).any()  # overloads present and masked


def test_layout_attributes_and_provenance(our_import):
    with h5py.File(our_import, "r") as f:
        assert f.attrs["mdx2_version"]
        assert f["entry"].attrs["NX_class"] == "NXentry"
        g = f["entry/image_series"]
        assert g.attrs["NX_class"] == "NXdata"
        assert g.attrs["signal"] == "data"
        assert list(g.attrs["axes"]) == ["phi", "iy", "ix"]
        assert g.attrs["mdx2_module"] == "mdx2.data"
        assert g.attrs["mdx2_class"] == "ImageSeries"
        d = g["data"]
        assert d.chunks == (5, 211, 493)
        assert d.compression == "gzip" and d.shuffle
        prov = f["entry/dials_mdxbg"]
        assert "chunks = 5 211 493" in prov["phil"][()].decode()
        versions = json.loads(prov["versions"][()])
        assert {"dials", "dxtbx", "dials_mdxbg"} <= set(versions)
        experiments = json.loads(prov["experiments"][()])
        assert experiments["__id__"] == "ExperimentList"
    summary = json.loads((our_import.parent / "ours.json").read_text())["runs"][0]
    assert summary["frames"] == 12 and summary["shape"] == [12, 407, 1475]
    assert summary["masked_pixels"]["static_per_frame"] == int(gap_mask(407, 1475).sum())


def test_mdx2_loads_and_bins_our_file(our_import, mdx2_import, tmp_path):
    from mdx2.io import loadobj

    series = loadobj(str(our_import), "image_series")
    assert series.shape == (12, 407, 1475)
    for name, path in (("ours", our_import), ("theirs", mdx2_import)):
        mdx2_bin(path, f"{name}_binned.nxs", cwd=path.parent)
        shutil.copy(path.parent / f"{name}_binned.nxs", tmp_path)
    with (
        h5py.File(tmp_path / "ours_binned.nxs") as a,
        h5py.File(tmp_path / "theirs_binned.nxs") as b,
    ):
        x = a["entry/binned_image_series/signal"][()]
        y = b["entry/binned_image_series/signal"][()]
        assert np.array_equal(x, y, equal_nan=True)


def test_nproc_and_default_chunks(sweep, our_import, tmp_path):
    run(
        ["dials.mdx_import", sweep, "output.data=p.nxs", "mp.nproc=2", "compression.level=1"],
        cwd=tmp_path,
    )
    assert np.array_equal(read_series(tmp_path / "p.nxs")["data"], read_series(our_import)["data"])
    with h5py.File(tmp_path / "p.nxs") as f:
        # mdx2's rule for 1 degree frames and a Pilatus: 5 frames, one module + gap.
        assert f["entry/image_series/data"].chunks == (5, 212, 494)


def test_image_range(sweep, our_import, tmp_path):
    run(["dials.mdx_import", sweep, "output.data=r.nxs", "image_range=3,8"], cwd=tmp_path)
    part, whole = read_series(tmp_path / "r.nxs"), read_series(our_import)
    assert np.array_equal(part["data"], whole["data"][2:8])
    assert np.array_equal(part["phi"], whole["phi"][2:8])
    assert np.array_equal(part["exposure_times"], whole["exposure_times"][2:8])


def test_user_mask_matches_mdx2_with_applied_mask(sweep, tmp_path):
    from dials.array_family import flex

    mask = np.ones((407, 1475), bool)
    mask[100:150, 600:700] = False
    mask[300, :] = False
    with open(tmp_path / "pixels.mask", "wb") as fh:
        pickle.dump((flex.bool(mask),), fh)
    run(
        ["dials.mdx_import", sweep, "mask=pixels.mask", "output.data=m.nxs", "chunks=5,211,493"],
        cwd=tmp_path,
    )
    # mdx2 sees a user mask only through the experiment list: apply it there.
    run(
        [
            "dials.apply_mask",
            f"input.experiments={sweep}",
            "input.mask=pixels.mask",
            "output.experiments=masked.expt",
        ],
        cwd=tmp_path,
    )
    run(
        ["mdx2.import_data", "masked.expt", "--outfile", "mm.nxs", "--chunks", "5", "211", "493"],
        cwd=tmp_path,
    )
    ours = read_series(tmp_path / "m.nxs")["data"]
    assert (ours[:, 100:150, 600:700] == -1).all() and (ours[:, 300] == -1).all()
    assert np.array_equal(ours, read_series(tmp_path / "mm.nxs")["data"])
    # The experiment list's own mask is honoured too (as dxtbx does).
    run(["dials.mdx_import", "masked.expt", "output.data=e.nxs"], cwd=tmp_path)
    assert np.array_equal(read_series(tmp_path / "e.nxs")["data"], ours)


def test_images_given_directly(sweep, our_import, tmp_path):
    images = sorted(str(p) for p in sweep.parent.glob("*.cbf"))
    run(["dials.mdx_import", *images, "output.data=i.nxs", "chunks=5,211,493"], cwd=tmp_path)
    assert np.array_equal(read_series(tmp_path / "i.nxs")["data"], read_series(our_import)["data"])


def test_split_layout_moves_and_opens_anywhere(sweep, our_import, tmp_path, monkeypatch):
    from mdx2.io import loadobj

    out = tmp_path / "a" / "split.nxs"
    out.parent.mkdir()
    run(
        [
            "dials.mdx_import",
            sweep,
            f"output.data={out}",
            "output.layout=split",
            "chunks=5,211,493",
        ],
        cwd=tmp_path,
    )
    parts = sorted((tmp_path / "a" / "split_parts").iterdir())
    assert len(parts) == 3
    # Move the set elsewhere and read it from an unrelated working directory.
    moved = tmp_path / "elsewhere"
    shutil.move(str(tmp_path / "a"), moved)
    monkeypatch.chdir(tmp_path)
    expected = read_series(our_import)["data"]
    assert np.array_equal(read_series(moved / "split.nxs")["data"], expected)
    series = loadobj(str(moved / "split.nxs"), "image_series")
    assert np.array_equal(series.data.nxdata, expected)
    # And our binning reads it through the same virtual dataset.
    run(
        [
            "dials.mdx_bin_background",
            moved / "split.nxs",
            "output.binned=b.nxs",
            "output.plot=None",
        ],
        cwd=moved.parent,
    )


@pytest.mark.parametrize("frames", [7])
def test_fine_slicing_chunk_rule(small_sweep, tmp_path, frames):
    run(["dials.mdx_import", small_sweep, "output.data=s.nxs"], cwd=tmp_path)
    run(["mdx2.import_data", small_sweep, "--outfile", "t.nxs"], cwd=tmp_path)
    ours, theirs = read_series(tmp_path / "s.nxs"), read_series(tmp_path / "t.nxs")
    assert np.array_equal(ours["data"], theirs["data"])
    assert np.array_equal(ours["phi"], theirs["phi"])
    with h5py.File(tmp_path / "s.nxs") as f:
        assert f["entry/image_series/data"].chunks[0] == frames


def test_reader_blocks_cover_ours_and_mdx2s_files(our_import, mdx2_import):
    """The in-process reader decodes chunks itself; it must agree with HDF5 on both layouts."""
    from dials_mdxbg.series.reader import ImageSeriesReader

    expected = read_series(our_import)["data"]
    for path in (our_import, mdx2_import):
        seen = np.zeros(expected.shape, dtype=bool)
        with ImageSeriesReader(path) as reader:
            assert len(reader.segments) == (1 if path == our_import else 3)
            for frame0, row0, block in reader.iter_blocks():
                n, rows, _ = block.shape
                assert np.array_equal(block, expected[frame0 : frame0 + n, row0 : row0 + rows])
                seen[frame0 : frame0 + n, row0 : row0 + rows] = True
            part = list(reader.iter_blocks((4, 9)))
        assert seen.all()
        assert sorted({f for f, _, b in part for f in range(f, f + len(b))}) == list(range(4, 9))


@pytest.mark.parametrize("nproc", [1, 2])
def test_without_c_kernels_the_commands_give_the_same_files(sweep, our_import, tmp_path, nproc):
    """The numpy/isal fallbacks (no compiler at install) end to end: same pixels, same map."""
    env = {"DIALS_MDXBG_PURE_NUMPY": "1"}
    common = ["bins=3,50,40", "valid_range=0,200", "output.plot=None", f"mp.nproc={nproc}"]
    run(
        ["dials.mdx_import", sweep, "output.data=np.nxs", "chunks=5,211,493", f"mp.nproc={nproc}"],
        cwd=tmp_path,
        env=env,
    )
    slow = read_series(tmp_path / "np.nxs")
    fast = read_series(our_import)
    for key in fast:
        assert np.array_equal(slow[key], fast[key]), key
    run(["dials.mdx_bin_background", tmp_path / "np.nxs", *common, "output.binned=a.nxs"],
        cwd=tmp_path, env=env)  # fmt: skip
    run(["dials.mdx_bin_background", sweep, *common, "output.binned=b.nxs"], cwd=tmp_path, env=env)
    run(["dials.mdx_bin_background", our_import, *common, "output.binned=c.nxs"], cwd=tmp_path)
    reference = read_binned(tmp_path / "c.nxs")
    for name in ("a", "b"):
        other = read_binned(tmp_path / f"{name}.nxs")
        for key in ("signal", "errors", "pixel_count"):
            assert np.array_equal(other[key], reference[key], equal_nan=True), (name, key)


def test_split_layout_for_mdx2_steps_runs_in_its_folder(sweep, mdx2_import, tmp_path, monkeypatch):
    """Where mdx2's find_peaks, mask_peaks and integrate work on a split series (as docs say).

    They walk the series with ``ImageSeries.chunk_slice_iterator``, which opens the first
    virtual-dataset source by its stored name relative to the working folder. So they work
    in the folder that holds the main file, and fail elsewhere, exactly as on mdx2's own
    ``datastore/`` layout; reading the pixels (h5py, NeXpy, our binning) works anywhere.
    """
    from mdx2.io import loadobj

    here = tmp_path / "a"
    here.mkdir()
    args = ["output.data=split.nxs", "output.layout=split", "chunks=5,211,493"]
    run(["dials.mdx_import", sweep, *args], cwd=here)
    for folder, path in ((here, here / "split.nxs"), (mdx2_import.parent, mdx2_import)):
        monkeypatch.chdir(folder)
        slices = list(loadobj(str(path), "image_series").chunk_slice_iterator())
        assert len(slices) == 3 * 2 * 3  # 12 x 407 x 1475 pixels in chunks of 5 x 211 x 493
        monkeypatch.chdir(tmp_path)
        with pytest.raises(FileNotFoundError):
            list(loadobj(str(path), "image_series").chunk_slice_iterator())
