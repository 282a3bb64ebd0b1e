"""Held-out error and NaN pixels of a binned map, from the cell moments of every frame.

**Held-out error.** The map of the even frames predicts the odd frames' count
rates with that interpolation, and the reverse. For a valid pixel with count
``c`` in a frame of exposure ``t``, rate ``r = c/t`` and prediction ``b``,
``E[(r - b)^2] = E[c]/t^2 + E[(lambda/t - b)^2]`` (Poisson noise of the held-out
pixel is independent of the other half's map), so
``mean (r - b)^2 - mean c/t^2`` estimates the squared error of the background
itself (bias^2 + variance of a half-data map). Its square root relative to the
mean rate is the "model error, % of background".

**Fast evaluation.** Inside one interpolation cell the prediction is bilinear,
``b = a0 + a1 u + a2 w + a3 u w`` (``u``, ``w``: the pixel's y and x weights),
so ``sum (r - b)^2`` over the cell's valid pixels follows from 14 moments of
the frame (``sum u^a w^b``, ``sum c u^a w^b``, ``sum c^2``, :func:`cell_moments`):
one pass over the pixels per pixel grid, then ~50 flops per cell per map
(:func:`score_cells`), whatever the number of candidate frame bins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dials_mdxbg.binning.grid import BinGrid, axis_bin_means
from dials_mdxbg.binning.parity import HalfMap, half_map, parity_bins, split_parities
from dials_mdxbg.binning.score import (
    N_FRAME,
    bin_variance,
    corner_weights,
    prediction_variance,
    variance_rows,
)
from dials_mdxbg.binning.stencil import CellGrid, axis_cells
from dials_mdxbg.binning.sums import BinSums
from dials_mdxbg.model import as_block
from dials_mdxbg.native.moment_kernels import N_MOMENTS, N_SCORE, cell_moments, score_cells


def plane_rows(lower: np.ndarray, upper: np.ndarray | None, weight: float) -> np.ndarray:
    """Rows of a map at a frame's phi: its two stencil planes (``upper`` None past the end)."""
    if upper is not None:
        # as map_coordinates: weight 0 times NaN is NaN
        return (1.0 - weight) * lower + weight * upper
    return (1.0 - weight) * lower


def signal_rows(signal: np.ndarray, cell: int, weight: float, rows: slice) -> np.ndarray:
    """:func:`plane_rows` of a whole map ``signal`` (phi, y, x) in phi cell ``cell``."""
    upper = signal[cell + 1, rows] if cell + 1 < signal.shape[0] else None
    return plane_rows(signal[cell, rows], upper, weight)


def frame_cells(scorer, frame: int, moments: np.ndarray, cy: tuple[int, int]):
    """What scoring one frame takes, for a scorer with ``phi_bin``, ``grid``, ``exposure``.

    Returns:
        (phi bin, rows of the map planes, cells to score, exposure, the cells' moments).
    """
    cy0, cy1 = cy
    rows = slice(cy0, min(cy1 + 1, scorer.grid.shape[0]))
    cells = (cy1 - cy0, scorer.grid.cells[1])
    t = float(scorer.exposure[frame])
    return int(scorer.phi_bin[frame]), rows, cells, t, moments[cy0:cy1]


