"""The binned background map file: mdx2's GridData plus our extra datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dials_mdxbg.series.layout import BINNED, new_file, nxdata
from dials_mdxbg.util.atomic import atomic_path, check_writable


def write_binned(
    path: Path,
    axes: tuple[np.ndarray, np.ndarray, np.ndarray],
    signal: np.ndarray,
    extra: dict[str, np.ndarray],
    provenance: dict | None = None,
) -> None:
    """Write the binned background map atomically, as mdx2's GridData."""
    path = Path(path)
    check_writable(path)
    with atomic_path(path) as tmp:
        f, entry = new_file(tmp, path, provenance)
        with f:
            group = nxdata(entry, BINNED, "signal", "mdx2.geometry", "GridData")
            group.create_dataset("signal", data=np.asarray(signal, dtype=np.float64))
            group["signal"].attrs["units"] = "counts/s"
            for name, values in zip(("phi", "iy", "ix"), axes):
                group.create_dataset(name, data=np.asarray(values, dtype=np.float64))
            for name, values in extra.items():
                # Extras are ours alone: compress them (mdx2's own fields stay plain).
                group.create_dataset(
                    name, data=values, compression="gzip", compression_opts=4, shuffle=True
                )
            entry.attrs["default"] = BINNED
