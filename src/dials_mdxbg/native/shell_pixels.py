"""The shell model's per-pixel preparation: the C kernels beside their numpy twins.

Work done once per run on every pixel (not per frame): each pixel's fine
shell and sector (:func:`shell_joint`), the residual grid's corners and each
model's expected counts for the pixel residual (:func:`residual_expected`),
the box sums of those (:func:`box_sums_small`), and the parts of a model that
do not change along phi (:func:`static_rows`). The twins are numpy's float64
arithmetic over bands of pixels (np.interp, np.mod, floor, rint, bilinear
sums); the C kernels make the same operations in the same order one pixel at
a time, with no fused multiply-adds, so both give the same bits
(tests/test_shell_pixels.py), without numpy's band temporaries.
"""

from __future__ import annotations

import math

import numpy as np

from dials_mdxbg.native import lib

ROWS_AT_A_TIME = 128
"""Rows per step of the numpy twins (bounds their float64 temporaries)."""


def _takes(*arrays: np.ndarray | None, dtype=np.float32) -> bool:
    """Whether the C kernels can read these arrays in place (None: not given)."""
    return all(a is None or (a.dtype == dtype and a.flags.c_contiguous) for a in arrays)


def _f64(array) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float64)


def _increasing(xp: np.ndarray) -> bool:
    """Whether np.interp's points are non-decreasing (and some): then its answer is
    the C kernels' whatever the search's path."""
    return xp.size > 0 and bool((xp[1:] >= xp[:-1]).all())


