"""Which stored pixel types a series may hold, and their values as the int32 counts we bin.

Binning sums int32 counts exactly. mdx2 reads any numeric type and averages it
(``np.ma.masked_equal(data, -1).mean()``), so a value is taken when its int32 is
the same number (whole floats, int64 within int32, any uint16): the map is then
mdx2's. What int32 cannot hold is refused with the first pixel that shows it,
never wrapped or truncated: NaN (mdx2's bin would be NaN), fractions (mdx2
averages them; we would truncate), counts beyond int32 (mdx2 averages them; the
cast would wrap).
"""

from __future__ import annotations

import numpy as np

from dials_mdxbg.errors import InputError

_INT32 = np.iinfo(np.int32)


def as_counts(values: np.ndarray, filename: str, frame0: int, row0: int) -> np.ndarray:
    """``values`` (frames, rows, nx) as int32, or a one-line error naming a bad pixel.

    Args:
        values: a block of the series as stored.
        filename: the file it was read from, for messages.
        frame0, row0: the block's first frame (0-based in the series) and row.

    Raises:
        InputError: a value that is not a whole count within int32.
    """
    if values.dtype == np.int32:
        return values
    if values.dtype.kind == "f":
        _refuse(values, np.isnan(values), filename, frame0, row0, "NaN (not a count)")
        _refuse(values, np.isinf(values), filename, frame0, row0, "infinite")
        fraction = values != np.floor(values)
        _refuse(values, fraction, filename, frame0, row0, "not a whole count", "whole counts")
    if values.dtype.kind in "iuf" and (
        values.size and (values.min() < _INT32.min or values.max() > _INT32.max)
    ):
        outside = (values < _INT32.min) | (values > _INT32.max)
        _refuse(values, outside, filename, frame0, row0, "beyond int32 counts", "int32 counts")
    return values.astype(np.int32)


def _refuse(
    values: np.ndarray,
    bad: np.ndarray,
    filename: str,
    frame0: int,
    row0: int,
    what: str,
    need: str = "counts",
) -> None:
    if not bad.any():
        return
    f, y, x = (int(i) for i in np.argwhere(bad)[0])
    raise InputError(
        f"{filename}: pixel (y {row0 + y}, x {x}) of frame {frame0 + f + 1} is {values[f, y, x]} "
        f"({values.dtype}), {what}; dials.mdx_bin_background bins {need} (-1 = masked) only"
    )
