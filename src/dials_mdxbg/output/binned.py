"""The binned background map file: mdx2's GridData plus our extra datasets."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from dials_mdxbg.series.layout import BINNED, describe_fields, new_file, nxdata
from dials_mdxbg.util.atomic import check_writable, write_bytes


def write_binned(
    path: Path,
    axes: tuple[np.ndarray, np.ndarray, np.ndarray],
    signal: np.ndarray,
    extra: dict[str, np.ndarray],
    provenance: dict | None = None,
) -> None:
    """Write the binned background map atomically, as mdx2's GridData.

    The file is made in memory and written in one piece: HDF5 never writes to
    the disk itself, so a full disk is one clean error (HDF5 1.10 crashes at
    exit after failing to flush a file; see :mod:`dials_mdxbg.util.atomic`).
    A map is small (a few MB even for fine bins), so this costs little.
    """
    path = Path(path)
    check_writable(path)
    buffer = io.BytesIO()
    f, entry = new_file(buffer, path, provenance)
    with f:
        group = nxdata(entry, BINNED, "signal", "mdx2.geometry", "GridData")
        group.create_dataset("signal", data=np.asarray(signal, dtype=np.float64))
        for name, values in zip(("phi", "iy", "ix"), axes):
            group.create_dataset(name, data=np.asarray(values, dtype=np.float64))
        for name, values in extra.items():
            # Extras are ours alone: compress them (mdx2's own fields stay plain).
            group.create_dataset(
                name, data=values, compression="gzip", compression_opts=4, shuffle=True
            )
        describe_fields(group)
    write_bytes(path, buffer.getbuffer())