@dataclass
class MapScorer:
    """Held-out and NaN-pixel accounting of one map (one candidate bin size).

    The full map's NaN pixels and, for each frame, the other parity's map as
    prediction; sums per phi bin of the full map (rows of ``heldout``: the six
    score sums; ``nan_full``: valid pixels with a NaN background under the full map).
    """

    bins: tuple[int, int, int]
    grid: CellGrid
    phi_bin: np.ndarray  # full map's phi bin of each frame
    full_signal: np.ndarray | None
    full_phi: np.ndarray
    halves: tuple[HalfMap | None, HalfMap | None]
    frame_phi: np.ndarray
    exposure: np.ndarray
    # Bin variances (per unit gain) of the halves and of the full map, for the
    # corrected score (bins=auto); None: not scored that way.
    half_var: tuple[np.ndarray | None, np.ndarray | None] | None = None
    full_var: np.ndarray | None = None

    def __post_init__(self) -> None:
        # A map without NaN poisons nothing: no need to score it for NaN pixels.
        self._full_has_nan = bool(np.isnan(self.full_signal).any())
        if not self._full_has_nan:
            self.full_signal = None  # not needed: frees a map per candidate of bins=auto
        self._full_stencil = axis_cells(self.frame_phi, self.full_phi)
        self._half_stencil = [
            axis_cells(self.frame_phi, h.phi) if h is not None else None for h in self.halves
        ]

    @property
    def wants_variance(self) -> bool:
        """True when scored with the variance terms (needs corner weights)."""
        return self.half_var is not None

    def score_frame(
        self, frame: int, moments: np.ndarray, cy: tuple[int, int], acc, weights=None
    ) -> None:
        """Add frame ``frame``'s cell moments (cells ``cy[0]..cy[1]`` along y) into ``acc``
        (``weights``: their :func:`~dials_mdxbg.binning.score.corner_weights`, if wanted)."""
        k, rows, cells, t, m = frame_cells(self, frame, moments, cy)
        if self._full_has_nan:
            cell, weight = self._full_stencil
            plane = signal_rows(self.full_signal, int(cell[frame]), float(weight[frame]), rows)
            res = np.zeros(N_SCORE)
            score_cells(m, plane, cells, t, res)
            acc.nan_full[k] += res[5]
        other = 1 - frame % 2
        half = self.halves[other]
        if half is None:
            return
        cell, weight = self._half_stencil[other]
        c, w = int(cell[frame]), float(weight[frame])
        plane = signal_rows(half.signal, c, w, rows)
        if self.half_var is None:
            score_cells(m, plane, cells, t, acc.heldout[k])
            return
        res = np.zeros(N_SCORE)
        score_cells(m, plane, cells, t, res)
        acc.heldout[k] += res
        var = self.half_var[other]
        upper = var[c + 1, rows] if c + 1 < var.shape[0] else None
        v_half = prediction_variance(weights, variance_rows(var[c, rows], upper, w))
        fc, fw = self._full_stencil
        c, w = int(fc[frame]), float(fw[frame])
        upper = self.full_var[c + 1, rows] if c + 1 < self.full_var.shape[0] else None
        v_full = prediction_variance(weights, variance_rows(self.full_var[c, rows], upper, w))
        add_frame(acc.per_frame[frame], res, v_half, v_full)


def add_frame(row: np.ndarray, res: np.ndarray, v_half: float, v_full: float) -> None:
    """Add one prediction's score sums ``res`` and variances into a frame's row."""
    row += (res[0], res[1], res[2], v_half, v_full, res[4])


class ScoreSums:
    """Per-thread accumulators of several :class:`MapScorer` (mergeable)."""

    def __init__(self, scorers: list[MapScorer]):
        self.items = [_Acc(len(np.unique(s.phi_bin)), len(s.phi_bin)) for s in scorers]
        self.buffers: list[np.ndarray] | None = None  # per-thread moment arrays

    def merge(self, other: ScoreSums) -> ScoreSums:
        """Add ``other`` into this one and return self."""
        for a, b in zip(self.items, other.items):
            a.heldout += b.heldout
            a.nan_full += b.nan_full
            a.per_frame += b.per_frame
        return self


class _Acc:
    def __init__(self, n_phi: int, n_frames: int = 0):
        self.heldout = np.zeros((n_phi, N_SCORE))
        self.nan_full = np.zeros(n_phi)
        self.per_frame = np.zeros((n_frames, N_FRAME))  # corrected score's sums


def consume_for(
    scorers: list[MapScorer],
    valid_range: tuple[int, int] | None,
    excluded=None,
):
    """A block consumer for :func:`dials_mdxbg.binning.blocks.run_blocks` that scores maps.

    Moments are computed once per pixel grid (maps that share one share them).
    """
    grids: list[CellGrid] = []
    which: list[int] = []
    for s in scorers:
        for i, g in enumerate(grids):
            if g is s.grid:
                which.append(i)
                break
        else:
            which.append(len(grids))
            grids.append(s.grid)
    # Corner weights (variance terms) once per pixel grid and frame, for the maps wanting them.
    weighted = {i for s, i in zip(scorers, which) if getattr(s, "wants_variance", False)}

    def consume(acc: ScoreSums, frame0: int, row0: int, block) -> None:
        block = as_block(block)
        n, rows, _ = block.shape
        ex = excluded(frame0, row0, block.shape) if excluded else None
        spans = []
        for g in grids:
            cy0 = int(g.y_cell[row0])
            cy1 = int(g.y_cell[row0 + rows - 1]) + 1
            spans.append((cy0, cy1))
        if acc.buffers is None:
            acc.buffers = [np.zeros((*g.shape, N_MOMENTS)) for g in grids]
        outs = acc.buffers
        for f in range(n):
            for (cy0, cy1), out in zip(spans, outs):
                out[cy0:cy1] = 0.0
            keep = None if ex is None else ~ex[f]
            cell_moments(block[f], grids, outs, valid_range, keep, row0)
            weights = {}
            for i in weighted:
                (cy0, cy1), g = spans[i], grids[i]
                weights[i] = corner_weights(outs[i][cy0:cy1], (cy1 - cy0, g.cells[1]))
            for s, i, item in zip(scorers, which, acc.items):
                if i in weighted:
                    s.score_frame(frame0 + f, outs[i], spans[i], item, weights[i])
                else:
                    s.score_frame(frame0 + f, outs[i], spans[i], item)

    return consume


