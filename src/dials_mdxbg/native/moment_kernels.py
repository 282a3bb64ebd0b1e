"""Interpolation-cell moments and held-out scores of a frame: C kernels beside numpy twins.

The caller and the mathematics: :mod:`dials_mdxbg.binning.heldout`. A *cell
grid* is anything with ``y_cell``, ``y_w`` (per row), ``shape`` (the map's
(nby, nbx)), ``x_cell``, ``x_w`` and ``runs`` (columns cut into runs of a
linear x weight: ``edges``, ``cell``, ``alpha``, ``beta``), e.g.
:class:`dials_mdxbg.binning.stencil.CellGrid`.
"""

from __future__ import annotations

import numpy as np

from dials_mdxbg.native import lib
from dials_mdxbg.native.bin_kernels import valid_mask

N_MOMENTS = 14
"""Moments per cell: V_ab (a, b < 3) at 3a + b, C_ab (a, b < 2) at 9 + 2a + b, S at 13."""

N_SCORE = 9
"""Score sums: (r-b)^2, c/t^2, r, b, pixels, NaN pixels, then e^2, e n, n^2 over cells."""


def cell_moments_reference(
    counts: np.ndarray, valid: np.ndarray, grid, row0: int = 0
) -> np.ndarray:
    """numpy reference of :func:`cell_moments` for rows ``row0..`` of one frame."""
    nby, nbx = grid.shape
    out = np.zeros((nby, nbx, N_MOMENTS))
    rows = slice(row0, row0 + counts.shape[0])
    c = np.where(valid, counts, 0).astype(np.float64)
    v = valid.astype(np.float64)
    u = grid.y_w[rows][:, None]
    w = grid.x_w[None, :]
    flat = (grid.y_cell[rows][:, None] * nbx + grid.x_cell[None, :]).ravel()
    size = nby * nbx

    def add(index: int, values: np.ndarray) -> None:
        out[..., index] += np.bincount(flat, values.ravel(), size).reshape(nby, nbx)

    for a in range(3):
        for b in range(3):
            add(3 * a + b, v * u**a * w**b)
    for a in range(2):
        for b in range(2):
            add(9 + 2 * a + b, c * u**a * w**b)
    add(13, c * c)
    return out


def cell_moments(
    block: np.ndarray,
    grids: list,
    outs: list[np.ndarray],
    valid_range: tuple[int, int] | None = None,
    keep: np.ndarray | None = None,
    row0: int = 0,
) -> None:
    """Add the cell moments of rows ``row0..`` of one frame into ``outs`` (one per grid).

    Args:
        block: int32 counts (rows, nx), -1 = masked.
        grids: the cell grids of the maps.
        outs: their (nby, nbx, 14) float64 accumulators.
        valid_range: inclusive range of valid counts (as the binning), or None.
        keep: optional bool (rows, nx), False = not a valid pixel (mdx2 mask).
        row0: the block's first row.
    """
    block = np.ascontiguousarray(block)
    c = lib.library()
    if c is None or block.dtype != np.int32:
        valid = valid_mask(block, valid_range)
        if keep is not None:
            valid &= keep
        for grid, out in zip(grids, outs):
            out += cell_moments_reference(block, valid, grid, row0)
        return
    p = lib.ptr
    rows, nx = block.shape
    held = []  # the arrays whose addresses C reads

    def addresses(arrays) -> np.ndarray:
        held.extend(arrays)
        return np.array([a.ctypes.data for a in arrays], dtype=np.uint64)

    runs = [g.runs for g in grids]
    y_cell = addresses([lib.index(g.y_cell[row0 : row0 + rows]) for g in grids])
    y_w = addresses([np.ascontiguousarray(g.y_w[row0 : row0 + rows]) for g in grids])
    edges = addresses([r.edges for r in runs])
    cells = addresses([r.cell for r in runs])
    alpha = addresses([r.alpha for r in runs])
    beta = addresses([r.beta for r in runs])
    n_runs = np.array([len(r.cell) for r in runs], dtype=np.int64)
    nbx = np.array([g.shape[1] for g in grids], dtype=np.int64)
    out = addresses(list(outs))
    if keep is not None:
        keep = np.ascontiguousarray(keep, dtype=np.bool_)
    vlo, vhi = lib.valid_bounds(valid_range)
    c.mdx_cell_moments(
        p(block), rows, nx, None if keep is None else p(keep), vlo, vhi, len(grids),
        p(y_cell), p(y_w), p(edges), p(cells), p(alpha), p(beta),
        p(n_runs), p(nbx), p(out),
    )  # fmt: skip


