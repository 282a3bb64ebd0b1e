"""bins=auto: every candidate bin size's even/odd sums from one pass, on arrays.

The candidates are all (frames, pixels, pixels) with ``frames`` from one list
and ``pixels`` (square bins, y = x) from another. One pass bins each frame
once on the *fine grid*: per axis the union of every candidate's section edges
(mdx2's rule), so each candidate's bin is an exact union of fine cells. The
fine sums (exact integers) are then added up into each candidate's bins, split
by frame parity (:class:`~dials_mdxbg.binning.parity.ParityGrid`), so the
chosen candidate's map is the one ``bins=<chosen>`` gives, to the last bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dials_mdxbg.binning.grid import section_edges
from dials_mdxbg.binning.parity import ParityGrid
from dials_mdxbg.binning.sums import BinSums
from dials_mdxbg.errors import InputError
from dials_mdxbg.model import as_block
from dials_mdxbg.native.bin_kernels import bin_block


def candidate_bins(
    n_frames: int, frames: list[int] | None, pixels: list[int] | None
) -> list[tuple[int, int, int]]:
    """All (frames, pixels, pixels) candidates that give at least two phi bins.

    A map with one phi bin cannot be used by mdx2 (``GridData.interpolate``
    fails on an axis of size 1), so such candidates are left out.

    Raises:
        InputError: an empty or non-positive list, or no candidate with two phi bins.
    """
    for name, values in (("auto.frames", frames), ("auto.pixels", pixels)):
        if not values:
            raise InputError(f"bins=auto needs at least one candidate in {name}")
        if any(v is None or v < 1 for v in values):
            raise InputError(f"{name} must be positive integers, got {list(values)}")
    out = [
        (int(f), int(p), int(p))
        for f in sorted(set(frames))
        for p in sorted(set(pixels))
        if math.ceil(n_frames / f) >= 2
    ]
    if not out:
        raise InputError(
            f"bins=auto: no candidate in auto.frames={sorted(set(frames))} gives two phi bins "
            f"for {n_frames} frames (mdx2 cannot interpolate a single phi bin)"
        )
    return out


@dataclass
class _Axis:
    """One axis' fine cells and, per candidate size, their bin starts."""

    fine_edges: np.ndarray  # union of the candidates' section edges
    index: np.ndarray  # fine cell of each element
    starts: dict[int, np.ndarray]  # size -> first fine cell of each section

    @classmethod
    def make(cls, n: int, sizes: list[int]) -> _Axis:
        edges = {s: section_edges(n, s) for s in sizes}
        fine = np.unique(np.concatenate(list(edges.values())))
        index = np.repeat(np.arange(len(fine) - 1), np.diff(fine))
        starts = {s: np.searchsorted(fine, e[:-1]) for s, e in edges.items()}
        return cls(fine, index, starts)


class MultiSums:
    """Parity sums of every candidate, filled block by block; mergeable."""

    def __init__(self, grids: list[ParityGrid], frames: tuple[int, int] | None = None):
        # With ``frames`` = [a, b): only the phi bins overlapping those frames
        # (the first one of each candidate at ``k0``), so memory is a window's.
        self.k0 = []
        self.sums = []
        for g in grids:
            n, ny, nx = g.out_shape
            k0, k1 = 0, n // 2
            if frames is not None:
                k0 = int(g.bin_phi_index[frames[0]])
                k1 = int(g.bin_phi_index[frames[1] - 1]) + 1
            self.k0.append(k0)
            self.sums.append(BinSums.zeros((2 * (k1 - k0), ny, nx)))

    def merge(self, other: MultiSums) -> MultiSums:
        """Add another partial result (in place) and return self."""
        for a, b in zip(self.sums, other.sums):
            a.merge(b)
        return self


