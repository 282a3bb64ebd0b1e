"""NeXus conventions of both files: units, long names, the @default chain; readers stay happy."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import mdx2_bin, read_series, run
from dials_mdxbg.series.layout import BINNED, FIELD_ATTRS, IMAGE_SERIES


@pytest.fixture(scope="module")
def files(sweep, our_import, tmp_path_factory):
    """Our image series (single and split layouts) and the map binned from it."""
    work = tmp_path_factory.mktemp("nexus")
    run(
        [
            "dials.mdx_import",
            sweep,
            "output.data=split.nxs",
            "output.layout=split",
            "chunks=5,211,493",
        ],
        cwd=work,
    )
    run(
        [
            "dials.mdx_bin_background",
            our_import,
            "bins=4,20,20",
            "valid_range=0,200",
            "output.binned=map.nxs",
            "output.plot=None",
        ],
        cwd=work,
    )
    return {"series": our_import, "split": work / "split.nxs", "map": work / "map.nxs"}


def _default_chain(f: h5py.File) -> list[str]:
    """Follow @default from the root to an NXdata group, as NeXpy does on open."""
    names, node = [], f
    while node.attrs.get("NX_class") != "NXdata":
        name = node.attrs["default"]
        names.append(name)
        node = node[name]
    return names


@pytest.mark.parametrize("which", ["series", "split", "map"])
def test_units_long_names_and_default_chain(files, which):
    group_name = BINNED if which == "map" else IMAGE_SERIES
    with h5py.File(files[which], "r") as f:
        assert _default_chain(f) == ["entry", group_name]
        group = f["entry"][group_name]
        signal = group[group.attrs["signal"]]
        axes = [group[a] for a in group.attrs["axes"]]
        expected = {"phi": "deg", "iy": "pixel", "ix": "pixel"}
        assert {Path(a.name).name: a.attrs["units"] for a in axes} == expected
        if which == "map":
            assert signal.attrs["units"] == group["errors"].attrs["units"] == "counts/s"
        else:
            assert group["exposure_times"].attrs["units"] == "s"
            assert signal.attrs["units"] == "counts"
        for name, attrs in FIELD_ATTRS[group_name].items():
            assert dict(group[name].attrs) == attrs, name
            assert group[name].attrs["long_name"]


def test_pixels_unchanged_by_the_attributes(files):
    single, split = read_series(files["series"]), read_series(files["split"])
    for key in single:
        assert np.array_equal(single[key], split[key]), key


@pytest.mark.parametrize("which", ["series", "split", "map"])
def test_nexusformat_tree_without_warnings(files, which, monkeypatch):
    from nexusformat.nexus import nxload

    monkeypatch.chdir(files[which].parent)  # a split file resolves its parts from anywhere
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        root = nxload(str(files[which]))
        tree = root.tree
        plottable = root.plottable_data  # what NeXpy plots on open: via @default
    assert not [str(w.message) for w in caught]
    assert "@units = 'deg'" in tree and "@long_name" in tree
    assert plottable is not None and plottable.nxsignal.nxname in ("data", "signal")
    assert [a.attrs["units"] for a in plottable.nxaxes] == ["deg", "pixel", "pixel"]


@pytest.mark.parametrize("which", ["series", "split", "map"])
def test_mdx2_tree_without_warnings(files, which, tmp_path):
    proc = run(
        [sys.executable, "-W", "always", "-m", "mdx2.command_line.tree", files[which]],
        cwd=tmp_path,
    )
    assert "@units = 'counts" in proc.stdout
    assert "Warning" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("which", ["series", "split"])
def test_mdx2_loads_and_bins_the_series(files, which, tmp_path):
    from mdx2.io import loadobj

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # e.g. mdx2's version-mismatch warning
        series = loadobj(str(files[which]), "image_series")
    assert series.shape == (12, 407, 1475)
    mdx2_bin(files[which], tmp_path / "mdx2_map.nxs", cwd=files[which].parent)
    with h5py.File(tmp_path / "mdx2_map.nxs") as a, h5py.File(files["map"]) as b:
        x = a[f"entry/{BINNED}/signal"][()]
        y = b[f"entry/{BINNED}/signal"][()]
        assert np.array_equal(np.isnan(x), np.isnan(y))
        np.testing.assert_allclose(x[np.isfinite(x)], y[np.isfinite(y)], rtol=1e-12)


def test_mdx2_loads_the_map(files):
    from mdx2.io import loadobj

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        grid = loadobj(str(files["map"]), "binned_image_series")
    with h5py.File(files["map"]) as f:
        assert np.array_equal(grid.data, f[f"entry/{BINNED}/signal"][()], equal_nan=True)
