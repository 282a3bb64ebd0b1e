"""Fault injection, issue 19 section 2 (silently wrong maps) and its reading faults.

Each case goes through :func:`test_faults.check_case` (exit status, one readable stderr
line naming what ``expect`` lists, files on disk unchanged). Odd-but-valid series (other
dtypes mdx2 reads) are binned by both and must give mdx2's map.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import read_binned, run
from test_faults import (  # noqa: F401 (the fixtures the cases use)
    BINNING,
    IMPORT,
    C,
    Case,
    Ctx,
    check_case,
    expt_edit,
    on_file,
    series_edit,
    small_mdx2,
    small_series,
    small_split,
)

IM, BN = IMPORT, BINNING
OUT, BOUT = "output.data=out.nxs", "output.binned=b.nxs"
EIGER2 = "eiger2/eiger_master.h5"  # 6 frames, 3 per data file


# --------------------------------------------------------------------------- setups


def with_data(make) -> callable:
    """Replace the series' data by ``make(int64 counts)`` (chunked, compressed as ours)."""

    def edit(group: h5py.Group) -> None:
        counts = group["data"][()].astype(np.int64)
        del group["data"]
        data = np.asarray(make(counts))
        group.create_dataset("data", data=data, chunks=(3, 195, 487), compression="gzip")

    return edit


def nan_pixels(counts):
    data = counts.astype(np.float64)
    data[2, 40, 50] = np.nan
    return data


def fractional(counts):
    data = counts.astype(np.float64)
    data[counts >= 0] += 0.5
    return data


def beyond_int32(counts):
    counts = counts.copy()
    counts[3, 100, 200] = 2**31 + 5
    return counts


def set_axis(name: str, values) -> callable:
    def edit(group: h5py.Group) -> None:
        del group[name]
        group.create_dataset(name, data=values)

    return edit


def phi_with(frame: int, value: float) -> callable:
    def edit(group: h5py.Group) -> None:
        phi = group["phi"][()]
        phi[frame] = value
        set_axis("phi", phi)(group)

    return edit


def as_strings(name: str) -> callable:
    def edit(group: h5py.Group) -> None:
        values = [str(v).encode() for v in group[name][()]]
        set_axis(name, np.array(values, dtype="S32"))(group)

    return edit


def nan_in(name: str) -> callable:
    def edit(group: h5py.Group) -> None:
        values = group[name][()]
        values[3] = np.nan
        set_axis(name, values)(group)

    return edit


def data_is_group(group: h5py.Group) -> None:
    del group["data"]
    group.create_group("data")


def data_dangling(group: h5py.Group) -> None:
    del group["data"]
    group["data"] = h5py.SoftLink("/entry/nowhere")


def fletcher32_corrupt(group: h5py.Group) -> None:
    """Data with Fletcher32 checksums, one chunk's bytes changed after the fact."""
    data = group["data"][()]
    del group["data"]
    dset = group.create_dataset("data", data=data, chunks=(3, 195, 487), fletcher32=True)
    mask, payload = dset.id.read_direct_chunk((3, 0, 0))
    payload = bytearray(payload)
    payload[1000] ^= 0x01
    dset.id.write_direct_chunk((3, 0, 0), bytes(payload), mask)


def shorten_part(path: Path) -> None:
    """mdx2 datastore part: its data one frame short (axes too), as a cut-off copy."""
    with h5py.File(path, "r+") as f:
        group = f["entry/image_series"]
        for name in ("data", "phi", "exposure_times"):
            values = group[name][()][:-1]
            del group[name]
            group.create_dataset(name, data=values)


def swap_parts(ctx: Ctx) -> None:
    ctx["split"]
    parts = ctx.work / "split_parts"
    a, b = parts / "split_00000.nxs", parts / "split_00001.nxs"
    a.rename(parts / "tmp")
    b.rename(a)
    (parts / "tmp").rename(b)


def foreign_datastore(ctx: Ctx) -> None:
    """mdx.nxs in a/ without its datastore; ./datastore is another sweep's (phi + 90)."""
    ctx["mdx2"]
    (ctx.work / "a").mkdir()
    (ctx.work / "mdx.nxs").rename(ctx.work / "a" / "mdx.nxs")
    for part in (ctx.work / "datastore").glob("*.nxs"):
        with h5py.File(part, "r+") as f:
            phi = f["entry/image_series/phi"][()] + 90.0
            del f["entry/image_series/phi"]
            f["entry/image_series"].create_dataset("phi", data=phi)


def eiger2(ctx: Ctx) -> None:
    shutil.copytree(Path(ctx.fixture("two_file_eiger")).parent, ctx.work / "eiger2")


def eiger2_copied_data(ctx: Ctx) -> None:
    eiger2(ctx)
    d = ctx.work / "eiger2"
    shutil.copy(d / "eiger_data_000001.h5", d / "eiger_data_000002.h5")


