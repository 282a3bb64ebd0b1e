"""The resolution-shell background model, on arrays: layout, fit and evaluation.

**The model.** The background rate of a pixel at two-theta ``tt`` and azimuth
``psi`` in phi bin ``k`` is ``P(tt) * R_k(tt, psi)``: ``P`` a fine radial
profile (shells about one pixel wide, merged where counts are few) fitted to
every frame, and ``R_k`` a smooth residual on a coarse polar grid (bands of
two-theta x sectors of azimuth, interpolated bilinearly, periodic in azimuth)
that carries what is not radial (polarization, a moved or tilted detector's
solid angle, slow changes along phi), times ``Q(y, x)``, a static residual on
square pixel boxes (interpolated bilinearly) for sharp features that are
neither (a pin shadow). The coarse grid and the phi window of ``R``, and the
box of ``Q``, are chosen from the counts so that each cell holds about
:data:`RESIDUAL_COUNTS` counts (``Q``: :data:`PIXEL_COUNTS`).

**The sums.** Everything is fitted from one joint histogram per (frame parity,
phi bin): counts and pixel-seconds of valid pixels in each (fine shell, fine
sector) (:mod:`dials_mdxbg.binning.shell_sums`), so one pass over the frames
suffices and masked pixels and module gaps carry no weight. Rates are counts
per pixel-second, the units of a box map.

The geometry (two-theta and azimuth of pixels) comes in as arrays: this module
never sees a detector model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dials_mdxbg.binning.pixel_boxes import BoxRows, box_weights
from dials_mdxbg.native.shell_pixels import (
    residual_corners,
    residual_expected,
    shell_joint,
    static_rows,
)

FINE_SECTORS = 24
"""Fine azimuthal sectors of the sums; every coarse sector count divides it."""

MAX_SHELLS = 4096
"""At most this many fine shells (their width never below one pixel's two-theta)."""

PROFILE_COUNTS = 400.0
"""Fine shells are merged until each profile point holds this many counts (5 %)."""

RESIDUAL_COUNTS = 1000.0
"""Counts aimed at per residual cell (about 3 % Poisson noise)."""

PIXEL_COUNTS = 2500.0
"""Counts aimed at per box of the static pixel residual ``Q`` (2 % Poisson noise)."""

Q_BOXES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
"""Box sizes (pixels) tried for ``Q``, smallest first."""

LEVELS = ((16, 24), (12, 24), (8, 12), (6, 8), (4, 6), (3, 4), (2, 2), (1, 1))
"""Residual grids tried, finest first: (two-theta bands, azimuth sectors)."""


@dataclass(frozen=True)
class ShellLayout:
    """Where each pixel falls: fine shell and sector, and the shells' two-theta.

    Attributes:
        joint: int32 (ny, nx) ``shell * FINE_SECTORS + sector`` of every pixel.
        two_theta: float32 (ny, nx) degrees; psi: float32 (ny, nx) radians.
        edges: fine shell edges in two-theta (degrees), ``n_shells + 1``.
    """

    joint: np.ndarray
    two_theta: np.ndarray
    psi: np.ndarray
    edges: np.ndarray

    @property
    def n_shells(self) -> int:
        """Fine shells."""
        return len(self.edges) - 1

    @property
    def n_joint(self) -> int:
        """Fine (shell, sector) cells."""
        return self.n_shells * FINE_SECTORS

    @property
    def mid(self) -> np.ndarray:
        """Fine shell centres (degrees)."""
        return 0.5 * (self.edges[:-1] + self.edges[1:])


def shell_layout(two_theta: np.ndarray, psi: np.ndarray) -> ShellLayout:
    """Fine shells about one pixel wide in two-theta, from the pixels' geometry.

    The width is a low percentile of the two-theta step between neighbouring
    pixels (the outer pixels', whose steps are the smallest on a flat detector).
    """
    tt = np.asarray(two_theta)
    step = np.concatenate(
        [np.abs(np.diff(tt[::4], axis=1)).ravel(), np.abs(np.diff(tt[:, ::4], axis=0)).ravel()]
    )
    step = step[np.isfinite(step) & (step > 0)]
    lo, hi = float(np.nanmin(tt)), float(np.nanmax(tt))
    width = float(np.percentile(step, 5)) if step.size else 1.0
    width = max(width, (hi - lo) / MAX_SHELLS, 1e-9)
    n = max(1, int(math.ceil((hi - lo) / width)))
    edges = lo + width * np.arange(n + 1)
    edges[-1] = np.nextafter(max(hi, edges[-1]), np.inf)
    joint = np.empty(tt.shape, dtype=np.int32)
    shell_joint(tt, np.asarray(psi), edges, FINE_SECTORS, joint)
    return ShellLayout(
        joint,
        np.asarray(two_theta, dtype=np.float32),
        np.asarray(psi, dtype=np.float32),
        edges.astype(np.float64),
    )


ROWS_AT_A_TIME = 128
"""Image rows per step of a whole-image evaluation (bounds the float64 temporaries)."""


def row_bands(n_rows: int) -> list[slice]:
    """Slices of ROWS_AT_A_TIME rows covering ``n_rows``."""
    return [slice(a, min(a + ROWS_AT_A_TIME, n_rows)) for a in range(0, n_rows, ROWS_AT_A_TIME)]


@dataclass(frozen=True)
class ResidualBasis:
    """Points' corners on a residual grid: flat indices of the (band, sector) corners
    ``i00``, ``i01`` (the next band: ``+ band_step``), weights, and the nearest cell."""

    i00: np.ndarray
    i01: np.ndarray
    wb: np.ndarray
    ws: np.ndarray
    near: np.ndarray
    band_step: int

    @classmethod
    def empty(cls, shape: tuple, band_step: int) -> ResidualBasis:
        """A basis of ``shape`` points to fill (:meth:`ShellModel.corners`)."""
        return cls(*(np.empty(shape, dtype=t) for t in (np.int32, np.int32, np.float32,
                                                        np.float32, np.int32)), band_step)

    def rows(self, rows: slice) -> ResidualBasis:
        """The basis of some rows of an image's points."""
        return ResidualBasis(
            self.i00[rows], self.i01[rows], self.wb[rows], self.ws[rows], self.near[rows],
            self.band_step,
        )  # fmt: skip


@dataclass
class ShellModel:
    """A fitted model: profile points and the residual of every phi bin.

    Attributes:
        tt_points: two-theta of the profile points (degrees, increasing).
        profile: rate (counts per pixel-second) at each point.
        profile_counts: counts behind each point (its relative variance is 1/that).
        tt_range: (lo, hi) two-theta of the residual bands.
        residual: (n_phi, bands, sectors) factor of each phi bin.
        residual_counts: counts behind each residual cell.
        level: (bands, sectors, phi window in bins).
        q_size: box of the static pixel residual (pixels); q_map its factors
            (boxes along y, x), q_counts the counts behind each.
    """

    tt_points: np.ndarray
    profile: np.ndarray
    profile_counts: np.ndarray
    tt_range: tuple[float, float]
    residual: np.ndarray
    residual_counts: np.ndarray
    level: tuple[int, int, int]
    q_size: int = 0
    q_map: np.ndarray | None = None
    q_counts: np.ndarray | None = None

    @property
    def grid(self) -> tuple:
        """The residual grid as :func:`~dials_mdxbg.native.shell_pixels.residual_corners`
        takes it: (lo, span, bands, sectors)."""
        nb, ns = self.residual.shape[1:]
        lo, hi = self.tt_range
        return lo, max(hi - lo, 1e-12), nb, ns

    def basis(self, two_theta, psi) -> ResidualBasis:
        """Where points fall on the residual grid: shared by the models of one grid."""
        out = self.empty_basis(np.shape(two_theta))
        for rows in row_bands(len(two_theta)):
            self.corners(two_theta[rows], psi[rows], out.rows(rows))
        return out

    def empty_basis(self, shape: tuple) -> ResidualBasis:
        """A :class:`ResidualBasis` of ``shape`` points on this model's grid, to fill."""
        nb, ns = self.residual.shape[1:]
        return ResidualBasis.empty(shape, ns if nb > 1 else 0)

    def static_parts(self, two_theta, psi, ys, xs, rate: bool = True) -> tuple:
        """What does not change along phi at a grid of points (float32): ``P * Q`` (None
        unless ``rate``) and the relative variance ``1/N_P + 1/N_Q``."""
        static = np.empty(np.shape(two_theta), dtype=np.float32) if rate else None
        rel = np.empty(np.shape(two_theta), dtype=np.float32)
        have_q = self.q_map is not None
        at = box_weights(self.q_counts.shape, self.q_size, ys, xs) if have_q else None
        static_rows(two_theta, self.tt_points, self.profile_counts, self.profile,
                    self.q_counts if have_q else None, self.q_map if have_q else None, at, rel,
                    static)  # fmt: skip
        return static, rel

    def rate_rows(self, k: int, basis: ResidualBasis, static) -> np.ndarray:
        """The rate in phi bin ``k`` at the points of ``basis`` and ``static`` (float32)."""
        plane = self.residual[k].ravel().astype(np.float32)
        up = basis.band_step
        lo = (1 - basis.ws) * plane.take(basis.i00) + basis.ws * plane.take(basis.i01)
        hi = (1 - basis.ws) * plane.take(basis.i00 + up) + basis.ws * plane.take(basis.i01 + up)
        return static * ((1 - basis.wb) * lo + basis.wb * hi)

    def variance_rows(self, k: int, basis: ResidualBasis, rate, rel) -> np.ndarray:
        """Plug-in Poisson variance of :meth:`rate_rows` (gain 1): rate^2 (1/N_P + 1/N_Q
        + 1/N_R), ``rel`` holding the first two (:meth:`static_parts`)."""
        n_r = self.residual_counts[k].ravel().astype(np.float32).take(basis.near)
        return rate * rate * (rel + 1.0 / np.maximum(n_r, np.float32(1.0)))

    def corners(self, two_theta, psi, into: ResidualBasis | None = None) -> tuple:
        """Float64 bilinear corners ``(b0, b1, s0, s1, wb, ws)`` of points on the residual
        grid (periodic in azimuth); with ``into``, their :meth:`basis` (the same
        coordinates) is written there."""
        return residual_corners(two_theta, psi, self.grid, into)


def pixel_residual(
    model: ShellModel,
    layout: ShellLayout,
    pixel_counts: np.ndarray,
    pixel_exposure: np.ndarray,
    phi_share: np.ndarray,
    q: int | None = None,
    also: tuple = (),
    basis: ResidualBasis | None = None,
) -> int:
    """Fit the static pixel residual ``Q`` of ``model`` in place; returns its box size.

    Args:
        pixel_counts, pixel_exposure: (ny, nx) counts and pixel-seconds over all frames.
        phi_share: each phi bin's share of the exposure (weights of the mean residual).
        q: the box size, or None to choose the smallest reaching PIXEL_COUNTS per box.
        also: ``(model, pixel_counts, pixel_exposure)`` of models on ``model``'s residual
            grid (its halves), fitted with the same box in the same pass over the pixels.
        basis: where to write the pixels' :meth:`ShellModel.basis` (``model``'s
            :meth:`ShellModel.empty_basis`), from the same coordinates: the held-out
            pass needs them.
    """
    if q is None:
        valid = pixel_exposure > 0
        per_pixel = float(pixel_counts.sum()) / max(int(valid.sum()), 1)
        ny, nx = pixel_counts.shape
        q = next((b for b in Q_BOXES if per_pixel * b * b >= PIXEL_COUNTS), Q_BOXES[-1])
        q = min(q, max(ny, nx))
    fits = [(model, pixel_counts, pixel_exposure), *also]
    planes = [np.tensordot(phi_share, m.residual, axes=1) for m, _, _ in fits]
    # Box sums band by band: no full-image float64 copies (fresh memory is dear).
    c_sums = [BoxRows(pixel_exposure.shape, q, ROWS_AT_A_TIME) for _ in fits]
    e_sums = [BoxRows(pixel_exposure.shape, q, ROWS_AT_A_TIME) for _ in fits]
    tables = [(plane.ravel(), m.tt_points, m.profile) for (m, _, _), plane in zip(fits, planes)]
    for rows in c_sums[0].bands():
        tt, psi = layout.two_theta[rows], layout.psi[rows]
        into = None if basis is None else basis.rows(rows)
        # The expected counts of every model (one residual grid for all), float32 as stored.
        expected = [np.empty(tt.shape, dtype=np.float32) for _ in fits]
        residual_expected(tt, psi, model.grid, tables, [e[rows] for _, _, e in fits], expected,
                          into)  # fmt: skip
        for (_, counts, _), part, cs, es in zip(fits, expected, c_sums, e_sums):
            es.add(rows, part)
            cs.add(rows, counts[rows])
    for (m, _, _), cs, es in zip(fits, c_sums, e_sums):
        c, factor = cs.out, es.out
        empty = ~(factor > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            np.divide(c, factor, out=factor)  # in place: no fresh pages
        factor[empty] = 1.0
        m.q_size, m.q_map, m.q_counts = q, factor, c
    return q


def _profile_groups(counts: np.ndarray, exposure: np.ndarray) -> np.ndarray:
    """Group label of each fine shell: consecutive shells merged to PROFILE_COUNTS counts.

    Shells without pixels get label -1.
    """
    label = np.full(counts.size, -1, dtype=np.int64)
    g, held = 0, 0.0
    used = np.flatnonzero(exposure > 0)
    for i in used:
        label[i] = g
        held += counts[i]
        if held >= PROFILE_COUNTS:
            g, held = g + 1, 0.0
    if used.size and held < PROFILE_COUNTS and g > 0:
        label[label == g] = g - 1  # a short last group joins the one before
    return label


def choose_level(total_counts: float, n_phi: int) -> tuple[int, int, int]:
    """(bands, sectors, phi window): the finest grid whose cells reach RESIDUAL_COUNTS.

    The phi window (bins, odd) may grow to half the sweep; past that a coarser
    grid is taken.
    """
    per_bin = total_counts / max(n_phi, 1)
    max_window = max(1, n_phi // 2)
    for bands, sectors in LEVELS:
        need = RESIDUAL_COUNTS * bands * sectors / max(per_bin, 1e-12)
        window = max(1, int(math.ceil(need)))
        window += 1 - window % 2
        if window <= max_window or (bands, sectors) == LEVELS[-1]:
            return bands, sectors, min(window, 2 * n_phi - 1)
    raise AssertionError("unreachable")  # pragma: no cover


def fit_model(
    layout: ShellLayout,
    counts: np.ndarray,
    exposure: np.ndarray,
    level: tuple[int, int, int] | None = None,
    tt_range: tuple[float, float] | None = None,
) -> ShellModel | None:
    """Fit profile and residual from the joint sums of each phi bin.

    Args:
        layout: the fine shells.
        counts: (n_phi, n_joint) counts of valid pixels.
        exposure: (n_phi, n_joint) pixel-seconds of valid pixels.
        level: (bands, sectors, phi window), or None to choose it from the counts.
        tt_range: two-theta range of the bands (default: that of the shells with pixels);
            models on one grid share :meth:`ShellModel.coords`.

    Returns:
        The model, or None when no pixel was valid.
    """
    n_phi = counts.shape[0]
    c3 = counts.reshape(n_phi, layout.n_shells, FINE_SECTORS)
    e3 = exposure.reshape(n_phi, layout.n_shells, FINE_SECTORS)
    c_shell, e_shell = c3.sum(axis=(0, 2)), e3.sum(axis=(0, 2))
    if not (e_shell > 0).any():
        return None
    label = _profile_groups(c_shell, e_shell)
    n_groups = int(label.max()) + 1
    have = label >= 0
    gc = np.bincount(label[have], c_shell[have], n_groups)
    ge = np.bincount(label[have], e_shell[have], n_groups)
    gtt = np.bincount(label[have], (e_shell * layout.mid)[have], n_groups) / ge
    profile = gc / ge
    # The profile at each fine shell, and the counts it expects there.
    p_fine = np.interp(layout.mid, gtt, profile)
    expect = e3 * p_fine[np.newaxis, :, np.newaxis]

    total = float(c_shell.sum())
    bands, sectors, window = level or choose_level(total, n_phi)
    window = max(1, min(int(window), 2 * n_phi - 1))
    used = layout.mid[e_shell > 0]
    tt_lo, tt_hi = tt_range or (float(used.min()), float(used.max()))
    band = np.clip(((layout.mid - tt_lo) / max(tt_hi - tt_lo, 1e-12) * bands).astype(np.int64),
                   0, bands - 1)  # fmt: skip
    sector = np.arange(FINE_SECTORS) * sectors // FINE_SECTORS
    cell = (band[:, np.newaxis] * sectors + sector[np.newaxis, :]).ravel()
    n_cells = bands * sectors
    per_c = np.stack([np.bincount(cell, c.ravel(), n_cells) for c in c3])
    per_m = np.stack([np.bincount(cell, m.ravel(), n_cells) for m in expect])
    # A centred window of phi bins (cumulative sums; clipped at the ends).
    half = window // 2
    cum_c = np.concatenate([np.zeros((1, n_cells)), np.cumsum(per_c, axis=0)])
    cum_m = np.concatenate([np.zeros((1, n_cells)), np.cumsum(per_m, axis=0)])
    k = np.arange(n_phi)
    a, b = np.clip(k - half, 0, n_phi), np.clip(k + half + 1, 0, n_phi)
    win_c, win_m = cum_c[b] - cum_c[a], cum_m[b] - cum_m[a]
    with np.errstate(invalid="ignore", divide="ignore"):
        residual = win_c / win_m
    # A phi bin without frames here (a half model's bins of one frame): from its
    # neighbours along phi; a cell without pixels (a gap): neutral 1.
    have = win_m.sum(axis=1) > 0
    if have.any() and not have.all():
        known = np.flatnonzero(have)
        for i in range(n_cells):
            residual[~have, i] = np.interp(k[~have], known, residual[known, i])
            win_c[~have, i] = np.interp(k[~have], known, win_c[known, i])
            win_m[~have, i] = np.interp(k[~have], known, win_m[known, i])
    residual[~(win_m > 0)] = 1.0
    return ShellModel(
        tt_points=gtt,
        profile=profile,
        profile_counts=gc,
        tt_range=(tt_lo, tt_hi),
        residual=residual.reshape(n_phi, bands, sectors),
        residual_counts=win_c.reshape(n_phi, bands, sectors),
        level=(bands, sectors, window),
    )


def grid_rates(
    model: ShellModel, two_theta: np.ndarray, psi: np.ndarray, ys: np.ndarray, xs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The model at every map grid point ``ys`` x ``xs``: (n_phi, nby, nbx) rates and errors."""
    n_phi = model.residual.shape[0]
    out = np.empty((n_phi, *two_theta.shape))
    err = np.empty_like(out)
    basis = model.basis(two_theta, psi)
    static, rel = model.static_parts(two_theta, psi, ys, xs)
    for k in range(n_phi):
        rate = model.rate_rows(k, basis, static)
        out[k] = rate
        err[k] = np.sqrt(model.variance_rows(k, basis, rate, rel))
    return out, err
