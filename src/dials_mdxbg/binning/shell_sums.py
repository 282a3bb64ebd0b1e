"""The sums the shell model needs, block by block, and its held-out score.

One pass (:func:`fit_consumer`) adds every valid pixel's count and exposure into
the joint (fine shell, sector) histogram of its frame's parity and phi bin, and
into the valid-pixel counts of the output grid's bins. A second pass
(:func:`score_consumer`) predicts each frame from the other parity's model, as
the box maps' held-out error does (:mod:`dials_mdxbg.binning.heldout`): for a
valid pixel of count ``c`` in a frame of exposure ``t``, rate ``r = c/t`` and
prediction ``b``, ``(r - b)^2 - c/t^2`` estimates the squared error of a half
model; ``- V_half + V_full`` (plug-in Poisson variances of the two predictions)
turns it into the full model's. The sums are kept per frame, in the columns of
bins=auto's score (:data:`FRAME_COLUMNS`). Both consumers fit
:func:`dials_mdxbg.binning.blocks.run_blocks`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from dials_mdxbg.binning.grid import BinGrid
from dials_mdxbg.binning.shells import ResidualBasis, ShellLayout, ShellModel
from dials_mdxbg.binning.stencil import axis_cells
from dials_mdxbg.model import as_block
from dials_mdxbg.native.shell_kernels import (
    PhiTerm,
    fit_frame,
    fit_frame_packed,
    inverse_counts,
    score_frame,
    score_pair,
)


@dataclass
class ShellSums:
    """Joint histograms by (parity, phi bin) and the output grid's valid-pixel counts; mergeable.

    The per-pixel sums are float32 ``pixel_counts`` and ``pixel_exposure``, or,
    while ``packed`` is set (:func:`pixel_table`), one uint32 per pixel and
    parity holding the counts plus 65536 times the valid frames, a third of the
    memory traffic per frame; :meth:`pixels` and :meth:`unpack` make the float32
    sums of them, the bits the float32 adds make.
    """

    counts: np.ndarray  # (2, n_phi, n_joint) float64 (exact integers)
    exposure: np.ndarray  # (2, n_phi, n_joint) pixel-seconds
    box_count: np.ndarray  # (n_phi, nby, nbx) int64: valid pixels in each map bin
    pixel_counts: np.ndarray | None  # (2, ny, nx) per parity, over all frames
    pixel_exposure: np.ndarray | None
    packed: tuple | None = None  # 2 x (ny, nx) uint32: counts + 65536 * valid frames
    table: np.ndarray | None = None  # float32 exposure of k valid frames

    @classmethod
    def zeros(cls, n_phi: int, n_joint: int, grid_shape: tuple[int, int, int], ny_nx,
              table: np.ndarray | None = None) -> ShellSums:  # fmt: skip
        """Empty sums (packed per pixel with a :func:`pixel_table`)."""
        shape = (2, n_phi, n_joint)
        pixels = (2, *ny_nx)
        # float32 per pixel: exact to 2^24 counts per pixel and parity, and half the memory.
        per_pixel = [None, None] if table is not None else [
            np.zeros(pixels, dtype=np.float32) for _ in range(2)]  # fmt: skip
        return cls(
            np.zeros(shape),
            np.zeros(shape),
            np.zeros(grid_shape, dtype=np.int64),
            *per_pixel,
            # One array per parity: under glibc's mmap threshold, so freed frames' memory
            # is reused instead of fresh pages.
            None if table is None else tuple(np.zeros(ny_nx, dtype=np.uint32) for _ in range(2)),
            table,
        )

    def pixels(self) -> tuple:
        """``(counts, exposure, parities)``: float32 per-pixel sums over all frames, and
        each parity's ``(counts, exposure)``, arrays or (packed) :class:`PackedRows`."""
        if self.packed is None:
            return (self.pixel_counts.sum(axis=0), self.pixel_exposure.sum(axis=0),
                    [(self.pixel_counts[q], self.pixel_exposure[q]) for q in (0, 1)])  # fmt: skip
        parts = [(PackedRows(w, self.table, False), PackedRows(w, self.table, True))
                 for w in self.packed]  # fmt: skip
        counts = np.empty(self.packed[0].shape, dtype=np.float32)
        exposure = np.empty_like(counts)
        for a in range(0, counts.shape[0], PackedRows.ROWS):
            rows = slice(a, a + PackedRows.ROWS)
            # The float32 adds of the parities' sum (numpy's sum over their axis).
            np.add(parts[0][0][rows], parts[1][0][rows], out=counts[rows])
            np.add(parts[0][1][rows], parts[1][1][rows], out=exposure[rows])
        return counts, exposure, parts

    def unpack(self) -> ShellSums:
        """The float32 per-pixel sums of packed ones (a band of rows at a time); self."""
        if self.packed is None:
            return self
        shape = (2, *self.packed[0].shape)
        self.pixel_counts = np.empty(shape, dtype=np.float32)
        self.pixel_exposure = np.empty(shape, dtype=np.float32)
        for q, words in enumerate(self.packed):
            counts, exposure = (PackedRows(words, self.table, e) for e in (False, True))
            for a in range(0, shape[1], PackedRows.ROWS):
                rows = slice(a, a + PackedRows.ROWS)
                self.pixel_counts[q, rows] = counts[rows]
                self.pixel_exposure[q, rows] = exposure[rows]
        self.packed = None
        return self

    def merge(self, other: ShellSums) -> ShellSums:
        """Add ``other`` into this one and return self (as float32 per-pixel sums: the
        bits of adding each thread's float32 sums)."""
        self.unpack()
        other.unpack()
        self.counts += other.counts
        self.exposure += other.exposure
        self.box_count += other.box_count
        self.pixel_counts += other.pixel_counts
        self.pixel_exposure += other.pixel_exposure
        return self


