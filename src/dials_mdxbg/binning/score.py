"""The corrected held-out score of a map and its standard error, from per-frame sums.

**Why a correction.** The held-out score predicts each frame from the map of
the *other* parity's frames (a half map), so ``err2 = mean (r - b)^2 - mean
g c/t^2`` estimates ``bias^2 + Var(b_half)``, whereas the map that is written
has ``bias^2 + Var(b_full)``. The half map's variance is not the full map's
(about twice for bins of several frames; about half for one-frame bins, whose
half map is interpolated between two planes), which tilts a comparison of
bin sizes. The score used here is ``err2 - V_half + V_full``, with ``V`` the
Poisson plug-in variance of each bin (``g * rate / pixel-seconds``) carried
through mdx2's trilinear weights: ``Var(b) = sum_corners w^2 V_corner``.

**Per-frame sums.** Everything a score needs is six sums per frame, the
columns of ``FRAME_COLUMNS`` (rates in counts/s, sums over the frame's valid
pixels with a finite prediction; ``V`` terms *without* the gain, which enters
linearly and can be estimated after the pass). Frames are the unit of the
standard error (their noise is independent); two scores of the same frames
are compared by the *paired* difference (:func:`paired_difference`).
"""

from __future__ import annotations

import math

import numpy as np

FRAME_COLUMNS = ("sq", "pois", "rate", "v_half", "v_full", "pixels")
"""Per-frame sums: (r - b)^2, c/t^2, r, Var(b_half)/g, Var(b_full)/g, pixels."""

N_FRAME = len(FRAME_COLUMNS)

