"""The sums the shell model needs, block by block, and its held-out score.

One pass (:func:`fit_consumer`) adds every valid pixel's count and exposure into
the joint (fine shell, sector) histogram of its frame's parity and phi bin, and
into the box sums of the output grid (the map's pixel counts). A second pass
(:func:`score_consumer`) predicts each frame from the other parity's model, as
the box maps' held-out error does (:mod:`dials_mdxbg.binning.heldout`): for a
valid pixel of count ``c`` in a frame of exposure ``t``, rate ``r = c/t`` and
prediction ``b``, ``(r - b)^2 - c/t^2`` estimates the squared error of a half
model; ``- V_half + V_full`` (plug-in Poisson variances of the two predictions)
turns it into the full model's. Both consumers fit
:func:`dials_mdxbg.binning.blocks.run_blocks`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dials_mdxbg.binning.grid import BinGrid
from dials_mdxbg.binning.shells import FINE_SECTORS, ShellLayout, ShellModel, sector_of
from dials_mdxbg.binning.stencil import axis_cells
from dials_mdxbg.binning.sums import BinSums, accumulate_block
from dials_mdxbg.model import as_block
from dials_mdxbg.native.bin_kernels import valid_mask


@dataclass
class ShellSums:
    """Joint histograms by (parity, phi bin) and the output grid's box sums; mergeable."""

    counts: np.ndarray  # (2, n_phi, n_joint) float64 (exact integers)
    exposure: np.ndarray  # (2, n_phi, n_joint) pixel-seconds
    box: BinSums
    pixel_counts: np.ndarray  # (2, ny, nx) per parity, over all frames
    pixel_exposure: np.ndarray

    @classmethod
    def zeros(cls, n_phi: int, n_joint: int, grid_shape: tuple[int, int, int], ny_nx) -> ShellSums:
        """Empty sums."""
        shape = (2, n_phi, n_joint)
        pixels = (2, *ny_nx)
        return cls(
            np.zeros(shape),
            np.zeros(shape),
            BinSums.zeros(grid_shape),
            np.zeros(pixels),
            np.zeros(pixels),
        )

    def merge(self, other: ShellSums) -> ShellSums:
        """Add ``other`` into this one and return self."""
        self.counts += other.counts
        self.exposure += other.exposure
        self.box.merge(other.box)
        self.pixel_counts += other.pixel_counts
        self.pixel_exposure += other.pixel_exposure
        return self


def fit_consumer(
    layout: ShellLayout,
    grid: BinGrid,
    exposure_times: np.ndarray,
    valid_range: tuple[int, int] | None,
    excluded=None,
):
    """A block consumer adding blocks into :class:`ShellSums` (phi bins of ``grid``)."""
    n_joint = layout.n_joint

    def consume(acc: ShellSums, frame0: int, row0: int, block) -> None:
        block = as_block(block)
        n, rows, _ = block.shape
        ex = excluded(frame0, row0, block.shape) if excluded else None
        accumulate_block(acc.box, grid, block, frame0, row0, valid_range, ex)
        joint = layout.joint[row0 : row0 + rows].ravel()
        for f in range(n):
            frame = frame0 + f
            valid = valid_mask(block[f], valid_range, None if ex is None else ex[f])
            valid = valid.ravel()
            values = np.where(valid, block[f].ravel(), 0).astype(np.float64)
            k, q = int(grid.phi_index[frame]), frame % 2
            acc.counts[q, k] += np.bincount(joint, values, n_joint)
            t = float(exposure_times[frame])
            acc.exposure[q, k] += np.bincount(joint, valid.astype(np.float64), n_joint) * t
            acc.pixel_counts[q, row0 : row0 + rows] += values.reshape(rows, -1)
            acc.pixel_exposure[q, row0 : row0 + rows] += valid.reshape(rows, -1) * t

    return consume


N_SCORE_SUMS = 9
"""Per phi bin: sq - pois, pixels, rate, V_half, V_full; the standard error's ee, en, nn, cells."""


class ScoreAcc:
    """Per-thread score sums (rows: phi bins of the full model); mergeable."""

    def __init__(self, n_phi: int):
        self.sums = np.zeros((n_phi, N_SCORE_SUMS))

    def merge(self, other: ScoreAcc) -> ScoreAcc:
        """Add ``other`` into this one and return self."""
        self.sums += other.sums
        return self