class PackedRows:
    """A parity's float32 per-pixel counts (or with ``exposure`` its pixel-seconds) from its
    packed sums, made a band of rows at a time (``rows[a:b]``): no full-image copy."""

    ROWS = 64  # rows per band of whole-image loops over it

    def __init__(self, words: np.ndarray, table: np.ndarray, exposure: bool):
        self.words, self.table, self.exposure = words, table, exposure
        self.shape = words.shape

    def __getitem__(self, rows: slice) -> np.ndarray:
        words = self.words[rows]
        if self.exposure:
            return self.table[words >> np.uint32(16)]  # the float32 adds of k frames
        return (words & np.uint32(0xFFFF)).astype(np.float32)


def pixel_table(exposure_times: np.ndarray, valid_range: tuple[int, int] | None):
    """The float32 exposure of 0, 1, ... valid frames of a parity, when every frame has the
    same float32 exposure time and a pixel's counts and valid frames of a parity fit 16 bits
    each (``valid_range`` given, from 0); else None (float32 per-pixel sums)."""
    tf = np.asarray(exposure_times, dtype=np.float32)
    per_parity = -(-tf.size // 2)
    if valid_range is None or not tf.size or not (tf == tf[0]).all():
        return None
    lo, hi = (int(v) for v in valid_range)
    if lo < 0 or hi * per_parity > 0xFFFF or per_parity > 0xFFFF:
        return None
    table = np.zeros(per_parity + 1, dtype=np.float32)
    for k in range(1, per_parity + 1):
        table[k] = table[k - 1] + tf[0]  # the float32 adds of each frame in turn
    return table


def fit_consumer(
    layout: ShellLayout,
    grid: BinGrid,
    exposure_times: np.ndarray,
    valid_range: tuple[int, int] | None,
    excluded=None,
):
    """A block consumer adding blocks into :class:`ShellSums` (phi bins of ``grid``)."""
    x_index = np.repeat(np.arange(len(grid.x_sizes), dtype=np.int64), grid.x_sizes)

    def consume(acc: ShellSums, frame0: int, row0: int, block) -> None:
        block = as_block(block)
        n, rows, _ = block.shape
        ex = excluded(frame0, row0, block.shape) if excluded else None
        joint = layout.joint[row0 : row0 + rows]
        y_index = grid.y_index[row0 : row0 + rows]
        span = slice(row0, row0 + rows)
        for f in range(n):
            frame = frame0 + f
            k, q = int(grid.phi_index[frame]), frame % 2
            if acc.packed is not None:
                fit_frame_packed(
                    block[f], joint, None if ex is None else ex[f], valid_range,
                    float(exposure_times[frame]), acc.counts[q, k], acc.exposure[q, k],
                    acc.packed[q][span], y_index, x_index, acc.box_count[k],
                )  # fmt: skip
                continue
            fit_frame(
                block[f], joint, None if ex is None else ex[f], valid_range,
                float(exposure_times[frame]), acc.counts[q, k], acc.exposure[q, k],
                acc.pixel_counts[q, span], acc.pixel_exposure[q, span], y_index, x_index,
                acc.box_count[k],
            )  # fmt: skip

    return consume


FRAME_COLUMNS = ("sq", "pois", "rate", "v_half", "v_full", "pixels")
"""Per-frame sums over valid pixels: (r - b_half)^2, c/t^2, r, Var(b_half), Var(b_full)
(per unit gain), pixels; rates in counts/s. The columns of bins=auto's per-frame score
sums, so the same corrected score applies to both models."""


class ScoreAcc:
    """Per-thread per-frame score sums (n_frames, 6); mergeable.

    A frame may be held back (``pending``) for a partner the consumer scores it
    with (:func:`dials_mdxbg.native.shell_kernels.score_pair`); reading
    :attr:`frames` scores what is still held first.
    """

    def __init__(self, n_frames: int, settle=None):
        self.sums = np.zeros((n_frames, len(FRAME_COLUMNS)))
        self.pending: dict = {}
        self._settle = settle

    @property
    def frames(self) -> np.ndarray:
        """The per-frame sums, every frame held back scored."""
        while self.pending:
            self._settle(self, self.pending.popitem()[1])
        return self.sums

    def merge(self, other: ScoreAcc) -> ScoreAcc:
        """Add ``other`` into this one and return self."""
        mine = self.frames
        mine += other.frames
        return self


def score_consumer(
    layout: ShellLayout,
    full: ShellModel,
    halves: tuple[ShellModel | None, ShellModel | None],
    frame_phi: np.ndarray,
    phi_centres: np.ndarray,
    exposure_times: np.ndarray,
    valid_range: tuple[int, int] | None,
    excluded=None,
    basis: ResidualBasis | None = None,
):
    """A block consumer scoring each frame against the other parity's model, and how a
    frame it held back is scored alone (the ``settle`` of :class:`ScoreAcc`).

    The prediction at a frame is the phi interpolation mdx2 makes between the
    two nearest phi bin centres (its variance: the squared weights times each
    plane's). ``basis``: the pixels' :meth:`ShellModel.basis` on the full
    model's grid, if already made.
    """
    cell, weight = axis_cells(frame_phi, phi_centres)
    n_phi = len(phi_centres)
    # Per pixel, once: where pixels fall on the residual grid (one grid for the
    # three models) and each model's parts that do not change along phi.
    if basis is None:
        basis = full.basis(layout.two_theta, layout.psi)
    ny, nx = layout.two_theta.shape
    ys, xs = np.arange(ny), np.arange(nx)
    rel_full = full.static_parts(layout.two_theta, layout.psi, ys, xs, rate=False)[1]
    statics = {
        q: m.static_parts(layout.two_theta, layout.psi, ys, xs)
        for q, m in enumerate(halves)
        if m is not None
    }
    # Each model's residual planes and 1/counts as float32 tables, once.
    tables = {
        key: (
            m.residual.reshape(n_phi, -1).astype(np.float32),
            inverse_counts(m.residual_counts.reshape(n_phi, -1)),
        )
        for key, m in (("full", full), (0, halves[0]), (1, halves[1]))
        if m is not None
    }

    def terms(q: int, f: int) -> list[PhiTerm]:
        """mdx2's phi interpolation at frame ``f`` of the half model ``q``: the weighted
        planes (the full model's residual counts beside the half's, for V_full with the
        half model's rate as plug-in: a small correction that spares the full model)."""
        k0 = int(cell[f])
        w = float(weight[f]) if n_phi > 1 else 0.0
        planes, counts = tables[q]
        out = []
        for k, wk in ((k0, 1.0 - w), (k0 + 1, w)):
            if wk != 0.0 and k < n_phi:
                out.append(PhiTerm(planes[k], counts[k], tables["full"][1][k], wk))
        return out

    def score(acc: ScoreAcc, held: _Held) -> None:
        span = slice(held.row0, held.row0 + held.counts.shape[0])
        static, rel = statics[held.q]
        score_frame(
            held.counts, held.excluded, valid_range, float(exposure_times[held.frame]),
            basis.rows(span), static[span], rel[span], rel_full[span], held.terms,
            acc.sums[held.frame],
        )  # fmt: skip

    def consume(acc: ScoreAcc, frame0: int, row0: int, block) -> None:
        block = as_block(block)
        n, rows, nx = block.shape
        ex = excluded(frame0, row0, block.shape) if excluded else None
        span = slice(row0, row0 + rows)
        for f in range(n):
            frame = frame0 + f
            q = 1 - frame % 2
            if halves[q] is None:
                continue
            one = _Held(frame, row0, q, int(cell[frame]), block[f],
                        None if ex is None else ex[f], terms(q, frame))  # fmt: skip
            held = acc.pending.pop(q, None)
            if held is not None and held.pairs(one):
                # Frames two apart between the same phi bin centres: rates made once.
                static, rel = statics[q]
                score_pair(
                    (held.counts, one.counts), (held.excluded, one.excluded), valid_range,
                    (float(exposure_times[held.frame]), float(exposure_times[frame])),
                    basis.rows(span), static[span], rel[span], rel_full[span],
                    (held.terms, one.terms), (acc.sums[held.frame], acc.sums[frame]),
                )  # fmt: skip
                continue
            if held is not None:
                score(acc, held)  # before any later block of its frame
            if len(one.terms) == 2:
                acc.pending[q] = one.kept()
            else:
                score(acc, one)

    return consume, score


@dataclass
class _Held:
    """A frame's block in the held-out pass, with what scores it."""

    frame: int
    row0: int
    q: int
    cell: int
    counts: np.ndarray
    excluded: np.ndarray | None
    terms: list

    def pairs(self, other: _Held) -> bool:
        """Whether both are scored by the same two planes over the same rows."""
        return (
            self.q == other.q and self.frame != other.frame and self.cell == other.cell
            and self.row0 == other.row0 and self.counts.shape == other.counts.shape
            and len(self.terms) == len(other.terms) == 2
        )  # fmt: skip

    def kept(self) -> _Held:
        """This one with its own copies of the counts (the reader may reuse its buffers)."""
        ex = None if self.excluded is None else np.array(self.excluded)
        return dataclasses.replace(self, counts=np.array(self.counts), excluded=ex)


def summarize_score(frames: np.ndarray, exposure: np.ndarray, gain: float = 1.0) -> dict:
    """The shell model's held-out figures from its per-frame sums.

    ``score``: the corrected error ``t^2 (sq - g (pois + V_half - V_full))`` per
    pixel-frame, counts^2 (bins=auto's corrected score, the same formula), with
    its standard error over frames. ``model_error_sq``: the uncorrected
    ``(sq - pois) / n`` in (counts/s)^2, what a box map's held-out error reports.
    """
    sq, pois, rate, v_half, v_full, n = np.asarray(frames, dtype=np.float64).T
    t = np.asarray(exposure, dtype=np.float64)
    total = float(n.sum())
    if total <= 0:
        return {"pixels": 0, "score": None, "model_error_sq": None}
    e = t * t * (sq - gain * (pois + v_half - v_full))
    score = float(e.sum()) / total
    influence = (e - score * n) / total
    used = influence[n > 0]
    k = used.size
    score_se = math.sqrt(float((used * used).sum()) * k / (k - 1)) if k > 1 else float("nan")
    err2 = float((sq - pois).sum()) / total
    infl2 = ((sq - pois) - err2 * n)[n > 0] / total
    err2_se = math.sqrt(float((infl2 * infl2).sum()) * k / (k - 1)) if k > 1 else float("nan")
    mean_rate = float(rate.sum()) / total
    mean_count = float((rate * t).sum()) / total

    def percent(x: float, mean: float) -> float:
        return 100.0 * math.sqrt(x) / mean if x >= 0 and mean > 0 else float("nan")

    return {
        "pixels": int(total),
        "score": score,
        "score_se": score_se,
        "score_percent": percent(score, mean_count),
        "mean_count": mean_count,
        "model_error_sq": err2,
        "model_error_sq_se": err2_se,
        "model_error_percent": percent(err2, mean_rate),
        "mean_rate": mean_rate,
        "v_half": float(v_half.sum()) / total,
        "v_full": float(v_full.sum()) / total,
    }