def bin_variance(signal: np.ndarray, count: np.ndarray, scale) -> np.ndarray:
    """Poisson plug-in variance of a map's bins (per unit gain), (counts/s)^2.

    ``signal = mean count / scale``, so ``Var = mean / (count * scale^2) =
    signal / (count * scale)``; NaN where ``count`` is 0.

    Args:
        signal: the map (or one plane), counts/s.
        count: valid pixel values in each bin.
        scale: exposure time of each bin (broadcast against ``signal``).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.asarray(signal, dtype=np.float64) / (count * np.asarray(scale, dtype=np.float64))
    out[np.asarray(count) == 0] = np.nan
    return out


def variance_rows(lower: np.ndarray, upper: np.ndarray | None, weight: float) -> np.ndarray:
    """Variance of the phi interpolation between two planes: (1-w)^2 V_lo + w^2 V_up."""
    out = (1.0 - weight) ** 2 * lower
    if upper is not None:
        out = out + weight**2 * upper
    return out


def corner_weights(moments: np.ndarray, cells: tuple[int, int]) -> np.ndarray:
    """Per interpolation cell, the sum over its valid pixels of each corner's weight^2.

    With ``u``, ``w`` the upper weights along y and x, the corners weigh
    ``(1-u)(1-w)``, ``(1-u)w``, ``u(1-w)``, ``uw``; their squares expand in the
    moments ``V_ab = sum u^a w^b`` (a, b < 3).

    Args:
        moments: (>= cells[0], nbx, 14) cell moments (see
            :mod:`dials_mdxbg.native.moment_kernels`).
        cells: (cells along y, cells along x).

    Returns:
        (cells[0], cells[1], 4): corners (y, x), (y, x+1), (y+1, x), (y+1, x+1).
    """
    ncy, ncx = cells
    v = moments[:ncy, :ncx]

    def along_x(a: int) -> tuple[np.ndarray, np.ndarray]:
        # sum (1-w)^2 u^a and sum w^2 u^a
        return v[..., 3 * a] - 2 * v[..., 3 * a + 1] + v[..., 3 * a + 2], v[..., 3 * a + 2]

    (l0, h0), (l1, h1), (l2, h2) = along_x(0), along_x(1), along_x(2)
    out = np.empty((ncy, ncx, 4))
    out[..., 0] = l0 - 2 * l1 + l2  # (1-u)^2 (1-w)^2
    out[..., 1] = h0 - 2 * h1 + h2  # (1-u)^2 w^2
    out[..., 2] = l2  # u^2 (1-w)^2
    out[..., 3] = h2  # u^2 w^2
    return out


def prediction_variance(weights: np.ndarray, var_plane: np.ndarray) -> float:
    """Sum over a frame's valid pixels of ``Var(b) = sum_corners w^2 V`` (bilinear y/x).

    Args:
        weights: :func:`corner_weights` of the frame's cells (ncy, ncx, 4).
        var_plane: (rows, nbx) bin variances at the frame's phi (NaN: no prediction;
            such cells are left out, as the score leaves them out).
    """
    ncy, ncx = weights.shape[:2]
    n_rows, nbx = var_plane.shape
    p = np.zeros((n_rows + 1, nbx + 1))
    p[:n_rows, :nbx] = var_plane
    total = (
        weights[..., 0] * p[:ncy, :ncx]
        + weights[..., 1] * p[:ncy, 1 : ncx + 1]
        + weights[..., 2] * p[1 : ncy + 1, :ncx]
        + weights[..., 3] * p[1 : ncy + 1, 1 : ncx + 1]
    )
    return float(np.nansum(total))


def _frame_errors(frames: np.ndarray, exposure: np.ndarray, gain: float):
    """Per frame: corrected squared error (counts^2, summed over pixels) and pixels."""
    sq, pois, _rate, v_half, v_full, n = np.asarray(frames, dtype=np.float64).T
    t2 = np.asarray(exposure, dtype=np.float64) ** 2
    return t2 * (sq - gain * (pois + v_half - v_full)), n


def corrected_score(frames: np.ndarray, exposure: np.ndarray, gain: float = 1.0) -> dict:
    """The corrected held-out mean squared error and its standard error.

    This is the score bins=auto ranks candidates by; any model that fills the
    per-frame sums the same way can be scored and compared with it.

    Args:
        frames: (n_frames, 6) per-frame sums in the order of :data:`FRAME_COLUMNS`.
        exposure: (n_frames,) exposure times (s).
        gain: detector gain (counts per photon; 1 for photon counters).

    Returns:
        ``score`` (counts^2 per pixel-frame; may be negative when the map's
        error is below the noise), ``score_se`` (its standard error over
        frames), ``score_percent`` (sqrt(score) in % of the mean count; NaN
        when negative), ``mean_count``, ``pixels``; all NaN without pixels.
    """
    e, n = _frame_errors(frames, exposure, gain)
    total = float(n.sum())
    if total <= 0:
        nan = float("nan")
        return {"score": nan, "score_se": nan, "score_percent": nan, "mean_count": nan, "pixels": 0}
    score = float(e.sum()) / total
    t = np.asarray(exposure, dtype=np.float64)
    mean = float((np.asarray(frames)[:, 2] * t).sum()) / total
    percent = 100.0 * math.sqrt(score) / mean if score >= 0 and mean > 0 else float("nan")
    return {
        "score": score,
        "score_se": _se((e - score * n) / total),
        "score_percent": percent,
        "mean_count": mean,
        "pixels": int(total),
    }


def _se(influence: np.ndarray) -> float:
    """Standard error of a sum of independent per-frame terms (frames with data)."""
    used = influence[influence != 0]
    k = used.size
    if k < 2:
        return float("nan")
    return math.sqrt(float((used * used).sum()) * k / (k - 1))


def paired_difference(a: np.ndarray, b: np.ndarray, exposure, gain: float = 1.0):
    """Score of ``a`` minus score of ``b`` (both per-frame sums of the same frames), with
    the standard error of that difference (frames paired: common noise cancels).

    Returns:
        (difference, standard error); NaN when either has no pixels.
    """
    ea, na = _frame_errors(a, exposure, gain)
    eb, nb = _frame_errors(b, exposure, gain)
    if na.sum() <= 0 or nb.sum() <= 0:
        return float("nan"), float("nan")
    sa, sb = ea.sum() / na.sum(), eb.sum() / nb.sum()
    influence = (ea - sa * na) / na.sum() - (eb - sb * nb) / nb.sum()
    return float(sa - sb), _se(influence)