class MultiBinner:
    """Bins blocks once on the fine grid and adds the fine sums into every candidate."""

    def __init__(self, shape: tuple[int, int, int], candidates: list[tuple[int, int, int]]):
        self.shape = shape
        self.candidates = candidates
        n, ny, nx = shape
        sizes = sorted({c[1] for c in candidates})
        self.y = _Axis.make(ny, sizes)
        self.x = _Axis.make(nx, sizes)
        self.grids = [ParityGrid(shape, c) for c in candidates]

    def zeros(self, frames: tuple[int, int] | None = None) -> MultiSums:
        """A fresh accumulator (of the phi bins overlapping ``frames`` only, if given)."""
        return MultiSums(self.grids, frames)

    def _fine_sums(self, block, row0, valid_range, excluded) -> BinSums:
        """Exact sums of a block (frames, rows, nx) per frame and fine (y, x) cell."""
        n, rows, nx = block.shape
        y_fine = self.y.index[row0 : row0 + rows]
        y0 = int(y_fine[0])
        ny_f = int(y_fine[-1]) - y0 + 1
        nx_f = len(self.x.fine_edges) - 1
        out = BinSums.zeros((n, ny_f, nx_f))
        keep = None if excluded is None else ~excluded
        bin_block(block, np.arange(n), y_fine - y0, self.x.fine_edges, valid_range, out, keep)
        return out

    def consume(self, acc: MultiSums, frame0: int, row0: int, block, valid_range, excluded):
        """Add a block into every candidate's parity sums."""
        block = as_block(block)
        n, rows, _ = block.shape
        ex = excluded(frame0, row0, block.shape) if excluded else None
        fine = self._fine_sums(block, row0, valid_range, ex)
        y_fine = self.y.index[row0 : row0 + rows]
        y0, y1 = int(y_fine[0]), int(y_fine[-1]) + 1
        per_size: dict[int, tuple] = {}
        for grid, sums, k0 in zip(self.grids, acc.sums, acc.k0):
            size = grid.bins[1]
            if size not in per_size:
                # Fine cells -> this size's bins: the sections overlapping rows y0..y1.
                ys = self.y.starts[size]
                first = int(np.searchsorted(ys, y0, side="right")) - 1
                last = int(np.searchsorted(ys, y1, side="left"))
                starts = np.clip(ys[first:last], y0, None) - y0
                xs = self.x.starts[size]

                def agg(a, starts=starts, xs=xs):
                    return np.add.reduceat(np.add.reduceat(a, starts, axis=1), xs, axis=2)

                per_size[size] = (
                    slice(first, last),
                    agg(fine.total),
                    agg(fine.count),
                    agg(fine.total_sq),
                )
            ybins, total, count, total_sq = per_size[size]
            for f in range(n):
                k = int(grid.phi_index[frame0 + f]) - 2 * k0
                sums.total[k, ybins] += total[f]
                sums.count[k, ybins] += count[f]
                sums.total_sq[k, ybins] += total_sq[f]


# Bytes per bin of a plane (estimates of binning.stream's holdings): per candidate the
# parity sums of an incomplete phi bin (2 x 24), the half maps' signal and variance
# planes (2 halves x 2 x 3 planes x 8) and the full map's variance planes (3 x 8), plus
# the window's parity sums (2 x 24 per phi bin it touches); per pixel size and thread
# the cell moments and corner weights (14 x 8 + 4 x 8).
_CANDIDATE_BYTES = 48 + 96 + 24
_WINDOW_BYTES = 48
_GRID_BYTES = 144


def candidate_bytes(
    ny_nx: tuple[int, int], candidates: list[tuple[int, int, int]], window: int, nproc: int
) -> dict[int, int]:
    """Estimated bytes bins=auto holds, per candidate pixel size (frames summed)."""
    ny, nx = ny_nx
    out: dict[int, int] = {}
    for f, p, _ in candidates:
        plane = math.ceil(ny / p) * math.ceil(nx / p)
        touched = math.ceil(window / f) + 1
        grid = 0 if p in out else _GRID_BYTES * nproc
        out[p] = out.get(p, 0) + plane * (_CANDIDATE_BYTES + _WINDOW_BYTES * touched + grid)
    return out


def within_memory(
    ny_nx: tuple[int, int],
    candidates: list[tuple[int, int, int]],
    window: int,
    nproc: int,
    budget_mb: float,
) -> tuple[list[tuple[int, int, int]], list[int]]:
    """The candidates whose pixel sizes fit the budget, coarsest first; the left-out sizes.

    At least the coarsest pixel size is kept, whatever the budget.
    """
    sizes = candidate_bytes(ny_nx, candidates, window, nproc)
    kept, total = [], 0
    for p in sorted(sizes, reverse=True):
        if kept and total + sizes[p] > budget_mb * 1e6:
            break
        kept.append(p)
        total += sizes[p]
    dropped = sorted(set(sizes) - set(kept))
    return [c for c in candidates if c[1] in kept], dropped

