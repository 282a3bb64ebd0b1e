"""mdx2's NeXus layout: the groups and attributes both kinds of file share.

Image series (``dials.mdx_import``, read by ``mdx2.io.loadobj``)::

    /                       attrs mdx2_version, creator, file_name, file_time, ...
    /entry                  NXentry
    /entry/image_series     NXdata  signal='data' axes=['phi','iy','ix']
                                    mdx2_module='mdx2.data' mdx2_class='ImageSeries'
        data                int32 (n, ny, nx), -1 = masked; gzip(1)+shuffle chunks
        phi, iy, ix         float64 axes; exposure_times float64 (n,)
    /entry/dials_mdxbg      NXcollection: effective PHIL, versions, input experiments

Binned background (``dials.mdx_bin_background``, read by ``mdx2.correct``)::

    /entry/binned_image_series  NXdata signal='signal' axes=['phi','iy','ix']
                                mdx2_module='mdx2.geometry' mdx2_class='GridData'
        signal              float64 counts/s, NaN = empty bin
        phi, iy, ix         bin-centre coordinates
        errors              standard error of the mean (counts/s); NeXpy's error bars
        pixel_count         valid pixels per bin

Both files follow NeXus' conventions beyond what mdx2 needs, so that NeXpy
(and any NeXus reader) plots them on open with labelled axes: the ``@default``
chain root -> ``entry`` -> the NXdata group, and ``units`` and ``long_name``
on every axis and signal (:data:`FIELD_ATTRS`). mdx2 reads neither, and
ignores both.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import h5py
import numpy as np

from dials_mdxbg import __version__
from dials_mdxbg.model import SeriesAxes, storage_chunks

MDX2_LAYOUT_VERSION = "1.0.5"
"""mdx2 release whose file layout we write (mdx2 only warns on a mismatch)."""

IMAGE_SERIES = "image_series"
BINNED = "binned_image_series"
PROVENANCE = "dials_mdxbg"
DEFLATE, SHUFFLE = 1, 2  # HDF5 filter ids

FIELD_ATTRS: dict[str, dict[str, dict[str, str]]] = {
    IMAGE_SERIES: {
        "data": {"units": "counts", "long_name": "counts (-1 = masked)"},
        "phi": {"units": "deg", "long_name": "phi (deg)"},
        "iy": {"units": "pixel", "long_name": "iy (pixel)"},
        "ix": {"units": "pixel", "long_name": "ix (pixel)"},
        "exposure_times": {"units": "s", "long_name": "exposure time (s)"},
    },
    BINNED: {
        "signal": {"units": "counts/s", "long_name": "background (counts/s)"},
        "errors": {"units": "counts/s", "long_name": "standard error of the mean (counts/s)"},
        "pixel_count": {"long_name": "valid pixels per bin"},
        "phi": {"units": "deg", "long_name": "phi, bin centre (deg)"},
        "iy": {"units": "pixel", "long_name": "iy, bin centre (pixel)"},
        "ix": {"units": "pixel", "long_name": "ix, bin centre (pixel)"},
    },
}
"""NeXus ``units`` and ``long_name`` (NeXpy's axis labels) of each group's fields."""


def root_attrs(f: h5py.File, final_name: Path) -> None:
    f.attrs["mdx2_version"] = MDX2_LAYOUT_VERSION
    f.attrs["creator"] = "dials-mdxbg"
    f.attrs["creator_version"] = __version__
    f.attrs["file_name"] = str(Path(final_name).resolve())
    f.attrs["file_time"] = datetime.datetime.now().isoformat()
    f.attrs["HDF5_Version"] = h5py.version.hdf5_version
    f.attrs["h5py_version"] = h5py.version.version
    f.attrs["default"] = "entry"


def nxdata(entry: h5py.Group, name: str, signal: str, module: str, cls: str) -> h5py.Group:
    """The NXdata group ``name`` with mdx2's attributes, made the entry's default."""
    group = entry.create_group(name)
    group.attrs["NX_class"] = "NXdata"
    group.attrs["signal"] = signal
    group.attrs["axes"] = ["phi", "iy", "ix"]
    group.attrs["mdx2_module"] = module
    group.attrs["mdx2_class"] = cls
    entry.attrs["default"] = name
    return group


def describe_fields(group: h5py.Group) -> None:
    """Put :data:`FIELD_ATTRS`' units and long_name on the fields ``group`` has."""
    for field, attrs in FIELD_ATTRS[Path(group.name).name].items():
        if field in group:
            group[field].attrs.update(attrs)


def provenance_group(entry: h5py.Group, provenance: dict | None) -> None:
    if not provenance:
        return
    group = entry.create_group(PROVENANCE)
    group.attrs["NX_class"] = "NXcollection"
    for key, value in provenance.items():
        text = value if isinstance(value, str) else json.dumps(value, indent=1, default=str)
        group.create_dataset(key, data=text, dtype=h5py.string_dtype())


def new_file(
    path: Path, final_name: Path, provenance: dict | None
) -> tuple[h5py.File, h5py.Group]:
    f = h5py.File(path, "w")
    root_attrs(f, final_name)
    entry = f.create_group("entry")
    entry.attrs["NX_class"] = "NXentry"
    provenance_group(entry, provenance)
    return f, entry


def create_series_group(
    entry: h5py.Group,
    axes: SeriesAxes,
    chunks: tuple[int, int, int],
    level: int,
    resizable: bool = False,
) -> h5py.Dataset:
    group = nxdata(entry, IMAGE_SERIES, "data", "mdx2.data", "ImageSeries")
    group.create_dataset("phi", data=np.asarray(axes.phi, dtype=np.float64))
    group.create_dataset("iy", data=np.asarray(axes.iy, dtype=np.float64))
    group.create_dataset("ix", data=np.asarray(axes.ix, dtype=np.float64))
    group.create_dataset("exposure_times", data=np.asarray(axes.exposure_times, dtype=np.float64))
    # A resizable frame axis lets a part of a series keep the full chunk depth,
    # so its chunks can later be copied as they are into the whole series.
    dset = group.create_dataset(
        "data",
        shape=axes.shape,
        maxshape=(None, *axes.shape[1:]) if resizable else None,
        dtype=np.int32,
        chunks=storage_chunks(chunks, axes.shape, resizable),
        compression="gzip",
        compression_opts=level,
        shuffle=True,
    )
    describe_fields(group)
    return dset