def eiger2_corrupt(number: int, frame: int) -> callable:
    """Garbage inside the LZ4 stream of ``frame`` (0-based) of data file ``number``."""

    def setup(ctx: Ctx) -> None:
        eiger2(ctx)
        with h5py.File(ctx.work / "eiger2" / f"eiger_data_{number:06d}.h5", "r+") as f:
            dset = f["entry/data/data"]
            mask, payload = dset.id.read_direct_chunk((frame, 0, 0))
            data = bytearray(payload)
            for i in range(20, min(len(data), 4000)):
                data[i] ^= 0x5A
            dset.id.write_direct_chunk((frame, 0, 0), bytes(data), mask)

    return setup


eiger2_corrupt_frame5 = eiger2_corrupt(2, 1)  # image 5: frame 2 of the second data file
# dxtbx 3.11 reads no image past data_000001 (see frames/nxmx_direct.py): image 2 there.
eiger2_corrupt_frame2 = eiger2_corrupt(1, 1)


def expt_trusted_reversed(expt: dict) -> None:
    expt["detector"][0]["panels"][0]["trusted_range"] = [100000.0, -1.0]


def series_of(make) -> callable:
    return series_edit(with_data(make))


# --------------------------------------------------------------------------- cases

S, SP, M2 = "{series}", "{split}", "{mdx2}"
# fmt: off
CASES = [
    # ---- 1. image series of other dtypes
    C("B-float-nan", "silent", BN, S, BOUT, setup=series_of(nan_pixels),
      expect=("series.nxs", "NaN", "frame 3")),
    C("B-float-fractional", "silent", BN, S, BOUT, setup=series_of(fractional),
      expect=("series.nxs", "whole")),
    C("B-int64-beyond-int32", "silent", BN, S, BOUT, setup=series_of(beyond_int32),
      expect=("series.nxs", "int32", "frame 4")),
    # ---- 2. a data file holding other images than the scan says
    C("I-eiger-data-file-copied", "silent", IM, EIGER2, OUT, setup=eiger2_copied_data,
      expect=("eiger_data_000002.h5", "image_nr")),
    C("B-eiger-data-file-copied", "silent", BN, EIGER2, BOUT, setup=eiger2_copied_data,
      expect=("eiger_data_000002.h5", "image_nr")),
    # ---- 3. frame order and provenance
    C("B-split-parts-swapped", "silent", BN, SP, BOUT, setup=swap_parts,
      expect=("split_00000.nxs", "phi")),
    C("B-mdx2-foreign-datastore", "silent", BN, "a/mdx.nxs", BOUT, setup=foreign_datastore,
      expect=("mdx_0.nxs", "phi")),
    # ---- 4. axes and exposures
    C("B-phi-nan", "silent", BN, S, BOUT, setup=series_edit(phi_with(2, np.nan)),
      expect=("series.nxs", "phi")),
    C("B-phi-inf", "silent", BN, S, BOUT, setup=series_edit(phi_with(6, np.inf)),
      expect=("series.nxs", "phi")),
    C("B-phi-constant", "silent", BN, S, BOUT, setup=series_edit(set_axis("phi", np.zeros(7))),
      expect=("series.nxs", "phi")),
    C("B-phi-not-monotonic", "silent", BN, S, BOUT, setup=series_edit(phi_with(4, -3.0)),
      expect=("series.nxs", "phi")),
    C("B-exposure-denormal", "silent", BN, S, BOUT,
      setup=series_edit(set_axis("exposure_times", np.full(7, 5e-324))),
      expect=("series.nxs", "exposure")),
    C("B-exposure-huge", "silent", BN, S, BOUT,
      setup=series_edit(set_axis("exposure_times", np.full(7, 1e308))),
      expect=("series.nxs", "exposure")),
    C("I-expt-trusted-range-reversed", "silent", IM, "edited.expt", OUT,
      setup=expt_edit(expt_trusted_reversed), expect=("trusted range", "reversed")),
    C("B-expt-trusted-range-reversed", "silent", BN, "edited.expt", BOUT,
      setup=expt_edit(expt_trusted_reversed), expect=("trusted range", "reversed")),
    # ---- 5. reading faults named, not "unexpected failure"
    C("B-series-fletcher32", "corrupt", BN, S, BOUT, setup=series_edit(fletcher32_corrupt),
      expect=("series.nxs", "frames 4")),
    C("B-exposure-strings", "corrupt", BN, S, BOUT,
      setup=series_edit(as_strings("exposure_times")), expect=("series.nxs", "exposure_times")),
    C("B-phi-strings", "corrupt", BN, S, BOUT, setup=series_edit(as_strings("phi")),
      expect=("series.nxs", "phi")),
    C("B-iy-nan", "corrupt", BN, S, BOUT, setup=series_edit(nan_in("iy")),
      expect=("series.nxs", "iy")),
    C("B-data-is-group", "corrupt", BN, S, BOUT, setup=series_edit(data_is_group),
      expect=("series.nxs", "data")),
    C("B-data-dangling-link", "corrupt", BN, S, BOUT, setup=series_edit(data_dangling),
      expect=("series.nxs", "data")),
    C("B-mdx2-short-part", "corrupt", BN, M2, BOUT,
      setup=on_file("mdx2", "datastore/mdx_1.nxs", shorten_part), expect=("mdx_1.nxs",)),
    C("I-eiger-corrupt-image5", "corrupt", IM, EIGER2, OUT, setup=eiger2_corrupt_frame5,
      expect=("eiger_data_000002.h5", "image 5")),
    C("B-eiger-corrupt-image5", "corrupt", BN, EIGER2, BOUT, setup=eiger2_corrupt_frame5,
      expect=("eiger_data_000002.h5", "image 5")),
    # ---- 6. the same chunk read through hdf5plugin (no SIGSEGV, no temporaries)
    C("I-eiger-corrupt-dxtbx-read", "corrupt", IM, EIGER2, OUT, "image_range=1,3",
      setup=eiger2_corrupt_frame2, expect=("eiger_data_000001.h5", "image 2")),
    C("B-eiger-corrupt-dxtbx-read", "corrupt", BN, EIGER2, BOUT, "frames.image_range=1,3",
      setup=eiger2_corrupt_frame2, expect=("eiger_data_000001.h5", "image 2")),
    C("I-eiger-corrupt-pure-numpy", "corrupt", IM, EIGER2, OUT, setup=eiger2_corrupt_frame5,
      expect=("eiger_data_000002.h5", "image 5")),
    C("B-eiger-corrupt-pure-numpy", "corrupt", BN, EIGER2, BOUT, setup=eiger2_corrupt_frame5,
      expect=("eiger_data_000002.h5", "image 5")),
]
# fmt: on