def score_cells_reference(
    moments: np.ndarray, plane: np.ndarray, cells: tuple[int, int], exposure: float
) -> np.ndarray:
    """numpy reference of :func:`score_cells` (same arguments, returns the 6 sums)."""
    n_rows, nbx = plane.shape
    ncy, ncx = cells
    p = np.zeros((n_rows + 1, nbx + 1))
    p[:n_rows, :nbx] = plane
    m = moments[:ncy, :ncx]
    p00, p01 = p[:ncy, :ncx], p[:ncy, 1 : ncx + 1]
    p10, p11 = p[1 : ncy + 1, :ncx], p[1 : ncy + 1, 1 : ncx + 1]
    a0, a1, a2, a3 = p00, p10 - p00, p01 - p00, p11 - p10 - p01 + p00
    bad = np.isnan(a0) | np.isnan(a1) | np.isnan(a2) | np.isnan(a3)
    V = [[m[..., 3 * a + b] for b in range(3)] for a in range(3)]
    C = [[m[..., 9 + 2 * a + b] for b in range(2)] for a in range(2)]
    S = m[..., 13]
    t = float(exposure)
    with np.errstate(invalid="ignore"):
        cross = a0 * C[0][0] + a1 * C[1][0] + a2 * C[0][1] + a3 * C[1][1]
        quad = (
            a0 * a0 * V[0][0]
            + 2 * a0 * a1 * V[1][0]
            + 2 * a0 * a2 * V[0][1]
            + (2 * a0 * a3 + 2 * a1 * a2) * V[1][1]
            + a1 * a1 * V[2][0]
            + a2 * a2 * V[0][2]
            + 2 * a1 * a3 * V[2][1]
            + 2 * a2 * a3 * V[1][2]
            + a3 * a3 * V[2][2]
        )
        pred = a0 * V[0][0] + a1 * V[1][0] + a2 * V[0][1] + a3 * V[1][1]
    ok = ~bad & (V[0][0] > 0)
    cell_sq = S[ok] / t**2 - 2.0 * cross[ok] / t + quad[ok]
    e = cell_sq - C[0][0][ok] / t**2
    n = V[0][0][ok]
    return np.array(
        [
            cell_sq.sum(),
            C[0][0][ok].sum() / t**2,
            C[0][0][ok].sum() / t,
            pred[ok].sum(),
            n.sum(),
            V[0][0][bad].sum(),
            (e * e).sum(),
            (e * n).sum(),
            (n * n).sum(),
        ]
    )


def score_cells(
    moments: np.ndarray,
    plane: np.ndarray,
    cells: tuple[int, int],
    exposure: float,
    res: np.ndarray,
) -> None:
    """Add a prediction's squared-error sums over the cells into ``res``.

    Args:
        moments: (>= cells[0], nbx, 14) cell moments of one frame (rows of cells).
        plane: (rows, nbx) the map interpolated to the frame's phi, the same
            first row as ``moments``; one more row than cells when it exists.
        cells: (cells along y, cells along x) to score.
        exposure: the frame's exposure time.
        res: float64 (9,) accumulator: sum (r - b)^2, sum c/t^2, sum r, sum b,
            valid pixels with a finite prediction, valid pixels with a NaN one,
            then sum e^2, sum e n, sum n^2 over cells (e: a cell's sum of
            (r - b)^2 - c/t^2, n: its pixels) for the standard error.
    """
    c = lib.library()
    if c is None:
        res += score_cells_reference(moments, plane, cells, exposure)
        return
    moments = np.ascontiguousarray(moments, dtype=np.float64)
    plane = np.ascontiguousarray(plane, dtype=np.float64)
    c.mdx_score_cells(
        lib.ptr(moments), lib.ptr(plane), plane.shape[0], plane.shape[1], cells[0], cells[1],
        float(exposure), lib.ptr(res),
    )  # fmt: skip
