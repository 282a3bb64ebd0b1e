"""bins=auto in bounded memory: candidates binned and scored window by window.

The held-out score of a frame needs only the phi planes of the other parity's
map around the frame (its interpolation stencil: at most two planes, within two
phi bins of the frame's), and the NaN-pixel count only the full map's planes
around it. So the frames are binned in windows of a few frames (every
candidate at once, :class:`~dials_mdxbg.binning.auto.MultiBinner`); as soon as
a candidate's phi bin is complete its even/odd planes are turned into half-map
planes and its exact sums go to a temporary file; frames whose stencil planes
all exist are then read again and scored, and planes no longer needed are
dropped. Memory is a window of sums plus a few planes per candidate, whatever
the number of frames; the per-plane arithmetic is the in-memory code's, so the
scores agree to rounding (summation order) and the chosen map, rebuilt from its
exact sums, is identical to ``bins=<chosen>`` by hand.

One case holds planes longer: with ``fill_empty``, a half-map phi plane without
any valid pixel takes the mean of the nearest non-empty planes before and after
it, so frames around it wait until the next non-empty plane exists.
"""

from __future__ import annotations

import tempfile

import numpy as np

from dials_mdxbg.binning.grid import axis_bin_means
from dials_mdxbg.binning.heldout import _Acc, add_frame, frame_cells, plane_rows
from dials_mdxbg.binning.parity import ParityGrid, parity_bins
from dials_mdxbg.binning.quality import dispersion
from dials_mdxbg.binning.score import bin_variance, prediction_variance, variance_rows
from dials_mdxbg.binning.stencil import CellGrid, axis_cells
from dials_mdxbg.binning.sums import BinSums
from dials_mdxbg.native.moment_kernels import N_SCORE, score_cells

SELECT_CHUNK = 1 << 20
"""Values per chunk when quantiles are selected from a file (8 MB of float64)."""


def _plane_rows(planes: dict, n: int, cell: int, weight: float, rows: slice) -> np.ndarray:
    upper = planes[cell + 1][rows] if cell + 1 < n else None
    return plane_rows(planes[cell][rows], upper, weight)