#: Environment of the cases that read through another path.
ENV = {
    "I-eiger-corrupt-dxtbx-read": {"DIALS_MDXBG_DXTBX_READ": "1"},
    "B-eiger-corrupt-dxtbx-read": {"DIALS_MDXBG_DXTBX_READ": "1"},
    "I-eiger-corrupt-pure-numpy": {"DIALS_MDXBG_PURE_NUMPY": "1"},
    "B-eiger-corrupt-pure-numpy": {"DIALS_MDXBG_PURE_NUMPY": "1"},
}


@pytest.fixture(scope="session")
def two_file_eiger(tmp_path_factory) -> Path:
    from dials_mdxbg.testing.eiger import write_nxmx_sweep

    directory = tmp_path_factory.mktemp("eiger2") / "images"
    return write_nxmx_sweep(directory, n_frames=6, frames_per_file=3, shape=(64, 80))


def test_case_names_unique():
    names = [c.name for c in CASES]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("case", [pytest.param(c, id=f"{c.kind}-{c.name}") for c in CASES])
def test_data_fault(case: Case, request, tmp_path_factory, monkeypatch):
    for key, value in ENV.get(case.name, {}).items():
        monkeypatch.setenv(key, value)  # conftest.run passes os.environ on
    check_case(case, request, tmp_path_factory)


# --------------------------------------------------------------------------- valid odd data


@pytest.mark.parametrize(
    "dtype",
    ["float64", "float32", "int64", "uint16", ">i4"],
)
def test_other_dtypes_give_mdx2_map(dtype, request, tmp_path):
    """Whole counts stored as another dtype: mdx2's map (float32: mdx2 sums in float32)."""
    shutil.copy(request.getfixturevalue("small_series"), tmp_path / "s.nxs")
    with h5py.File(tmp_path / "s.nxs", "r+") as f:
        group = f["entry/image_series"]
        counts = group["data"][()]
        if dtype == "uint16":
            counts = np.where(counts < 0, 65535, counts)  # mdx2: not masked, a count
        del group["data"]
        group.create_dataset(
            "data", data=counts.astype(dtype), chunks=(3, 195, 487), compression="gzip"
        )
    bins = ("2", "20", "40")
    run(["mdx2.bin_image_series", "s.nxs", *bins, "--outfile", "m.nxs"], cwd=tmp_path)
    run([BINNING, "s.nxs", f"bins={','.join(bins)}", "output.binned=b.nxs",
         "output.plot=None"], cwd=tmp_path)  # fmt: skip
    ours, theirs = read_binned(tmp_path / "b.nxs"), read_binned(tmp_path / "m.nxs")
    for key in ("phi", "iy", "ix"):
        assert np.array_equal(ours[key], theirs[key]), key
    if dtype == "float32":
        np.testing.assert_allclose(ours["signal"], theirs["signal"], rtol=1e-6)
    else:
        assert np.array_equal(ours["signal"], theirs["signal"], equal_nan=True)