def score_consumer(
    layout: ShellLayout,
    full: ShellModel,
    halves: tuple[ShellModel | None, ShellModel | None],
    phi_index: np.ndarray,
    frame_phi: np.ndarray,
    phi_centres: np.ndarray,
    exposure_times: np.ndarray,
    valid_range: tuple[int, int] | None,
    excluded=None,
):
    """A block consumer scoring each frame against the other parity's model.

    The prediction at a frame is the phi interpolation mdx2 makes between the
    two nearest phi bin centres.
    """
    cell, weight = axis_cells(frame_phi, phi_centres)
    n_phi = len(phi_centres)

    def predict(model: ShellModel, f: int, tt, psi, cache: dict, key, ys, xs):
        k0 = int(cell[f])
        w = float(weight[f]) if n_phi > 1 else 0.0
        out = None
        for k, wk in ((k0, 1.0 - w), (k0 + 1, w)):
            if wk == 0.0 or k >= n_phi:
                continue
            if (key, k) not in cache:
                rate = model.rate(k, tt, psi, ys, xs)
                cache[(key, k)] = (rate, model.variance(k, tt, psi, rate, ys, xs))
            rate, var = cache[(key, k)]
            if out is None:
                out = (wk * rate, wk * wk * var)
            else:
                out = (out[0] + wk * rate, out[1] + wk * wk * var)
        return out

    def consume(acc: ScoreAcc, frame0: int, row0: int, block) -> None:
        block = as_block(block)
        n, rows, _ = block.shape
        ex = excluded(frame0, row0, block.shape) if excluded else None
        tt = layout.two_theta[row0 : row0 + rows].astype(np.float64)
        psi = layout.psi[row0 : row0 + rows].astype(np.float64)
        groups = sector_of(psi, FINE_SECTORS).ravel()
        ys, xs = np.arange(row0, row0 + rows), np.arange(block.shape[2])
        cache: dict = {}
        for f in range(n):
            frame = frame0 + f
            half = halves[1 - frame % 2]
            if half is None:
                continue
            valid = valid_mask(block[f], valid_range, None if ex is None else ex[f])
            c = block[f].astype(np.float64)
            t = float(exposure_times[frame])
            b_half, v_half = predict(half, frame, tt, psi, cache, 1 - frame % 2, ys, xs)
            _, v_full = predict(full, frame, tt, psi, cache, "full", ys, xs)
            r = c / t
            e = np.where(valid, (r - b_half) ** 2 - c / (t * t), 0.0)
            row = acc.sums[int(phi_index[frame])]
            row[0] += e.sum()
            row[1] += np.count_nonzero(valid)
            row[2] += np.where(valid, r, 0.0).sum()
            row[3] += np.where(valid, v_half, 0.0).sum()
            row[4] += np.where(valid, v_full, 0.0).sum()
            # Standard error: (frame, sector) sums taken as independent samples.
            es = np.bincount(groups, e.ravel(), FINE_SECTORS)
            ns = np.bincount(groups, valid.ravel().astype(np.float64), FINE_SECTORS)
            row[5] += (es * es).sum()
            row[6] += (es * ns).sum()
            row[7] += (ns * ns).sum()
            row[8] += np.count_nonzero(ns)

    return consume


def summarize_score(sums: np.ndarray) -> dict:
    """The shell model's held-out figures, in a box map's units ((counts/s)^2 per pixel-frame).

    ``score`` is the corrected error ``err2 - V_half + V_full``; ``model_error_sq``
    the uncorrected ``err2`` (what a box map's held-out error reports).
    """
    e, n, rate, v_half, v_full, ee, en, nn, _cells = sums.sum(axis=0)
    if n <= 0:
        return {"pixels": 0, "score": None, "model_error_sq": None}
    err2 = e / n
    score = err2 - v_half / n + v_full / n
    mean = rate / n
    se = math.sqrt(max(ee - 2 * err2 * en + err2 * err2 * nn, 0.0)) / n

    def percent(x: float) -> float:
        return 100.0 * math.sqrt(max(x, 0.0)) / mean if mean > 0 else float("nan")

    return {
        "pixels": int(n),
        "mean_rate": mean,
        "model_error_sq": err2,
        "model_error_sq_se": se,
        "model_error_percent": percent(err2),
        "score": score,
        "score_se": se,
        "score_percent": percent(score),
        "v_half": v_half / n,
        "v_full": v_full / n,
    }