class _Half:
    """One parity's map of a candidate, built plane by plane (phi bins with such frames)."""

    def __init__(self, grid: ParityGrid, phi: np.ndarray, times: np.ndarray, parity: int):
        keep, centres, scale = parity_bins(grid, grid.out_shape[0] // 2, phi, times, parity)
        self.keep = np.array(keep, dtype=np.int64)
        self.position = {k: j for j, k in enumerate(keep)}
        self.phi = np.array(centres)
        self.scale = np.array(scale)
        self.planes: dict[int, np.ndarray] = {}  # kept position -> signal plane
        self.var: dict[int, np.ndarray] = {}  # kept position -> bin variance plane
        self.last_full: tuple | None = None  # last non-empty filled (signal, var) (fill_empty)
        self.pending: list[tuple[int, np.ndarray | None]] = []  # empty planes to fill
        self.any_valid = False

    def add(self, k: int, total: np.ndarray, count: np.ndarray, fill) -> None:
        """Plane of phi bin ``k`` from this parity's sums (as half_map, then fill_empty),
        with its bin variances (per unit gain) beside it."""
        j = self.position.get(k)
        if j is None:
            return
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total * 1.0 / count
        empty = count == 0
        mean[empty] = np.nan
        signal = mean / self.scale[j]
        var = bin_variance(signal, count, self.scale[j])
        if fill is None:
            self.planes[j] = signal
            self.var[j] = var
            return
        if empty.all():  # filled from the nearest non-empty planes: wait for the next one
            self.pending.append((j, self.last_full))
            return
        self.any_valid = True
        if empty.any():
            signal = fill(signal[np.newaxis], empty[np.newaxis])[0]
            var = fill(var[np.newaxis], empty[np.newaxis])[0]
        for p, before in self.pending:
            self._fill_from(p, [before, (signal, var)] if before is not None else [(signal, var)])
        self.pending = []
        self.planes[j] = signal
        self.var[j] = var
        self.last_full = (signal, var)

    def _fill_from(self, p: int, near: list) -> None:
        self.planes[p] = np.mean([n[0] for n in near], axis=0)
        self.var[p] = np.mean([n[1] for n in near], axis=0)

    def finish(self) -> None:
        """End of the sweep: empty planes after the last non-empty one."""
        for p, before in self.pending:
            if before is not None:
                self._fill_from(p, [before])
        self.pending = []


class CandidateStream:
    """One candidate of bins=auto, streamed: planes, score sums, spilled sums and dispersion.

    Has what :func:`~dials_mdxbg.binning.heldout.consume_for` needs of a
    scorer (``grid``, ``phi_bin``, :meth:`score_frame`).
    """

    def __init__(self, grid: ParityGrid, axes, cell_grid: CellGrid, fill, threshold: float):
        self.parity_grid = grid
        self.bins = tuple(grid.bins)
        self.grid = cell_grid
        self.fill = fill
        self.threshold = threshold
        self.phi_bin = grid.bin_phi_index
        self.n_bins = grid.out_shape[0] // 2
        self.plane_shape = grid.out_shape[1:]
        self.exposure = axes.exposure_times
        phi = axes.phi
        self.full_phi = axis_bin_means(phi, grid.bins[0])
        self.halves = [_Half(grid, phi, axes.exposure_times, p) for p in (0, 1)]
        self._half_stencil = [axis_cells(phi, h.phi) if h.keep.size else None for h in self.halves]
        self._full_stencil = axis_cells(phi, self.full_phi)
        # NaN pattern of the full map's planes (only without fill_empty: filled maps
        # have none); None = no NaN in that plane.
        self.full_nan: dict[int, np.ndarray | None] = {}
        self.full_var: dict[int, np.ndarray] = {}  # bin variances of the full map's planes
        edges = grid.phi_edges
        times = axes.exposure_times
        self._full_scale = [times[a:b].mean() for a, b in zip(edges[:-1], edges[1:])]
        self.partial: dict[int, BinSums] = {}  # incomplete phi bins: parity sums (2, y, x)
        self.done = 0  # phi bins complete
        self.acc = _Acc(self.n_bins, self.phi_bin.size)
        self.empty_bins = 0
        self.n_dispersion = 0
        self.n_above = 0
        self._sums_file = tempfile.TemporaryFile(prefix="mdxbg-auto-")
        self._disp_file = tempfile.TemporaryFile(prefix="mdxbg-auto-")
        self._lo = [self._suffix_min(p) for p in (0, 1)]
        self._lo_full = np.minimum.accumulate(self._full_stencil[0][::-1])[::-1]

    def _suffix_min(self, parity: int) -> np.ndarray | None:
        """Per frame, the lowest half-map plane of ``parity`` any later frame needs."""
        stencil = self._half_stencil[parity]
        if stencil is None:
            return None
        n = self.phi_bin.size
        cell = np.where(np.arange(n) % 2 != parity, stencil[0], np.iinfo(np.int64).max)
        return np.minimum.accumulate(cell[::-1])[::-1]

    def close(self) -> None:
        """Remove the temporary files."""
        self._sums_file.close()
        self._disp_file.close()

    # ------------------------------------------------------------------ binning

    def add_window(self, k0: int, sums: BinSums, frames_done: int) -> None:
        """Add a window's parity sums (phi bins from ``k0``); finish the complete bins."""
        for i in range(sums.total.shape[0] // 2):
            k = k0 + i
            part = BinSums(
                sums.total[2 * i : 2 * i + 2],
                sums.count[2 * i : 2 * i + 2],
                sums.total_sq[2 * i : 2 * i + 2],
            )
            if k in self.partial:
                self.partial[k].merge(part)
            else:
                self.partial[k] = BinSums(
                    part.total.copy(), part.count.copy(), part.total_sq.copy()
                )
        edges = self.parity_grid.phi_edges
        while self.done < self.n_bins and edges[self.done + 1] <= frames_done:
            self._complete(self.done, self.partial.pop(self.done))
            self.done += 1
        if self.done == self.n_bins:
            for h in self.halves:
                h.finish()

    def _complete(self, k: int, sums: BinSums) -> None:
        for p, h in enumerate(self.halves):
            h.add(k, sums.total[p], sums.count[p], self.fill)
        plain = BinSums(
            sums.total[0] + sums.total[1],
            sums.count[0] + sums.count[1],
            sums.total_sq[0] + sums.total_sq[1],
        )
        empty = plain.count == 0
        self.empty_bins += int(np.count_nonzero(empty))
        if self.fill is None:
            self.full_nan[k] = np.where(empty, np.nan, 0.0) if empty.any() else None
        self.full_var[k] = self._full_variance(k, plain, empty)
        vmr = dispersion(plain)
        values = vmr[np.isfinite(vmr)]
        self.n_dispersion += values.size
        self.n_above += int(np.count_nonzero(values > self.threshold))
        self._disp_file.write(values.astype(np.float64).tobytes())
        for a in (plain.total, plain.count, plain.total_sq):
            self._sums_file.write(np.ascontiguousarray(a, dtype=a.dtype).tobytes())

    def _full_variance(self, k: int, plain: BinSums, empty: np.ndarray) -> np.ndarray:
        """Plane ``k``'s bin variances (per unit gain), filled as the written map is
        (a plane without any valid bin: zero, as nothing predicts it)."""
        scale = self._full_scale[k]
        with np.errstate(invalid="ignore", divide="ignore"):
            signal = plain.total * 1.0 / plain.count / scale
        var = bin_variance(signal, plain.count, scale)
        if self.fill is not None and empty.any():
            if empty.all():
                return np.zeros(self.plane_shape)
            var = self.fill(var[np.newaxis], empty[np.newaxis])[0]
        return var

    # ------------------------------------------------------------------ scoring

    def ready(self, frame: int) -> bool:
        """True when every plane the frame's scores use exists."""
        if self.done == self.n_bins:
            return True  # all there is (a filled half without any valid bin is skipped)
        other = 1 - frame % 2
        stencil = self._half_stencil[other]
        if stencil is not None:
            h = self.halves[other]
            c = int(stencil[0][frame])
            for j in (c, c + 1):
                if j < h.keep.size and j not in h.planes:
                    return False
        c = int(self._full_stencil[0][frame])
        return min(c + 1, self.n_bins - 1) < self.done

    def drop(self, next_frame: int) -> None:
        """Drop the planes no frame from ``next_frame`` on needs."""
        n = self.phi_bin.size
        if next_frame >= n:
            for h in self.halves:
                h.planes.clear()
                h.var.clear()
            self.full_nan.clear()
            self.full_var.clear()
            return
        for h, lo in zip(self.halves, self._lo):
            if lo is not None:
                for j in [j for j in h.planes if j < lo[next_frame]]:
                    del h.planes[j]
                    h.var.pop(j, None)
        low = self._lo_full[next_frame]
        for k in [k for k in self.full_nan if k < low]:
            del self.full_nan[k]
        for k in [k for k in self.full_var if k < low]:
            del self.full_var[k]

    wants_variance = True  # the corrected score's terms: corner weights wanted

    def score_frame(
        self, frame: int, moments: np.ndarray, cy: tuple[int, int], acc, weights=None
    ) -> None:
        """As :meth:`~dials_mdxbg.binning.heldout.MapScorer.score_frame`, from planes."""
        k, rows, cells, t, m = frame_cells(self, frame, moments, cy)
        if self.fill is None:
            cell, weight = self._full_stencil
            c = int(cell[frame])
            near = [self.full_nan[c]] + ([self.full_nan[c + 1]] if c + 1 < self.n_bins else [])
            if any(p is not None for p in near):
                planes = {
                    j: (p if p is not None else np.zeros(self.plane_shape))
                    for j, p in zip((c, c + 1), near)
                }
                plane = _plane_rows(planes, self.n_bins, c, float(weight[frame]), rows)
                res = np.zeros(N_SCORE)
                score_cells(m, plane, cells, t, res)
                acc.nan_full[k] += res[5]
        other = 1 - frame % 2
        h = self.halves[other]
        stencil = self._half_stencil[other]
        if stencil is None or (self.fill is not None and not h.any_valid):
            return  # no map of that parity (or, filled, no valid bin in it)
        cell, weight = stencil
        c, w = int(cell[frame]), float(weight[frame])
        plane = _plane_rows(h.planes, h.keep.size, c, w, rows)
        res = np.zeros(N_SCORE)
        score_cells(m, plane, cells, t, res)
        acc.heldout[k] += res
        upper = h.var[c + 1][rows] if c + 1 < h.keep.size else None
        v_half = prediction_variance(weights, variance_rows(h.var[c][rows], upper, w))
        fc, fw = self._full_stencil
        c, w = int(fc[frame]), float(fw[frame])
        upper = self.full_var[c + 1][rows] if c + 1 < self.n_bins else None
        v_full = prediction_variance(weights, variance_rows(self.full_var[c][rows], upper, w))
        add_frame(acc.per_frame[frame], res, v_half, v_full)

    # ------------------------------------------------------------------ results

    def sums(self) -> BinSums:
        """The candidate's exact plain sums over the sweep (read back from the file)."""
        nb = int(np.prod(self.plane_shape))
        self._sums_file.seek(0)
        raw = np.fromfile(self._sums_file, dtype=np.int64).reshape(self.n_bins, 3, nb)
        shape = (self.n_bins, *self.plane_shape)
        return BinSums(
            raw[:, 0].reshape(shape).copy(),
            raw[:, 1].reshape(shape).copy(),
            raw[:, 2].copy().view(np.float64).reshape(shape),
        )

    def dispersion_figures(self) -> dict:
        """Median, 95th percentile and fraction above threshold of the finite dispersions."""
        n = self.n_dispersion
        if not n:
            return {"median": None, "p95": None, "fraction_above": None}
        f = self._disp_file
        if n <= SELECT_CHUNK:
            f.seek(0)
            values = np.fromfile(f, dtype=np.float64)
            median, p95 = float(np.median(values)), float(np.percentile(values, 95))
        else:
            median, p95 = file_quantiles(f, n, SELECT_CHUNK)
        return {"median": median, "p95": p95, "fraction_above": self.n_above / n}


# --------------------------------------------------------------------------- exact quantiles


def _keys(values: np.ndarray) -> np.ndarray:
    """uint64 keys ordered as the float64 values (IEEE bit trick)."""
    bits = values.view(np.uint64)
    negative = (bits >> np.uint64(63)).astype(bool)
    return np.where(negative, ~bits, bits | np.uint64(1 << 63))


def _chunks(f, n: int, chunk: int):
    f.seek(0)
    for _ in range(0, n, chunk):
        yield _keys(np.fromfile(f, dtype=np.float64, count=chunk))


def _to_float(key: int) -> float:
    bits = key & ~(1 << 63) if key >> 63 else ~key & (2**64 - 1)
    return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])