def _slopes(xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """np.interp's slopes between its points, as it makes them (elementwise, the same
    float64 operations; a repeated point's is never used)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.ascontiguousarray((fp[1:] - fp[:-1]) / (xp[1:] - xp[:-1]))


def _bands(n_rows: int) -> list[slice]:
    return [slice(a, min(a + ROWS_AT_A_TIME, n_rows)) for a in range(0, n_rows, ROWS_AT_A_TIME)]


# ------------------------------------------------------------------ fine shells and sectors


def shell_joint(two_theta: np.ndarray, psi: np.ndarray, edges: np.ndarray, sectors: int,
                out: np.ndarray) -> None:  # fmt: skip
    """``out[...] = shell * sectors + sector`` of every point (int32, in place).

    ``shell``: the last of ``edges`` at or below two-theta (clipped to the
    ``len(edges) - 1`` shells; ``edges`` evenly spaced but the last);
    ``sector``: of ``sectors`` equal azimuth sectors from -pi.
    """
    c = lib.library()
    edges = _f64(edges)
    if c is None or not _takes(two_theta, psi) or not _takes(out, dtype=np.int32):
        shell_joint_numpy(two_theta, psi, edges, sectors, out)
        return
    c.mdx_shell_joint(lib.ptr(two_theta), lib.ptr(psi), two_theta.size, lib.ptr(edges),
                      edges.size - 1, int(sectors), lib.ptr(out))  # fmt: skip


def sector_of(psi: np.ndarray, n: int) -> np.ndarray:
    """Sector (0..n-1) of azimuths ``psi`` (radians, any range)."""
    f = np.mod(np.asarray(psi, dtype=np.float64) + math.pi, 2 * math.pi) / (2 * math.pi)
    return np.minimum((f * n).astype(np.int64), n - 1)


def shell_joint_numpy(two_theta, psi, edges, sectors, out) -> None:
    """The numpy twin of :func:`shell_joint`."""
    n = len(edges) - 1
    for rows in _bands(len(two_theta)):
        shell = np.clip(np.searchsorted(edges, two_theta[rows], side="right") - 1, 0, n - 1)
        out[rows] = shell * sectors + sector_of(psi[rows], sectors)


# --------------------------------------------------------------------------- residual grid corners


def residual_corners(two_theta, psi, grid: tuple, into=None) -> tuple:
    """Float64 bilinear corners ``(b0, b1, s0, s1, wb, ws)`` of points on a residual grid.

    ``grid``: ``(lo, span, bands, sectors)``, the bands over two-theta from
    ``lo`` over ``span`` degrees, the sectors periodic in azimuth from -pi.
    With ``into`` (a ``ResidualBasis``-like object), its ``i00``, ``i01``,
    ``wb``, ``ws`` and ``near`` (the nearest cell) are written there.
    """
    lo, span, nb, ns = grid
    fb = (np.asarray(two_theta, dtype=np.float64) - lo) / span * nb - 0.5
    fb = np.clip(fb, 0.0, nb - 1.0)
    fs = np.mod(np.asarray(psi, dtype=np.float64) + math.pi, 2 * math.pi)
    fs = fs / (2 * math.pi) * ns - 0.5
    b0 = np.minimum(np.floor(fb).astype(np.int64), max(nb - 2, 0))
    wb = fb - b0 if nb > 1 else np.zeros_like(fb)
    b1 = np.minimum(b0 + 1, nb - 1)
    s0f = np.floor(fs)
    ws = fs - s0f
    s0 = np.mod(s0f.astype(np.int64), ns)
    s1 = np.mod(s0 + 1, ns)
    if into is not None:
        near = np.rint(fb).astype(np.int64) * ns + np.mod(np.rint(fs).astype(np.int64), ns)
        for name, value in (("i00", b0 * ns + s0), ("i01", b0 * ns + s1), ("wb", wb),
                            ("ws", ws), ("near", near)):  # fmt: skip
            getattr(into, name)[...] = value  # cast as astype would
    return b0, b1, s0, s1, wb, ws


def residual_expected(two_theta, psi, grid: tuple, models: list, exposures: list, outs: list,
                      into=None) -> None:  # fmt: skip
    """Each model's expected counts at a band of points (float32 ``outs``, in place).

    ``models``: ``(plane, tt_points, profile)`` each, ``plane`` its flat
    (bands x sectors) residual: ``P(tt) * R(tt, psi) * exposure`` with ``P``
    np.interp of the profile and ``R`` bilinear on ``grid``
    (:func:`residual_corners`, whose basis goes ``into`` when given).
    """
    c = lib.library()
    exposures = [np.asarray(e) for e in exposures]
    basis = () if into is None else (into.i00, into.i01, into.wb, into.ws, into.near)
    if (
        c is None
        or not 1 <= len(models) <= 8
        or not _takes(two_theta, psi, *exposures, *outs)
        or not _takes(*basis[0:2], basis[4] if basis else None, dtype=np.int32)
        or not _takes(*basis[2:4])
    ):
        residual_expected_numpy(two_theta, psi, grid, models, exposures, outs, into)
        return
    tables = [[_f64(a) for a in m] for m in models]
    for t in tables:
        t.append(_slopes(t[1], t[2]))
    address = [np.array([lib.ptr(t[i]) for t in tables], dtype=np.uint64) for i in range(4)]
    sizes = np.array([t[1].size for t in tables], dtype=np.int64)
    if not all(_increasing(t[1]) and t[1].size == t[2].size for t in tables):
        residual_expected_numpy(two_theta, psi, grid, models, exposures, outs, into)
        return
    per_point = [np.array([lib.ptr(a) for a in arrays], dtype=np.uint64)
                 for arrays in (exposures, outs)]  # fmt: skip
    written = [lib.ptr(a) for a in basis] if basis else [None] * 5
    lo, span, nb, ns = grid
    c.mdx_shell_expected(
        lib.ptr(two_theta), lib.ptr(psi), two_theta.size, float(lo), float(span), int(nb),
        int(ns), len(models), *(lib.ptr(a) for a in address), lib.ptr(sizes),
        *(lib.ptr(a) for a in per_point), *written,
    )  # fmt: skip


def residual_expected_numpy(two_theta, psi, grid, models, exposures, outs, into=None) -> None:
    """The numpy twin of :func:`residual_expected`."""
    b0, b1, s0, s1, wb, ws = residual_corners(two_theta, psi, grid, into)
    ns = grid[3]
    at = (b0 * ns + s0, b0 * ns + s1, b1 * ns + s0, b1 * ns + s1)
    vb, vs = 1 - wb, 1 - ws
    tt = np.asarray(two_theta, dtype=np.float64)
    for (plane, tt_points, profile), exposure, out in zip(models, exposures, outs):
        flat = np.asarray(plane, dtype=np.float64).ravel()
        part = np.interp(tt, tt_points, profile)
        part *= vb * (vs * flat.take(at[0]) + ws * flat.take(at[1])) + wb * (
            vs * flat.take(at[2]) + ws * flat.take(at[3])
        )
        part *= exposure
        out[...] = part  # float32, as astype


# --------------------------------------------------------------------------- pixel boxes


def box_weights(shape: tuple[int, int], q: int, ys, xs) -> tuple:
    """Where the grid ``ys`` x ``xs`` falls between the centres of q-pixel boxes of a
    ``shape`` array (centres at ``q*j + (q-1)/2``): the corner indices and weights
    :func:`box_interp_at` takes."""

    def axis(coords, n):
        f = np.clip((np.asarray(coords, dtype=np.float64) - (q - 1) / 2.0) / q, 0.0, n - 1.0)
        i0 = np.minimum(np.floor(f).astype(np.int64), max(n - 2, 0))
        w = f - i0 if n > 1 else np.zeros_like(f)
        return i0, np.minimum(i0 + 1, n - 1), w

    y0, y1, wy = axis(ys, shape[0])
    x0, x1, wx = axis(xs, shape[1])
    return y0, y1, wy[:, np.newaxis], x0, x1, wx[np.newaxis, :]


def box_interp_at(values: np.ndarray, weights: tuple) -> np.ndarray:
    """Bilinear interpolation of per-box ``values`` at the :func:`box_weights` of a grid."""
    y0, y1, wy, x0, x1, wx = weights
    # Along x once per box row the grid's rows use (q grid rows share one), then
    # those rows picked: the same products and sums per point.
    first = int(y0.min()) if y0.size else 0
    rows = values[first : int(y1.max(initial=first)) + 1]
    along = (1 - wx) * rows[:, x0] + wx * rows[:, x1]
    return (1 - wy) * along[y0 - first] + wy * along[y1 - first]


def box_sums_small(values: np.ndarray, q: int, out: np.ndarray) -> None:
    """Sums of a band of ``values`` (float32) over q x q boxes, q < 8, into float64
    ``out`` (its rows of boxes, overwritten): each box row's q values added in turn
    from zero, then the rows (numpy's order of a sum over two short axes)."""
    c = lib.library()
    if c is None or not _takes(values) or not _takes(out, dtype=np.float64) or q >= 8:
        box_sums_small_numpy(values, q, out)
        return
    n, nx = values.shape
    c.mdx_box_rows_add(lib.ptr(values), n, nx, int(q), lib.ptr(out), out.shape[1])


def box_sums_small_numpy(values: np.ndarray, q: int, out: np.ndarray) -> None:
    """The numpy twin of :func:`box_sums_small`."""
    n, nx = values.shape
    by, bx = out.shape
    padded = np.zeros((by * q, bx * q))
    padded[:n, :nx] = values
    boxes = padded.reshape(by, q, bx, q)
    out[...] = 0.0
    row = np.empty(out.shape)
    for dy in range(q):
        row[...] = 0.0
        for dx in range(q):
            row += boxes[:, dy, :, dx]
        out += row


# --------------------------------------------------------------------------- static parts


def static_rows(two_theta, tt_points, counts, rate, q_counts, q_map, at, rel, static) -> None:
    """A model's parts that do not change along phi at a grid of points, in place.

    ``rel[...] = 1/max(P_N, 1) + 1/max(Q_N, 1)`` and ``static[...] = P * Q``
    (float32; ``static`` None: not made), ``P_N``, ``P`` np.interp of the
    profile's ``counts`` and ``rate`` at two-theta, ``Q_N``, ``Q`` the pixel
    residual's ``q_counts`` and ``q_map`` box-interpolated at ``at``
    (:func:`box_weights` of the grid; all three None: no pixel residual).
    """
    c = lib.library()
    tt_points, counts = _f64(tt_points), _f64(counts)
    rate = None if static is None else _f64(rate)
    if q_counts is not None:
        q_counts, q_map = _f64(q_counts), _f64(q_map)
    sizes_match = counts.size == tt_points.size and (rate is None or rate.size == tt_points.size)
    if c is None or not _takes(two_theta, rel, static) or not _increasing(tt_points) \
            or not sizes_match:
        static_rows_numpy(two_theta, tt_points, counts, rate, q_counts, q_map, at, rel, static)
        return
    if at is None:
        weights = (None,) * 6
    else:
        y0, y1, wy, x0, x1, wx = at
        weights = (lib.index(y0), lib.index(y1), _f64(wy).ravel(), lib.index(x0),
                   lib.index(x1), _f64(wx).ravel())  # fmt: skip
    rows, nx = two_theta.shape
    p = lib.ptr
    slopes = [None if f is None else _slopes(tt_points, f) for f in (counts, rate)]
    c.mdx_shell_static(
        p(two_theta), rows, nx, p(tt_points), tt_points.size, p(counts), p(slopes[0]),
        None if rate is None else p(rate), None if rate is None else p(slopes[1]),
        None if q_counts is None else p(q_counts),
        None if q_map is None else p(q_map), 0 if q_counts is None else q_counts.shape[1],
        *(None if w is None else p(w) for w in weights), p(rel),
        None if static is None else p(static),
    )  # fmt: skip


def static_rows_numpy(two_theta, tt_points, counts, rate, q_counts, q_map, at, rel,
                      static) -> None:  # fmt: skip
    """The numpy twin of :func:`static_rows`."""
    for rows in _bands(len(two_theta)):
        tt = np.asarray(two_theta[rows], dtype=np.float64)  # what np.interp makes of it
        r = 1.0 / np.maximum(np.interp(tt, tt_points, counts), 1.0)
        if q_counts is not None:
            y0, y1, wy, x0, x1, wx = at
            band = (y0[rows], y1[rows], wy[rows], x0, x1, wx)
            r += 1.0 / np.maximum(box_interp_at(q_counts, band), 1.0)
        rel[rows] = r
        if static is not None:
            s = np.interp(tt, tt_points, rate)
            if q_map is not None:
                s *= box_interp_at(q_map, band)
            static[rows] = s
