"""mdx2's interpolation stencil on the map's axes, per pixel and per frame.

**How mdx2 evaluates the map.** ``mdx2.correct --background`` calls
``mdx2.utils.interp3``: on each axis the fractional index
``f = np.interp(x, centres, arange(n))`` (clamped to [0, n-1]), then
``scipy.ndimage.map_coordinates(order=1)``. Order-1 map_coordinates uses the
stencil ``{floor(f), floor(f) + 1}`` on every axis, except at the upper end
``f = n - 1`` where it is ``{n-2, n-1}`` (measured: a NaN at ``n-2`` makes
``f = n-1`` NaN), and multiplies every stencil value by its weight, so one NaN
corner, even with weight 0, makes the result NaN. Everything here is
separable: per axis each coordinate has a *cell* ``min(floor(f), n-2)`` and an
upper weight ``f - cell`` (:func:`axis_cells`); a pixel's background is NaN
exactly when a corner of its (phi, y, x) cell is NaN (tested against interp3
over full pixel grids).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def axis_cells(coords: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interpolation cell and upper weight of each coordinate, as mdx2's interp3.

    Args:
        coords: coordinates (phi of frames, or pixel indices).
        centres: the map's axis (bin centres).

    Returns:
        (cell, weight): int64 ``min(floor(f), n-2)`` (0 when n = 1) and float64
        ``f - cell`` in [0, 1], ``f`` being mdx2's fractional index. The stencil
        is ``cell, cell + 1`` (the latter only when n > 1).
    """
    centres = np.asarray(centres)
    f = np.interp(np.asarray(coords).astype(float), centres.astype(float), np.arange(centres.size))
    cell = np.minimum(f.astype(np.int64), max(centres.size - 2, 0))
    return cell, f - cell


def n_cells(n: int) -> int:
    """Interpolation cells of an axis with ``n`` centres."""
    return max(n - 1, 1)


def poisoned_cells(signal: np.ndarray, phi_cell: int) -> np.ndarray:
    """(nby, nbx) bool: y/x cells whose interpolation at phi cell ``phi_cell`` is NaN."""
    nan = np.isnan(signal[phi_cell])
    if phi_cell + 1 < signal.shape[0]:
        nan = nan | np.isnan(signal[phi_cell + 1])
    out = nan.copy()
    out[:-1] |= nan[1:]
    out2 = out.copy()
    out2[:, :-1] |= out[:, 1:]
    return out2


@dataclass(frozen=True)
class XRuns:
    """Columns cut into runs inside one x cell where the x weight is linear.

    Run r covers ``edges[r] .. edges[r+1]``, lies in cell ``cell[r]``, and has
    ``w = alpha[r] + beta[r] * (x - edges[r])`` (to rounding).
    """

    edges: np.ndarray
    cell: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray


@dataclass
class CellGrid:
    """Interpolation cells of the pixels of an (ny, nx) frame for one map's y/x axes."""

    y_cell: np.ndarray
    y_w: np.ndarray
    x_cell: np.ndarray
    x_w: np.ndarray
    shape: tuple[int, int]  # the map's (nby, nbx)
    runs: XRuns = field(init=False)

    @classmethod
    def make(cls, ny: int, nx: int, y_centres, x_centres) -> CellGrid:
        """Cells of pixel indices 0..ny-1 and 0..nx-1 (mdx2's iy, ix)."""
        yc, yw = axis_cells(np.arange(ny), y_centres)
        xc, xw = axis_cells(np.arange(nx), x_centres)
        return cls(yc, yw, xc, xw, (len(y_centres), len(x_centres)))

    def __post_init__(self) -> None:
        self.runs = _x_runs(self.x_cell, self.x_w)

    @property
    def cells(self) -> tuple[int, int]:
        """Number of interpolation cells along y and x."""
        return n_cells(self.shape[0]), n_cells(self.shape[1])


def _x_runs(x_cell: np.ndarray, x_w: np.ndarray) -> XRuns:
    nx = x_cell.size
    f = x_cell + x_w
    cuts = [0, nx, *(np.flatnonzero(np.diff(x_cell)) + 1).tolist()]
    # The clamped ends (before the first centre, after the last) have a
    # constant weight: runs of their own.
    rising = np.flatnonzero(f > f[0])
    if rising.size:
        cuts.append(int(rising[0]))
    below = np.flatnonzero(f < f[-1])
    if below.size:
        cuts.append(int(below[-1]) + 1)
    edges = np.unique(np.array(cuts, dtype=np.int64))
    starts, stops = edges[:-1], edges[1:]
    length = stops - starts
    alpha = x_w[starts]
    beta = np.where(length > 1, (x_w[stops - 1] - alpha) / np.maximum(length - 1, 1), 0.0)
    return XRuns(
        edges,
        np.ascontiguousarray(x_cell[starts], dtype=np.int64),
        np.ascontiguousarray(alpha, dtype=np.float64),
        np.ascontiguousarray(beta, dtype=np.float64),
    )