def _select(f, n: int, ranks: list[int], chunk: int) -> dict[int, float]:
    """The values of the given ranks (0-based, ascending order) of the file's ``n`` values.

    Radix selection on the ordered keys, 16 bits a pass, all ranks in the same
    passes; once the values sharing a rank's key prefix fit in ``chunk``, they
    are gathered and sorted (usually after one or two passes).
    """
    # rank -> [prefix, mask, rank among the values with that prefix, their number]
    state = {r: [0, 0, r, n] for r in set(ranks)}
    out: dict[int, float] = {}
    shift = 64
    while state:
        small = {r: v for r, v in state.items() if v[3] <= chunk or shift == 0}
        if small:
            groups: dict = {(v[0], v[1]): [] for v in small.values()}
            for keys in _chunks(f, n, chunk):
                for (p, m), parts in groups.items():
                    parts.append(keys[(keys & np.uint64(m)) == np.uint64(p)])
            for r, (p, m, rank, _) in small.items():
                values = np.sort(np.concatenate(groups[(p, m)]))
                out[r] = _to_float(int(values[rank]))
                del state[r]
            continue
        shift -= 16
        sh = np.uint64(shift)
        hists = {(v[0], v[1]): np.zeros(1 << 16, dtype=np.int64) for v in state.values()}
        for keys in _chunks(f, n, chunk):
            for (p, m), hist in hists.items():
                sel = keys[(keys & np.uint64(m)) == np.uint64(p)]
                digit = ((sel >> sh) & np.uint64(0xFFFF)).astype(np.int64)
                hist += np.bincount(digit, minlength=1 << 16)
        for v in state.values():
            hist = hists[(v[0], v[1])]
            cum = np.cumsum(hist)
            digit = int(np.searchsorted(cum, v[2], side="right"))
            v[2] -= int(cum[digit - 1]) if digit else 0
            v[3] = int(hist[digit])
            v[0] |= digit << shift
            v[1] |= 0xFFFF << shift
    return out


def file_quantiles(f, n: int, chunk: int = SELECT_CHUNK) -> tuple[float, float]:
    """Median and 95th percentile of ``n`` float64 values in a file, as numpy computes them.

    Exact order statistics in memory bounded by ``chunk`` values; the median is the mean of
    the middle two for even ``n`` and the percentile numpy's linear interpolation.
    """
    lo = (n - 1) // 2
    index = 0.95 * (n - 1)
    i = int(np.floor(index))
    t = index - i
    ranks = [lo, min(lo + 1, n - 1), i, min(i + 1, n - 1)]
    v = _select(f, n, ranks, chunk)
    median = v[lo] if n % 2 else float(np.mean([v[lo], v[lo + 1]]))
    a, b = v[i], v[min(i + 1, n - 1)]
    diff = b - a
    p95 = b - diff * (1 - t) if t >= 0.5 else a + diff * t
    return median, float(p95)
