"""mdx2 mask files (``/entry/mask``, True = excluded), read lazily block by block."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from dials_mdxbg.errors import InputError


def read_mdx2_mask(path: Path, shape: tuple[int, int, int]) -> h5py.Dataset:
    """Open an mdx2 mask file (``/entry/mask``, True = excluded) lazily, checking its shape."""
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise InputError(f"mask {path} is not a readable HDF5 file: {e}") from None
    group = f.get("entry/mask")
    if not isinstance(group, h5py.Group) or group.attrs.get("signal", "") not in group:
        raise InputError(f"mask {path} has no /entry/mask NXdata with a signal")
    dset = group[group.attrs["signal"]]
    if dset.shape != tuple(shape):
        raise InputError(
            f"mask {path} has shape {dset.shape}, but the image series is {tuple(shape)}"
        )
    return dset


def mdx2_mask_excluder(mask_dset) -> Callable[[int, int, tuple], np.ndarray]:
    """Read the matching part of an mdx2 mask (True = excluded) for a block."""
    lock = threading.Lock()  # h5py datasets are not safe to read from two threads

    def excluded(frame0: int, row0: int, shape: tuple) -> np.ndarray:
        n, rows, _ = shape
        with lock:
            return np.asarray(mask_dset[frame0 : frame0 + n, row0 : row0 + rows, :], dtype=bool)

    return excluded