def summarize(acc: _Acc, phi_centres: np.ndarray) -> dict:
    """Model error (overall and per phi bin) and NaN pixels from a scorer's sums."""

    def one(h: np.ndarray) -> dict:
        sq, pois, rate, _pred, n, n_nan, ee, en, nn = h
        if n <= 0:
            return {"pixels": 0, "model_error": None, "model_error_percent": None}
        err2 = (sq - pois) / n
        mean = rate / n
        # Standard error of err2, the (frame, cell) sums taken as independent samples:
        # sum over cells of (e - n err2)^2, divided by n^2.
        se = math.sqrt(max(ee - 2 * err2 * en + err2 * err2 * nn, 0.0)) / n

        def percent(x: float) -> float:
            return 100.0 * math.sqrt(max(x, 0.0)) / mean if mean > 0 else float("nan")

        return {
            "pixels": int(n),
            "pixels_nan": int(n_nan),
            "mean_rate": mean,
            "model_error_sq": err2,
            "model_error_sq_se": se,
            "model_error": math.sqrt(max(err2, 0.0)),
            "model_error_percent": percent(err2),
            "model_error_percent_2se": [percent(err2 - 2 * se), percent(err2 + 2 * se)],
        }

    total = one(acc.heldout.sum(axis=0))
    per_phi = []
    for k, phi in enumerate(phi_centres):
        row = one(acc.heldout[k])
        row["phi"] = float(phi)
        row["nan_pixels"] = int(acc.nan_full[k])
        per_phi.append(row)
    return {"heldout": total, "nan_pixels": int(acc.nan_full.sum()), "per_phi_bin": per_phi}


def make_scorer(
    bins: tuple[int, int, int],
    axes,
    full_signal: np.ndarray,
    parity_sums: BinSums,
    fill=None,
    grid_cache: dict | None = None,
    variance: bool = False,
) -> MapScorer:
    """A :class:`MapScorer` for the map of ``bins`` (full signal given, halves from sums).

    Args:
        fill: optional ``signal, empty -> signal`` applied to the half maps (fill_empty).
        grid_cache: shares one :class:`CellGrid` between maps of the same y/x bins.
        variance: also the per-frame sums of the corrected score (bins=auto).
    """
    grid = BinGrid(axes.shape, bins)
    n, ny, nx = axes.shape
    key = bins[1:]
    cache = grid_cache if grid_cache is not None else {}
    if key not in cache:
        cache[key] = CellGrid.make(
            ny, nx, axis_bin_means(axes.iy, bins[1]), axis_bin_means(axes.ix, bins[2])
        )
    halves, half_var = [], []
    for p, part in enumerate(split_parities(parity_sums)):
        half = half_map(part, grid, axes.phi, axes.exposure_times, p)
        var = None
        if half is not None and variance:
            _, _, scale = parity_bins(grid, grid.out_shape[0], axes.phi, axes.exposure_times, p)
            var = bin_variance(half.signal, half.count, np.array(scale)[:, None, None])
        if half is not None and fill is not None and (half.count == 0).any():
            if (half.count == 0).all():
                half, var = None, None
            else:
                empty = half.count == 0
                half.signal = fill(half.signal, empty)
                var = fill(var, empty) if var is not None else None
        if half is not None:
            half.count = None  # only needed to fill
        halves.append(half)
        half_var.append(var)
    full_var = None
    if variance:
        full_var = full_variance(full_signal, parity_sums, grid, axes.exposure_times, fill)
    return MapScorer(
        bins=bins,
        grid=cache[key],
        phi_bin=grid.phi_index,
        full_signal=full_signal,
        full_phi=axis_bin_means(axes.phi, bins[0]),
        halves=tuple(halves),
        frame_phi=axes.phi,
        exposure=axes.exposure_times,
        half_var=tuple(half_var) if variance else None,
        full_var=full_var,
    )


def full_variance(signal, parity_sums: BinSums, grid: BinGrid, times, fill) -> np.ndarray:
    """Bin variances (per unit gain) of the full map, filled as the map is."""
    count = parity_sums.count[0::2] + parity_sums.count[1::2]
    edges = grid.phi_edges
    scale = np.array([times[a:b].mean() for a, b in zip(edges[:-1], edges[1:])])
    var = bin_variance(signal, count, scale[:, None, None])
    empty = count == 0
    if fill is not None and empty.any() and not empty.all():
        var = fill(var, empty)
        var[empty.all(axis=(1, 2))] = 0.0  # as the streamed planes: nothing predicts them
    return var
