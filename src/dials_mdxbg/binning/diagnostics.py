"""How good is a binned map? NaN poisoning, dispersion and held-out error, on arrays.

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
from dataclasses import dataclass, field

import numpy as np

from dials_mdxbg.binning.grid import BinGrid, axis_bin_means
from dials_mdxbg.binning.sums import BinSums

N_MOMENTS = 14
"""Moments per cell: V_ab (a, b < 3) at 3a + b, C_ab (a, b < 2) at 9 + 2a + b, S at 13."""


# --------------------------------------------------------------------------- stencils


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


# --------------------------------------------------------------------------- moments and score


def cell_moments_reference(
    counts: np.ndarray, valid: np.ndarray, grid: CellGrid, row0: int = 0
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
    grids: list[CellGrid],
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
    from dials_mdxbg.native.backend import backend

    backend().cell_moments(np.ascontiguousarray(block), grids, valid_range, keep, row0, outs)


N_SCORE = 9
"""Score sums: (r-b)^2, c/t^2, r, b, pixels, NaN pixels, then e^2, e n, n^2 over cells."""


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
    from dials_mdxbg.native.backend import backend

    backend().score_cells(moments, plane, cells, exposure, res)


# --------------------------------------------------------------------------- dispersion


def dispersion(sums: BinSums) -> np.ndarray:
    """Variance-to-mean ratio of each bin's valid counts (NaN with < 2 counts or mean <= 0).

    ``var = (sum c^2 - (sum c)^2 / n) / (n - 1)``, ``mean = sum c / n``: about 1
    for Poisson counts of a background flat within the bin; larger when the bin
    smears structure (rings, the shadow's edge) or holds outliers.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        n = sums.count.astype(np.float64)
        total = sums.total.astype(np.float64)
        mean = total / n
        var = (sums.total_sq - total * mean) / (n - 1)
        out = var / mean
    out[(sums.count < 2) | ~(mean > 0)] = np.nan
    return out


def dispersion_summary(
    vmr: np.ndarray,
    axes: tuple[np.ndarray, np.ndarray, np.ndarray],
    threshold: float,
    n_worst: int = 10,
) -> dict:
    """Median, 95th percentile, fraction above ``threshold`` and the worst bins."""
    finite = np.isfinite(vmr)
    values = vmr[finite]
    summary = {"bins": int(values.size), "threshold": float(threshold)}
    if not values.size:
        return {**summary, "median": None, "p95": None, "fraction_above": None, "worst": []}
    flat = np.flatnonzero(finite.ravel())
    values_flat = vmr.ravel()[flat]
    if values_flat.size > n_worst:  # the top n only: a full sort of a fine map is slow
        top = np.argpartition(values_flat, values_flat.size - n_worst)[-n_worst:]
    else:
        top = np.arange(values_flat.size)
    order = flat[top[np.argsort(values_flat[top], kind="stable")[::-1]]]
    worst = []
    for i in order:
        k, j, m = np.unravel_index(i, vmr.shape)
        worst.append(
            {
                "phi": float(axes[0][k]),
                "iy": float(axes[1][j]),
                "ix": float(axes[2][m]),
                "dispersion": float(vmr[k, j, m]),
            }
        )
    return {
        **summary,
        "median": float(np.median(values)),
        "p95": float(np.percentile(values, 95)),
        "fraction_above": float(np.mean(values > threshold)),
        "worst": worst,
    }


# --------------------------------------------------------------------------- parity maps


class ParityGrid(BinGrid):
    """A bin grid whose phi bins are split by frame parity: bin ``2k + (frame % 2)``.

    Binning with it gives the even and the odd frames' sums in one pass, at
    the cost of one pass; their sum is the plain map's sums, exactly.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self.bin_phi_index = self.phi_index
        self.phi_index = 2 * self.phi_index + (np.arange(self.shape[0]) % 2)

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """(2 * phi bins, y bins, x bins)."""
        n, ny, nx = super().out_shape
        return (2 * n, ny, nx)


def merge_parities(sums: BinSums) -> BinSums:
    """The plain map's sums from parity sums (exact: integers, and float squares < 2^53)."""

    def fold(a: np.ndarray) -> np.ndarray:
        return a[0::2] + a[1::2]

    merged = BinSums(fold(sums.total), fold(sums.count), fold(sums.total_sq))
    merged.values = sums.values  # a histogram of sampled frames, if any, is per frame
    return merged


def split_parities(sums: BinSums) -> tuple[BinSums, BinSums]:
    """(even, odd) sums, each (phi bins, y, x)."""
    return tuple(  # type: ignore[return-value]
        BinSums(sums.total[p::2], sums.count[p::2], sums.total_sq[p::2]) for p in (0, 1)
    )


@dataclass
class HalfMap:
    """The map of one parity's frames: its own phi axis (phi bins without such frames dropped).

    Attributes:
        phi: mean phi of this parity's frames in each kept phi bin.
        signal: counts/s (kept phi bins, y, x), NaN where empty.
        count: valid pixels per bin.
    """

    phi: np.ndarray
    signal: np.ndarray
    count: np.ndarray | None


def half_map(sums: BinSums, grid: BinGrid, phi: np.ndarray, times: np.ndarray, parity: int):
    """The map of the frames of ``parity`` alone, binned on ``grid``'s bins.

    Returns None when no phi bin holds a frame of that parity.
    """
    keep, centres, scale = [], [], []
    for k in range(grid.out_shape[0]):
        a, b = grid.phi_bin_frames(k)
        frames = np.arange(a, b)
        frames = frames[frames % 2 == parity]
        if frames.size:
            keep.append(k)
            centres.append(phi[frames].mean())
            scale.append(times[frames].mean())
    if not keep:
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums.total[keep] * 1.0 / sums.count[keep]
    mean[sums.count[keep] == 0] = np.nan
    signal = mean / np.array(scale)[:, None, None]
    return HalfMap(np.array(centres), signal, sums.count[keep].copy())


# --------------------------------------------------------------------------- scoring pass


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

    def __post_init__(self) -> None:
        # A map without NaN poisons nothing: no need to score it for NaN pixels.
        self._full_has_nan = bool(np.isnan(self.full_signal).any())
        if not self._full_has_nan:
            self.full_signal = None  # not needed: frees a map per candidate of bins=auto
        self._full_stencil = axis_cells(self.frame_phi, self.full_phi)
        self._half_stencil = [
            axis_cells(self.frame_phi, h.phi) if h is not None else None for h in self.halves
        ]

    @staticmethod
    def _plane_rows(signal, cell, weight, rows: slice) -> np.ndarray:
        lower = signal[cell, rows]
        if cell + 1 < signal.shape[0]:
            # as map_coordinates: weight 0 times NaN is NaN
            return (1.0 - weight) * lower + weight * signal[cell + 1, rows]
        return (1.0 - weight) * lower

    def score_frame(self, frame: int, moments: np.ndarray, cy: tuple[int, int], acc) -> None:
        """Add frame ``frame``'s cell moments (cells ``cy[0]..cy[1]`` along y) into ``acc``."""
        k = int(self.phi_bin[frame])
        cy0, cy1 = cy
        rows = slice(cy0, min(cy1 + 1, self.grid.shape[0]))
        cells = (cy1 - cy0, self.grid.cells[1])
        t = float(self.exposure[frame])
        m = moments[cy0:cy1]
        if self._full_has_nan:
            cell, weight = self._full_stencil
            plane = self._plane_rows(self.full_signal, int(cell[frame]), float(weight[frame]), rows)
            res = np.zeros(N_SCORE)
            score_cells(m, plane, cells, t, res)
            acc.nan_full[k] += res[5]
        other = 1 - frame % 2
        half = self.halves[other]
        if half is None:
            return
        cell, weight = self._half_stencil[other]
        plane = self._plane_rows(half.signal, int(cell[frame]), float(weight[frame]), rows)
        score_cells(m, plane, cells, t, acc.heldout[k])


class ScoreSums:
    """Per-thread accumulators of several :class:`MapScorer` (mergeable)."""

    def __init__(self, scorers: list[MapScorer]):
        self.items = [_Acc(len(np.unique(s.phi_bin))) for s in scorers]
        self.buffers: list[np.ndarray] | None = None  # per-thread moment arrays

    def merge(self, other: ScoreSums) -> ScoreSums:
        """Add ``other`` into this one and return self."""
        for a, b in zip(self.items, other.items):
            a.heldout += b.heldout
            a.nan_full += b.nan_full
        return self


class _Acc:
    def __init__(self, n_phi: int):
        self.heldout = np.zeros((n_phi, N_SCORE))
        self.nan_full = np.zeros(n_phi)


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

    def consume(acc: ScoreSums, frame0: int, row0: int, block) -> None:
        from dials_mdxbg.frames.source import RawFrame

        if isinstance(block, RawFrame):
            block = block.masked()[0][np.newaxis]
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
            for s, i, item in zip(scorers, which, acc.items):
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
) -> MapScorer:
    """A :class:`MapScorer` for the map of ``bins`` (full signal given, halves from sums).

    Args:
        fill: optional ``signal, empty -> signal`` applied to the half maps (fill_empty).
        grid_cache: shares one :class:`CellGrid` between maps of the same y/x bins.
    """
    grid = BinGrid(axes.shape, bins)
    n, ny, nx = axes.shape
    key = bins[1:]
    cache = grid_cache if grid_cache is not None else {}
    if key not in cache:
        cache[key] = CellGrid.make(
            ny, nx, axis_bin_means(axes.iy, bins[1]), axis_bin_means(axes.ix, bins[2])
        )
    halves = []
    for p, part in enumerate(split_parities(parity_sums)):
        half = half_map(part, grid, axes.phi, axes.exposure_times, p)
        if half is not None and fill is not None and (half.count == 0).any():
            if (half.count == 0).all():
                half = None
            else:
                half.signal = fill(half.signal, half.count == 0)
        if half is not None:
            half.count = None  # only needed to fill
        halves.append(half)
    return MapScorer(
        bins=bins,
        grid=cache[key],
        phi_bin=grid.phi_index,
        full_signal=full_signal,
        full_phi=axis_bin_means(axes.phi, bins[0]),
        halves=tuple(halves),
        frame_phi=axes.phi,
        exposure=axes.exposure_times,
    )
